package signature

import (
	"bytes"
	"crypto/hmac"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Slack headers.
const (
	HeaderSlackSignature = "X-Slack-Signature"
	HeaderSlackTimestamp = "X-Slack-Request-Timestamp"
)

// Slack is Slack's scheme: `X-Slack-Signature: v0=<hex>` where the hex is
// HMAC-SHA256(signing secret, "v0:" + timestamp + ":" + body), and the
// timestamp is X-Slack-Request-Timestamp.
type Slack struct{}

var (
	_ Scheme     = Slack{}
	_ Handshaker = Slack{}
)

// Name implements Scheme.
func (Slack) Name() string { return "slack" }

// Verify implements Scheme.
func (Slack) Verify(req Request, secrets []string, now time.Time, tolerance time.Duration) error {
	tsv := req.Header.Get(HeaderSlackTimestamp)
	ts, err := parseUnix(HeaderSlackTimestamp, tsv)
	if err != nil {
		return err
	}
	v := req.Header.Get(HeaderSlackSignature)
	if v == "" {
		return missing(HeaderSlackSignature)
	}
	hexSig, ok := strings.CutPrefix(v, "v0=")
	if !ok {
		return malformed(HeaderSlackSignature)
	}
	got, err := hex.DecodeString(hexSig)
	if err != nil || len(got) != 32 {
		return malformed(HeaderSlackSignature)
	}
	if err := checkTolerance(HeaderSlackTimestamp, ts, now, tolerance); err != nil {
		return err
	}
	for _, s := range secrets {
		if hmac.Equal(got, hmacSHA256([]byte(s), []byte("v0:"), []byte(tsv), []byte(":"), req.Body)) {
			return nil
		}
	}
	return mismatch(HeaderSlackSignature)
}

// Sign implements Scheme.
func (Slack) Sign(h http.Header, body []byte, secret string, now time.Time) error {
	tsv := strconv.FormatInt(now.Unix(), 10)
	h.Set(HeaderSlackTimestamp, tsv)
	h.Set(HeaderSlackSignature, "v0="+hex.EncodeToString(hmacSHA256([]byte(secret), []byte("v0:"), []byte(tsv), []byte(":"), body)))
	return nil
}

// DeliveryID implements Scheme: the Events API's `event_id`, when the body has one.
func (Slack) DeliveryID(req Request) string {
	var ev struct {
		EventID string `json:"event_id"`
	}
	if json.Unmarshal(req.Body, &ev) != nil {
		return ""
	}
	return ev.EventID
}

// Handshake implements Handshaker: Slack verifies an Events API Request URL
// with `{"type": "url_verification", "challenge": …}`, signed like any
// event, and accepts the URL only when the answer (200, within 3 seconds)
// carries the challenge back.
func (Slack) Handshake(req Request) (Answer, bool) {
	if !bytes.Contains(req.Body, []byte("url_verification")) {
		return Answer{}, false // not worth decoding: every event but this one
	}
	var v struct {
		Type      string  `json:"type"`
		Challenge *string `json:"challenge"`
	}
	if json.Unmarshal(req.Body, &v) != nil || v.Type != "url_verification" || v.Challenge == nil {
		return Answer{}, false
	}
	body, err := json.Marshal(struct {
		Challenge string `json:"challenge"`
	}{*v.Challenge})
	if err != nil {
		return Answer{}, false
	}
	return Answer{ContentType: "application/json", Body: body}, true
}

// SignsID implements Scheme: the id is part of what is signed.
func (Slack) SignsID() bool { return true }

func (Slack) timestamped() {}

// NewSecret implements Scheme.
func (Slack) NewSecret() string { return randomHex(16) }

// CheckSecret implements Scheme.
func (Slack) CheckSecret(s string) error { return checkPlainSecret(s) }
