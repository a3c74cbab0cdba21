// Package ids makes Relay's prefixed, time-sortable identifiers: a prefix such
// as "evt", an underscore, then 26 Crockford base32 characters holding a
// 48-bit millisecond timestamp followed by 80 random bits (the ULID layout).
// Identifiers of one prefix sort lexicographically in creation order, which
// the event index in Redis relies on.
package ids

import (
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"strings"
	"time"
)

// Prefixes used by Relay.
const (
	Source       = "src"
	Subscription = "sub"
	Event        = "evt"
)

const alphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

const bodyLen = 26

// New returns a new identifier with the given prefix, stamped with now.
func New(prefix string) string { return NewAt(prefix, time.Now()) }

// NewAt returns a new identifier with the given prefix and timestamp.
func NewAt(prefix string, t time.Time) string {
	var b [16]byte
	ms := uint64(t.UnixMilli())
	b[0], b[1], b[2], b[3], b[4], b[5] = byte(ms>>40), byte(ms>>32), byte(ms>>24), byte(ms>>16), byte(ms>>8), byte(ms)
	if _, err := rand.Read(b[6:]); err != nil {
		// crypto/rand does not fail on supported platforms; a failure here
		// means the process cannot make safe identifiers at all.
		panic(fmt.Sprintf("ids: crypto/rand: %v", err))
	}
	return prefix + "_" + encode(b)
}

// LowerBound returns the smallest identifier of prefix that could have been
// made at t: every identifier made at or after t sorts at or after it.
func LowerBound(prefix string, t time.Time) string {
	var b [16]byte
	ms := uint64(t.UnixMilli())
	b[0], b[1], b[2], b[3], b[4], b[5] = byte(ms>>40), byte(ms>>32), byte(ms>>24), byte(ms>>16), byte(ms>>8), byte(ms)
	return prefix + "_" + encode(b)
}

// Valid reports whether id has the given prefix and a well-formed body.
func Valid(prefix, id string) bool {
	body, ok := strings.CutPrefix(id, prefix+"_")
	if !ok || len(body) != bodyLen || body[0] > '7' {
		return false
	}
	for i := 0; i < len(body); i++ {
		if strings.IndexByte(alphabet, body[i]) < 0 {
			return false
		}
	}
	return true
}

// Time returns the creation time stamped in a valid identifier.
func Time(id string) (time.Time, bool) {
	i := strings.LastIndexByte(id, '_')
	if i < 0 || len(id)-i-1 != bodyLen {
		return time.Time{}, false
	}
	body := id[i+1:]
	var ms uint64
	for j := 0; j < 10; j++ {
		v := strings.IndexByte(alphabet, body[j])
		if v < 0 {
			return time.Time{}, false
		}
		ms = ms<<5 | uint64(v)
	}
	return time.UnixMilli(int64(ms)), true
}

// encode writes 128 bits as 26 base32 characters, 5 bits at a time from the
// most significant end (the first character carries 3 bits).
func encode(b [16]byte) string {
	hi := binary.BigEndian.Uint64(b[:8])
	lo := binary.BigEndian.Uint64(b[8:])
	var out [bodyLen]byte
	for i := bodyLen - 1; i >= 0; i-- {
		out[i] = alphabet[lo&31]
		lo = lo>>5 | hi<<59
		hi >>= 5
	}
	return string(out[:])
}
