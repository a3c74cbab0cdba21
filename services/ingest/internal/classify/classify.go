// Package classify derives an inbound webhook's event type and dedup key
// from its headers and body.
package classify

import (
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"strings"
	"unicode/utf8"

	"github.com/relayhq/relay/pkg/record"
	"github.com/relayhq/relay/pkg/signature"
)

// HeaderIdempotencyKey lets any sender name its own dedup key.
const HeaderIdempotencyKey = "X-Idempotency-Key"

// MaxIdempotencyKey bounds x-idempotency-key.
const MaxIdempotencyKey = 255

// Unknown is the type of an event whose type cannot be found.
const Unknown = "unknown"

// EventType returns the event type from where the source's scheme puts it.
// GitHub and Shopify name it in a header of their own, X-GitHub-Event (plus
// "." and the body's `action` when present) and X-Shopify-Topic, and an
// hmac source in its type_header; every other scheme's senders name it in
// the signed body's `type`, which no header can then override (a captured
// request replayed with another type header must not reach other
// subscriptions). A header-typed request without its header falls back to
// the body's `type`; failing all, the type is "unknown". For a source of the
// slack scheme, an Events API envelope (`"type": "event_callback"`, which
// every Slack event arrives in) has the type of the event inside it, plus
// "." and its `subtype` when it has one (`app_mention`, `message`,
// `message.bot_message`), so that subscriptions can choose among Slack's
// events.
func EventType(h http.Header, body []byte, scheme signature.Scheme) string {
	switch s := scheme.(type) {
	case signature.GitHub:
		if ev := h.Get(signature.HeaderGitHubEvent); ev != "" {
			if action, ok := stringField(body, "action"); ok && action != "" {
				return clean(ev + "." + action)
			}
			return clean(ev)
		}
	case signature.Shopify:
		if t := h.Get(signature.HeaderShopifyTopic); t != "" {
			return clean(t)
		}
	case signature.Typer:
		// A header the source names for it (the hmac scheme's type_header).
		if t := s.EventType(signature.Request{Header: h, Body: body}); t != "" {
			return clean(t)
		}
	}
	if t, ok := stringField(body, "type"); ok {
		if _, slack := scheme.(signature.Slack); slack && t == slackEnvelope {
			if inner, ok := slackEventType(body); ok {
				return clean(inner)
			}
		}
		return clean(t)
	}
	return Unknown
}

// slackEnvelope is the `type` of the Slack Events API's outer payload.
const slackEnvelope = "event_callback"

// slackEventType returns the `type` of the `event` object in a Slack
// envelope, with "." and the event's `subtype` when that is a non-empty
// string. body is valid JSON.
func slackEventType(body []byte) (string, bool) {
	ev, ok := member(body, "event")
	if !ok || ev[0] != '{' {
		return "", false
	}
	t, ok := str(member(ev, "type"))
	if !ok || strings.TrimSpace(t) == "" {
		return "", false
	}
	if sub, ok := str(member(ev, "subtype")); ok && sub != "" {
		t += "." + sub
	}
	return t, true
}

// clean bounds a type's length and keeps it printable, so it is safe in
// headers, logs and Redis keys.
func clean(s string) string {
	s = strings.TrimSpace(s)
	if s == "" || !utf8.ValidString(s) {
		return Unknown
	}
	var b strings.Builder
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			continue
		}
		if b.Len()+utf8.RuneLen(r) > record.MaxEventType {
			break
		}
		b.WriteRune(r)
	}
	if b.Len() == 0 {
		return Unknown
	}
	return b.String()
}

// DedupKey returns the key duplicates are detected by. A scheme that signs
// its delivery id (Standard Webhooks' webhook-id, Stripe's event id, Slack's
// event_id) is the only source of it: a captured request replayed with a
// fresh x-idempotency-key is still a duplicate. For the others the sender's
// x-idempotency-key comes first, then the scheme's own (unsigned) delivery
// id. Failing those, the SHA-256 of the body. The kind is part of the key,
// so an idempotency key never collides with a body hash.
func DedupKey(h http.Header, body []byte, scheme signature.Scheme) string {
	id := scheme.DeliveryID(signature.Request{Header: h, Body: body})
	if !scheme.SignsID() {
		if k := h.Get(HeaderIdempotencyKey); k != "" {
			return "idem:" + k
		}
	}
	if id != "" {
		return "dlv:" + id
	}
	sum := sha256.Sum256(body)
	return "body:" + hex.EncodeToString(sum[:])
}
