package signature

import (
	"crypto/hmac"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// HeaderStripeSignature is Stripe's signature header.
const HeaderStripeSignature = "Stripe-Signature"

// Stripe is Stripe's scheme: `Stripe-Signature: t=<unix>,v1=<hex>[,v1=…]`
// where each v1 is hex(HMAC-SHA256(secret, t + "." + body)) and the key is
// the whole `whsec_…` string. Several v1 entries appear while a secret rolls.
type Stripe struct{}

var _ Scheme = Stripe{}

// Name implements Scheme.
func (Stripe) Name() string { return "stripe" }

// ParseStripeHeader splits a Stripe-Signature header into its timestamp (as
// sent) and its decoded v1 signatures.
func ParseStripeHeader(v string) (ts string, sigs [][]byte, err error) {
	if v == "" {
		return "", nil, ErrMissing
	}
	if len(v) > 8<<10 {
		return "", nil, ErrMalformed
	}
	for _, item := range strings.Split(v, ",") {
		k, val, ok := strings.Cut(strings.TrimSpace(item), "=")
		if !ok {
			return "", nil, ErrMalformed
		}
		switch k {
		case "t":
			ts = val
		case "v1":
			b, err := hex.DecodeString(val)
			if err != nil || len(b) != 32 {
				return "", nil, ErrMalformed
			}
			sigs = append(sigs, b)
			if len(sigs) > 16 {
				return "", nil, ErrMalformed
			}
		}
	}
	if ts == "" || len(sigs) == 0 {
		return "", nil, ErrMalformed
	}
	return ts, sigs, nil
}

// Verify implements Scheme.
func (Stripe) Verify(req Request, secrets []string, now time.Time, tolerance time.Duration) error {
	tsv, sigs, err := ParseStripeHeader(req.Header.Get(HeaderStripeSignature))
	if err != nil {
		return &HeaderError{Header: HeaderStripeSignature, Err: err}
	}
	ts, err := parseUnix(HeaderStripeSignature, tsv)
	if err != nil {
		return err
	}
	if err := checkTolerance(HeaderStripeSignature, ts, now, tolerance); err != nil {
		return err
	}
	for _, s := range secrets {
		want := hmacSHA256([]byte(s), []byte(tsv), []byte("."), req.Body)
		for _, got := range sigs {
			if hmac.Equal(got, want) {
				return nil
			}
		}
	}
	return mismatch(HeaderStripeSignature)
}

// Sign implements Scheme.
func (Stripe) Sign(h http.Header, body []byte, secret string, now time.Time) error {
	tsv := strconv.FormatInt(now.Unix(), 10)
	sig := hmacSHA256([]byte(secret), []byte(tsv), []byte("."), body)
	h.Set(HeaderStripeSignature, "t="+tsv+",v1="+hex.EncodeToString(sig))
	return nil
}

// DeliveryID implements Scheme: the Stripe event's `id`, the same on every retry.
func (Stripe) DeliveryID(req Request) string {
	var ev struct {
		ID string `json:"id"`
	}
	if json.Unmarshal(req.Body, &ev) != nil {
		return ""
	}
	return ev.ID
}

// SignsID implements Scheme: the id is part of what is signed.
func (Stripe) SignsID() bool { return true }

func (Stripe) timestamped() {}

// NewSecret implements Scheme.
func (Stripe) NewSecret() string { return "whsec_" + randomHex(16) }

// CheckSecret implements Scheme.
func (Stripe) CheckSecret(s string) error { return checkPlainSecret(s) }
