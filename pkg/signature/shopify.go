package signature

import (
	"crypto/hmac"
	"encoding/base64"
	"net/http"
	"time"
)

// Shopify headers.
const (
	HeaderShopifyHmac      = "X-Shopify-Hmac-Sha256"
	HeaderShopifyWebhookID = "X-Shopify-Webhook-Id"
	HeaderShopifyTopic     = "X-Shopify-Topic"
)

// Shopify is Shopify's scheme: `X-Shopify-Hmac-Sha256` is the base64
// HMAC-SHA256 of the raw body keyed with the app's client secret.
type Shopify struct{}

var _ Scheme = Shopify{}

// Name implements Scheme.
func (Shopify) Name() string { return "shopify" }

// Verify implements Scheme.
func (Shopify) Verify(req Request, secrets []string, _ time.Time, _ time.Duration) error {
	v := req.Header.Get(HeaderShopifyHmac)
	if v == "" {
		return missing(HeaderShopifyHmac)
	}
	got, err := decodeBase64(v)
	if err != nil || len(got) != 32 {
		return malformed(HeaderShopifyHmac)
	}
	for _, s := range secrets {
		if hmac.Equal(got, hmacSHA256([]byte(s), req.Body)) {
			return nil
		}
	}
	return mismatch(HeaderShopifyHmac)
}

// Sign implements Scheme.
func (Shopify) Sign(h http.Header, body []byte, secret string, _ time.Time) error {
	h.Set(HeaderShopifyHmac, base64.StdEncoding.EncodeToString(hmacSHA256([]byte(secret), body)))
	if h.Get(HeaderShopifyWebhookID) == "" {
		h.Set(HeaderShopifyWebhookID, randomHex(16))
	}
	return nil
}

// DeliveryID implements Scheme.
func (Shopify) DeliveryID(req Request) string { return req.Header.Get(HeaderShopifyWebhookID) }

// SignsID implements Scheme: the signature covers the body only, not the id.
func (Shopify) SignsID() bool { return false }

// NewSecret implements Scheme.
func (Shopify) NewSecret() string { return randomHex(24) }

// CheckSecret implements Scheme.
func (Shopify) CheckSecret(s string) error { return checkPlainSecret(s) }
