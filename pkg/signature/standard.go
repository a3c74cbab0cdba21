package signature

import (
	"crypto/hmac"
	"encoding/base64"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Standard Webhooks headers, and the svix-* spelling of the same scheme.
const (
	HeaderWebhookID        = "Webhook-Id"
	HeaderWebhookTimestamp = "Webhook-Timestamp"
	HeaderWebhookSignature = "Webhook-Signature"
	headerSvixID           = "Svix-Id"
	headerSvixTimestamp    = "Svix-Timestamp"
	headerSvixSignature    = "Svix-Signature"
)

// StandardWebhooks is https://www.standardwebhooks.com: the signature is
// base64(HMAC-SHA256(key, id + "." + timestamp + "." + body)) with the key the
// base64 part of a `whsec_` secret; webhook-signature holds one or more
// space-separated `v1,<sig>` entries (several during a secret rotation).
type StandardWebhooks struct{}

var _ Scheme = StandardWebhooks{}

// Name implements Scheme.
func (StandardWebhooks) Name() string { return "standard-webhooks" }

// headers returns the id, timestamp and signature header names in use: the
// webhook-* spelling, or svix-* when only that is present.
func standardHeaders(h http.Header) (id, ts, sig string) {
	if h.Get(HeaderWebhookSignature) == "" && h.Get(headerSvixSignature) != "" {
		return headerSvixID, headerSvixTimestamp, headerSvixSignature
	}
	return HeaderWebhookID, HeaderWebhookTimestamp, HeaderWebhookSignature
}

// Verify implements Scheme.
func (StandardWebhooks) Verify(req Request, secrets []string, now time.Time, tolerance time.Duration) error {
	idH, tsH, sigH := standardHeaders(req.Header)
	id := req.Header.Get(idH)
	if id == "" {
		return missing(idH)
	}
	tsv := req.Header.Get(tsH)
	ts, err := parseUnix(tsH, tsv)
	if err != nil {
		return err
	}
	sigs, err := ParseStandardSignatures(req.Header.Get(sigH))
	if err != nil {
		return &HeaderError{Header: sigH, Err: err}
	}
	if err := checkTolerance(tsH, ts, now, tolerance); err != nil {
		return err
	}
	for _, s := range secrets {
		key, err := StandardKey(s)
		if err != nil {
			continue
		}
		want := hmacSHA256(key, []byte(id), []byte("."), []byte(tsv), []byte("."), req.Body)
		for _, got := range sigs {
			if hmac.Equal(got, want) {
				return nil
			}
		}
	}
	return mismatch(sigH)
}

// ParseStandardSignatures returns the decoded v1 signatures of a
// webhook-signature header. Entries of other versions (v1a) are ignored.
func ParseStandardSignatures(v string) ([][]byte, error) {
	if v == "" {
		return nil, ErrMissing
	}
	if len(v) > 8<<10 {
		return nil, ErrMalformed
	}
	var out [][]byte
	for _, entry := range strings.Fields(v) {
		version, sig, ok := strings.Cut(entry, ",")
		if !ok {
			return nil, ErrMalformed
		}
		if version != "v1" {
			continue
		}
		b, err := decodeBase64(sig)
		if err != nil || len(b) != 32 {
			return nil, ErrMalformed
		}
		out = append(out, b)
		if len(out) > 16 {
			return nil, ErrMalformed
		}
	}
	if len(out) == 0 {
		return nil, ErrMalformed
	}
	return out, nil
}

// StandardKey decodes a `whsec_` secret into its HMAC key. A secret without
// the prefix is taken as bare base64, as the Standard Webhooks libraries do.
func StandardKey(secret string) ([]byte, error) {
	b64 := strings.TrimPrefix(secret, "whsec_")
	key, err := decodeBase64(b64)
	if err != nil {
		return nil, errors.New("secret is not whsec_ followed by base64")
	}
	if len(key) < 16 || len(key) > 64 {
		return nil, errors.New("secret key must be 16 to 64 bytes")
	}
	return key, nil
}

// StandardSign returns the webhook-signature value for id, ts and body, one
// `v1,` entry per secret (several while a rotated secret is in its grace period).
func StandardSign(id string, ts time.Time, body []byte, secrets ...string) (string, error) {
	tsv := strconv.FormatInt(ts.Unix(), 10)
	parts := make([]string, 0, len(secrets))
	for _, s := range secrets {
		key, err := StandardKey(s)
		if err != nil {
			return "", err
		}
		sig := hmacSHA256(key, []byte(id), []byte("."), []byte(tsv), []byte("."), body)
		parts = append(parts, "v1,"+base64.StdEncoding.EncodeToString(sig))
	}
	return strings.Join(parts, " "), nil
}

// Sign implements Scheme. The webhook-id is taken from h when set, else made up.
func (StandardWebhooks) Sign(h http.Header, body []byte, secret string, now time.Time) error {
	id := h.Get(HeaderWebhookID)
	if id == "" {
		id = "msg_" + randomHex(12)
		h.Set(HeaderWebhookID, id)
	}
	sig, err := StandardSign(id, now, body, secret)
	if err != nil {
		return err
	}
	h.Set(HeaderWebhookTimestamp, strconv.FormatInt(now.Unix(), 10))
	h.Set(HeaderWebhookSignature, sig)
	return nil
}

// DeliveryID implements Scheme: the webhook-id (or svix-id).
func (StandardWebhooks) DeliveryID(req Request) string {
	idH, _, _ := standardHeaders(req.Header)
	return req.Header.Get(idH)
}

// SignsID implements Scheme: the id is part of what is signed.
func (StandardWebhooks) SignsID() bool { return true }

func (StandardWebhooks) timestamped() {}

// NewSecret implements Scheme: whsec_ and 32 random bytes in base64.
func (StandardWebhooks) NewSecret() string {
	return "whsec_" + base64.StdEncoding.EncodeToString(randomBytes(32))
}

// CheckSecret implements Scheme.
func (StandardWebhooks) CheckSecret(s string) error {
	_, err := StandardKey(s)
	return err
}
