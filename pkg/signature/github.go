package signature

import (
	"crypto/hmac"
	"encoding/hex"
	"net/http"
	"strings"
	"time"
)

// GitHub headers.
const (
	HeaderGitHubSignature = "X-Hub-Signature-256"
	HeaderGitHubDelivery  = "X-GitHub-Delivery"
	HeaderGitHubEvent     = "X-GitHub-Event"
)

// GitHub is GitHub's scheme: `X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of
// the body>`. GitHub signs no timestamp; X-GitHub-Delivery dedups redeliveries.
type GitHub struct{}

var _ Scheme = GitHub{}

// Name implements Scheme.
func (GitHub) Name() string { return "github" }

// Verify implements Scheme.
func (GitHub) Verify(req Request, secrets []string, _ time.Time, _ time.Duration) error {
	v := req.Header.Get(HeaderGitHubSignature)
	if v == "" {
		return missing(HeaderGitHubSignature)
	}
	hexSig, ok := strings.CutPrefix(v, "sha256=")
	if !ok {
		return malformed(HeaderGitHubSignature)
	}
	got, err := hex.DecodeString(hexSig)
	if err != nil || len(got) != 32 {
		return malformed(HeaderGitHubSignature)
	}
	for _, s := range secrets {
		if hmac.Equal(got, hmacSHA256([]byte(s), req.Body)) {
			return nil
		}
	}
	return mismatch(HeaderGitHubSignature)
}

// Sign implements Scheme.
func (GitHub) Sign(h http.Header, body []byte, secret string, _ time.Time) error {
	h.Set(HeaderGitHubSignature, "sha256="+HexHMAC(secret, body))
	if h.Get(HeaderGitHubDelivery) == "" {
		h.Set(HeaderGitHubDelivery, randomHex(16))
	}
	return nil
}

// DeliveryID implements Scheme.
func (GitHub) DeliveryID(req Request) string { return req.Header.Get(HeaderGitHubDelivery) }

// SignsID implements Scheme: the signature covers the body only, not the id.
func (GitHub) SignsID() bool { return false }

// NewSecret implements Scheme.
func (GitHub) NewSecret() string { return randomHex(20) }

// CheckSecret implements Scheme.
func (GitHub) CheckSecret(s string) error { return checkPlainSecret(s) }
