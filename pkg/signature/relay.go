package signature

import (
	"crypto/hmac"
	"encoding/hex"
	"net/http"
	"time"
)

// HeaderRelaySignature carries hex(HMAC-SHA256(secret, body)).
const HeaderRelaySignature = "X-Relay-Signature"

// Relay is Relay's own scheme: x-relay-signature is the hex HMAC-SHA256 of
// the raw body keyed with the secret string. It has no timestamp; senders
// that need replay protection should use standard-webhooks.
type Relay struct{}

var _ Scheme = Relay{}

// Name implements Scheme.
func (Relay) Name() string { return "relay" }

// Verify implements Scheme.
func (Relay) Verify(req Request, secrets []string, _ time.Time, _ time.Duration) error {
	v := req.Header.Get(HeaderRelaySignature)
	if v == "" {
		return missing(HeaderRelaySignature)
	}
	got, err := hex.DecodeString(v)
	if err != nil || len(got) != 32 {
		return malformed(HeaderRelaySignature)
	}
	for _, s := range secrets {
		if hmac.Equal(got, hmacSHA256([]byte(s), req.Body)) {
			return nil
		}
	}
	return mismatch(HeaderRelaySignature)
}

// Sign implements Scheme.
func (Relay) Sign(h http.Header, body []byte, secret string, _ time.Time) error {
	h.Set(HeaderRelaySignature, HexHMAC(secret, body))
	return nil
}

// DeliveryID implements Scheme: the relay scheme has none beyond x-idempotency-key.
func (Relay) DeliveryID(Request) string { return "" }

// SignsID implements Scheme: the scheme has no id of its own, and the
// x-idempotency-key a sender may add is not signed.
func (Relay) SignsID() bool { return false }

// NewSecret implements Scheme.
func (Relay) NewSecret() string { return "rsk_" + randomHex(24) }

// CheckSecret implements Scheme.
func (Relay) CheckSecret(s string) error { return checkPlainSecret(s) }
