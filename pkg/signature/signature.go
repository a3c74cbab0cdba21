// Package signature verifies inbound webhook signatures (one Scheme per
// provider) and signs outbound deliveries with Standard Webhooks. Every
// comparison is constant-time, and no error ever says which secret or which
// byte failed to match.
//
// Adding a provider is one file: a type implementing Scheme, registered in
// the schemes map below, plus its golden-vector test.
package signature

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"time"
)

// Sentinel errors; errors from Verify wrap one of them in a *HeaderError.
var (
	// ErrMissing means a required header is absent.
	ErrMissing = errors.New("missing header")
	// ErrMalformed means a header is present but cannot be parsed.
	ErrMalformed = errors.New("malformed header")
	// ErrMismatch means no signature matched any secret.
	ErrMismatch = errors.New("signature does not match")
	// ErrTimestamp means the signed timestamp is outside the tolerance.
	ErrTimestamp = errors.New("timestamp outside the tolerance")
)

// HeaderError names the header a verification failure is about.
type HeaderError struct {
	Header string
	Err    error
}

func (e *HeaderError) Error() string { return e.Err.Error() + ": " + e.Header }
func (e *HeaderError) Unwrap() error { return e.Err }

func missing(h string) error   { return &HeaderError{Header: h, Err: ErrMissing} }
func malformed(h string) error { return &HeaderError{Header: h, Err: ErrMalformed} }
func mismatch(h string) error  { return &HeaderError{Header: h, Err: ErrMismatch} }
func stale(h string) error     { return &HeaderError{Header: h, Err: ErrTimestamp} }

// DefaultTolerance is how far a signed timestamp may be from now, either way.
const DefaultTolerance = 5 * time.Minute

// Request is what a scheme sees of an inbound request.
type Request struct {
	Header http.Header
	Body   []byte
}

// Scheme is one provider's way of signing webhooks.
type Scheme interface {
	// Name is the scheme's name in the API (`stripe`, `github`, …).
	Name() string
	// Verify returns nil when req is signed by any of secrets. Timestamped
	// schemes also require the timestamp within tolerance of now.
	Verify(req Request, secrets []string, now time.Time, tolerance time.Duration) error
	// Sign sets on h the headers that make Verify accept body signed with
	// secret at now, exactly as the provider would send them.
	Sign(h http.Header, body []byte, secret string, now time.Time) error
	// DeliveryID returns the provider's own id for this delivery, which stays
	// the same when the provider retries, or "" when it has none.
	DeliveryID(req Request) string
	// SignsID reports whether the signature covers DeliveryID, so that a
	// request replayed with another id fails verification. A scheme that
	// signs its id is the only source of an event's identity: no unsigned
	// header (x-idempotency-key) may name it instead.
	SignsID() bool
	// NewSecret returns a fresh secret in the provider's format.
	NewSecret() string
	// CheckSecret reports whether a secret supplied by an operator is usable.
	CheckSecret(secret string) error
}

// timestamped is implemented by the schemes whose signature covers a time.
type timestamped interface{ timestamped() }

// Timestamped reports whether s signs a time and refuses requests outside a
// tolerance of it (standard-webhooks, stripe, slack). Such a scheme's
// sources must remember a dedup key at least as long as their tolerance,
// or a request replayed within the tolerance after its key expired would be
// a new event.
func Timestamped(s Scheme) bool {
	_, ok := s.(timestamped)
	return ok
}

// Handshaker is implemented by schemes whose provider proves an endpoint
// before it sends events, with a signed request that expects a particular
// answer: Slack's url_verification. Such a request is not an event.
type Handshaker interface {
	// Handshake returns the answer to req, a request already verified, when
	// req is the provider's endpoint verification.
	Handshake(req Request) (Answer, bool)
}

// Answer is the response a handshake expects, sent with status 200.
type Answer struct {
	ContentType string
	Body        []byte
}

// schemes is the fixed table of supported schemes, by name.
var schemes = func() map[string]Scheme {
	m := map[string]Scheme{}
	for _, s := range []Scheme{Relay{}, StandardWebhooks{}, Stripe{}, GitHub{}, Shopify{}, Slack{}, HMAC{}} {
		m[s.Name()] = s
	}
	return m
}()

// Lookup returns the scheme with the given name.
func Lookup(name string) (Scheme, bool) {
	s, ok := schemes[name]
	return s, ok
}

// Names lists every scheme's name, sorted.
func Names() []string {
	out := make([]string, 0, len(schemes))
	for n := range schemes {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

func hmacSHA256(key []byte, parts ...[]byte) []byte {
	m := hmac.New(sha256.New, key)
	for _, p := range parts {
		m.Write(p)
	}
	return m.Sum(nil)
}

// HexHMAC returns hex(HMAC-SHA256(key, body)): the x-relay-signature value.
func HexHMAC(key string, body []byte) string {
	return hex.EncodeToString(hmacSHA256([]byte(key), body))
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(fmt.Sprintf("signature: crypto/rand: %v", err))
	}
	return b
}

func randomHex(n int) string { return hex.EncodeToString(randomBytes(n)) }

// parseUnix parses a decimal unix-seconds timestamp header.
func parseUnix(header, v string) (time.Time, error) {
	if v == "" {
		return time.Time{}, missing(header)
	}
	if len(v) > 12 {
		return time.Time{}, malformed(header)
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		return time.Time{}, malformed(header)
	}
	return time.Unix(n, 0), nil
}

func checkTolerance(header string, ts, now time.Time, tolerance time.Duration) error {
	if tolerance <= 0 {
		tolerance = DefaultTolerance
	}
	d := now.Sub(ts)
	if d > tolerance || d < -tolerance {
		return stale(header)
	}
	return nil
}

func checkPlainSecret(secret string) error {
	switch {
	case len(secret) < 8:
		return errors.New("secret is shorter than 8 characters")
	case len(secret) > 512:
		return errors.New("secret is longer than 512 characters")
	}
	return nil
}

// decodeBase64 accepts standard base64, padded or not.
func decodeBase64(s string) ([]byte, error) {
	if b, err := base64.StdEncoding.DecodeString(s); err == nil {
		return b, nil
	}
	return base64.RawStdEncoding.DecodeString(s)
}
