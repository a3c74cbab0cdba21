// Package secretbox encrypts secrets at rest with AES-256-GCM under
// RELAY_SECRET_KEY. Each ciphertext is bound to the id of the record that
// holds it (as GCM additional data), so a ciphertext copied onto another
// source or subscription does not decrypt.
package secretbox

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"

	"github.com/relayhq/relay/pkg/envconfig"
)

// KeySize is the length of a key in bytes (AES-256).
const KeySize = 32

const version = "v1:"

// ErrDecrypt means a ciphertext is corrupt, was made under another key, or
// belongs to another record. It never says which.
var ErrDecrypt = errors.New("secret cannot be decrypted with RELAY_SECRET_KEY (nor RELAY_SECRET_KEY_PREVIOUS)")

// Box seals secrets with one key and opens them with it or, while the key
// is being rotated, with the previous one.
type Box struct {
	aead cipher.AEAD
	// prev opens secrets sealed under RELAY_SECRET_KEY_PREVIOUS; nil when
	// there is none.
	prev cipher.AEAD
}

// New returns a Box for a 32-byte key, which also opens secrets sealed under
// previous (during a key rotation; nil for none).
func New(key, previous []byte) (*Box, error) {
	aead, err := newAEAD(key)
	if err != nil {
		return nil, err
	}
	b := &Box{aead: aead}
	if previous != nil {
		if b.prev, err = newAEAD(previous); err != nil {
			return nil, fmt.Errorf("previous %w", err)
		}
	}
	return b, nil
}

func newAEAD(key []byte) (cipher.AEAD, error) {
	if len(key) != KeySize {
		return nil, fmt.Errorf("secret key is %d bytes, want %d", len(key), KeySize)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("aes: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("gcm: %w", err)
	}
	return aead, nil
}

// LoadKeys reads RELAY_SECRET_KEY and, during a key rotation,
// RELAY_SECRET_KEY_PREVIOUS (a key that only opens). An unset or empty key
// is nil, for the caller's validation to require; one that does not decode
// is reported on r, naming its variable (never its value).
func LoadKeys(r *envconfig.Reader) (key, previous []byte) {
	parse := func(name string) []byte {
		v, ok := r.Lookup(name)
		if !ok || v == "" {
			return nil
		}
		k, err := ParseKey(v)
		if err != nil {
			r.Fail(name, "%v", err)
		}
		return k
	}
	key, previous = parse("RELAY_SECRET_KEY"), parse("RELAY_SECRET_KEY_PREVIOUS")
	if key != nil && previous != nil && bytes.Equal(key, previous) {
		r.Fail("RELAY_SECRET_KEY_PREVIOUS", "is the same key as RELAY_SECRET_KEY")
	}
	return key, previous
}

// ParseKey decodes a base64 key (standard or URL alphabet, padded or not).
func ParseKey(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if k, err := enc.DecodeString(s); err == nil {
			if len(k) != KeySize {
				return nil, fmt.Errorf("decodes to %d bytes, want %d (make one with: openssl rand -base64 32)", len(k), KeySize)
			}
			return k, nil
		}
	}
	return nil, errors.New("is not base64 (make one with: openssl rand -base64 32)")
}

// GenerateKey returns a new random key, base64 encoded.
func GenerateKey() string {
	k := make([]byte, KeySize)
	if _, err := rand.Read(k); err != nil {
		panic(fmt.Sprintf("secretbox: crypto/rand: %v", err))
	}
	return base64.StdEncoding.EncodeToString(k)
}

// Seal encrypts plaintext for the record named owner.
func (b *Box) Seal(plaintext, owner string) string {
	nonce := make([]byte, b.aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		panic(fmt.Sprintf("secretbox: crypto/rand: %v", err))
	}
	ct := b.aead.Seal(nonce, nonce, []byte(plaintext), []byte(owner))
	return version + base64.RawStdEncoding.EncodeToString(ct)
}

// Open decrypts a sealed secret of the record named owner, with the key or
// else the previous one.
func (b *Box) Open(sealed, owner string) (string, error) {
	pt, _, err := b.open(sealed, owner)
	return pt, err
}

// Rewrap returns sealed as sealed under the current key: unchanged (and
// rewrapped false) when it already is, sealed anew when only the previous
// key opens it. ErrDecrypt when neither does.
func (b *Box) Rewrap(sealed, owner string) (out string, rewrapped bool, err error) {
	pt, current, err := b.open(sealed, owner)
	if err != nil || current {
		return sealed, false, err
	}
	return b.Seal(pt, owner), true, nil
}

// open decrypts sealed and reports whether the current key opened it.
func (b *Box) open(sealed, owner string) (string, bool, error) {
	rest, ok := strings.CutPrefix(sealed, version)
	if !ok {
		return "", false, ErrDecrypt
	}
	raw, err := base64.RawStdEncoding.DecodeString(rest)
	if err != nil || len(raw) < b.aead.NonceSize() {
		return "", false, ErrDecrypt
	}
	n := b.aead.NonceSize()
	if pt, err := b.aead.Open(nil, raw[:n], raw[n:], []byte(owner)); err == nil {
		return string(pt), true, nil
	}
	if b.prev != nil {
		if pt, err := b.prev.Open(nil, raw[:n], raw[n:], []byte(owner)); err == nil {
			return string(pt), false, nil
		}
	}
	return "", false, ErrDecrypt
}
