package classify

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/relayhq/relay/pkg/record"
	"github.com/relayhq/relay/pkg/signature"
)

func TestEventType(t *testing.T) {
	const slackEvent = `{"token":"x","team_id":"T1","type":"event_callback","event_id":"Ev1","event":`
	tests := []struct {
		name    string
		scheme  string
		headers map[string]string
		body    string
		want    string
	}{
		{"stripe json type", "stripe", nil, `{"id":"evt_1","type":"payment_intent.succeeded"}`, "payment_intent.succeeded"},
		{"github with action", "github", map[string]string{"X-GitHub-Event": "pull_request"}, `{"action":"opened"}`, "pull_request.opened"},
		{"github without action", "github", map[string]string{"X-GitHub-Event": "push"}, `{"ref":"main"}`, "push"},
		{"shopify topic", "shopify", map[string]string{"X-Shopify-Topic": "orders/create"}, `{"id":1}`, "orders/create"},
		{"not json", "relay", nil, "token=abc&x=1", "unknown"},
		{"type not a string", "relay", nil, `{"type":42}`, "unknown"},
		{"empty type", "relay", nil, `{"type":""}`, "unknown"},
		{"control chars dropped", "relay", nil, `{"type":"a\u0000b\nc"}`, "abc"},
		{"long type bounded", "relay", nil, `{"type":"` + strings.Repeat("x", 500) + `"}`, strings.Repeat("x", record.MaxEventType)},
		// Slack's Events API wraps every event in one envelope type.
		{"slack event", "slack", nil, slackEvent + `{"type":"app_mention","text":"hi","channel":"C1"}}`, "app_mention"},
		{"slack event with subtype", "slack", nil, slackEvent + `{"type":"message","subtype":"bot_message","bot_id":"B1"}}`, "message.bot_message"},
		{"slack event, empty subtype", "slack", nil, slackEvent + `{"subtype":"","type":"message"}}`, "message"},
		{"slack event, subtype not a string", "slack", nil, slackEvent + `{"type":"message","subtype":{"type":"x"}}}`, "message"},
		{"slack event first", "slack", nil, `{"event":{"type":"reaction_added"},"type":"event_callback"}`, "reaction_added"},
		{"slack envelope without event", "slack", nil, `{"type":"event_callback"}`, "event_callback"},
		{"slack envelope, event not an object", "slack", nil, `{"type":"event_callback","event":"app_mention"}`, "event_callback"},
		{"slack envelope, event without type", "slack", nil, slackEvent + `{"subtype":"bot_message"}}`, "event_callback"},
		{"slack envelope, blank event type", "slack", nil, slackEvent + `{"type":" "}}`, "event_callback"},
		{"slack, not an envelope", "slack", nil, `{"type":"app_rate_limited","event":{"type":"x"}}`, "app_rate_limited"},
		{"slack envelope on another scheme", "relay", nil, slackEvent + `{"type":"app_mention"}}`, "event_callback"},
		{"hmac: its type header", "hmac:type_header=Linear-Event", map[string]string{"Linear-Event": "Issue"}, `{"type":"create"}`, "Issue"},
		{"hmac: its type header absent", "hmac:type_header=Linear-Event", nil, `{"type":"create"}`, "create"},
		// An unsigned header names the type only for the scheme whose
		// sender puts it there; elsewhere the signed body decides.
		{"stripe: a github header does not override", "stripe", map[string]string{"X-GitHub-Event": "push"}, `{"id":"evt_1","type":"charge.refunded"}`, "charge.refunded"},
		{"standard webhooks: a shopify header does not override", "standard-webhooks", map[string]string{"X-Shopify-Topic": "orders/create"}, `{"type":"invoice.paid"}`, "invoice.paid"},
		{"relay: a github header does not override", "relay", map[string]string{"X-GitHub-Event": "push"}, `{"type":"order.created"}`, "order.created"},
		{"relay: a github header does not fill in", "relay", map[string]string{"X-GitHub-Event": "push"}, `{"ref":"main"}`, "unknown"},
		{"shopify: a github header is not its own", "shopify", map[string]string{"X-GitHub-Event": "push", "X-Shopify-Topic": "orders/paid"}, `{}`, "orders/paid"},
		{"github without its header: the body", "github", nil, `{"type":"ping"}`, "ping"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := http.Header{}
			for k, v := range tt.headers {
				h.Set(k, v)
			}
			name, param, _ := strings.Cut(tt.scheme, ":")
			var params map[string]string
			if k, v, ok := strings.Cut(param, "="); ok {
				params = map[string]string{k: v}
			}
			scheme, err := signature.ForSource(name, params)
			if err != nil {
				t.Fatal(err)
			}
			if got := EventType(h, []byte(tt.body), scheme); got != tt.want {
				t.Fatalf("EventType = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestDedupKey(t *testing.T) {
	stripe, _ := signature.Lookup("stripe")
	github, _ := signature.Lookup("github")
	relay, _ := signature.Lookup("relay")
	body := []byte(`{"id":"evt_stripe_1","type":"x"}`)

	standard, _ := signature.Lookup("standard-webhooks")
	idem := http.Header{}
	idem.Set("X-Idempotency-Key", "order-42")
	// A scheme that signs its id is the only source of it: an unsigned
	// idempotency key, fresh on a replayed request, changes nothing.
	if got := DedupKey(idem, body, stripe); got != "dlv:evt_stripe_1" {
		t.Fatalf("stripe with an idempotency key: %q, want its signed event id", got)
	}
	if got := DedupKey(http.Header{}, body, stripe); got != "dlv:evt_stripe_1" {
		t.Fatalf("stripe event id: %q", got)
	}
	sw := idem.Clone()
	sw.Set("Webhook-Id", "msg_1")
	if got := DedupKey(sw, body, standard); got != "dlv:msg_1" {
		t.Fatalf("standard webhooks with an idempotency key: %q, want its signed webhook-id", got)
	}
	// Without its signed id, still never the unsigned key: the body's hash.
	if got := DedupKey(idem, []byte(`{"type":"x"}`), stripe); !strings.HasPrefix(got, "body:") {
		t.Fatalf("stripe without an id: %q, want the body hash", got)
	}
	gh := http.Header{}
	gh.Set("X-GitHub-Delivery", "d-1")
	if got := DedupKey(gh, body, github); got != "dlv:d-1" {
		t.Fatalf("github delivery: %q", got)
	}
	// Where the scheme signs no id, the sender's idempotency key comes first.
	gh.Set("X-Idempotency-Key", "order-42")
	if got := DedupKey(gh, body, github); got != "idem:order-42" {
		t.Fatalf("github with an idempotency key: %q", got)
	}
	if got := DedupKey(idem, body, relay); got != "idem:order-42" {
		t.Fatalf("relay with an idempotency key: %q", got)
	}
	a, b := DedupKey(http.Header{}, body, relay), DedupKey(http.Header{}, append(body, ' '), relay)
	if !strings.HasPrefix(a, "body:") || a == b {
		t.Fatalf("body hash keys: %q %q", a, b)
	}
}

// referenceType is what stringField(body, "type") must agree with:
// json.Unmarshal into a one-field struct, then into a string.
func referenceType(body []byte) (string, bool) {
	var v struct {
		Type json.RawMessage `json:"type"`
	}
	if json.Unmarshal(body, &v) != nil || len(v.Type) == 0 {
		return "", false
	}
	var s string
	if v.Type[0] != '"' || json.Unmarshal(v.Type, &s) != nil {
		return "", false
	}
	return s, true
}

func TestStringField(t *testing.T) {
	for _, body := range []string{
		`{"type":"a"}`, ` { "type" : "a" } `, `{"id":1,"type":"b","x":[1,{"type":"no"}]}`,
		`{"nested":{"type":"no"},"type":"yes"}`, `{"nested":{"type":"no"}}`, `{"Type":"case"}`,
		`{"type":"first","type":"last"}`, `{"ty\u0070e":"escaped name"}`, `{"type":"esc\"aped \u00e9"}`,
		`{"type":null}`, `{"type":true}`, `{"type":1.5e3}`, `{}`, `[]`, `"type"`, `{"type":"a"`,
		`{"type":"a"} x`, `{"a":"}\"","type":"after tricky string"}`, `{"a":[[],{}],"type":"t"}`, ``,
	} {
		got, gotOK := stringField([]byte(body), "type")
		want, wantOK := referenceType([]byte(body))
		if got != want || gotOK != wantOK {
			t.Errorf("%s: stringField = %q, %v; json.Unmarshal gives %q, %v", body, got, gotOK, want, wantOK)
		}
	}
}

func FuzzStringField(f *testing.F) {
	f.Add([]byte(`{"id":1,"type":"b","x":[1,{"type":"no"}]}`))
	f.Add([]byte(`{"TYPE":"x","type":"y"}`))
	f.Add([]byte(`{"a":"\\","type":"z"}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		got, gotOK := stringField(body, "type")
		want, wantOK := referenceType(body)
		if got != want || gotOK != wantOK {
			t.Fatalf("%q: stringField = %q, %v; json.Unmarshal gives %q, %v", body, got, gotOK, want, wantOK)
		}
	})
}

// referenceSlackType is what slackEventType must agree with: encoding/json
// decoding the envelope's event, then its type and subtype.
func referenceSlackType(body []byte) (string, bool) {
	var env struct {
		Event json.RawMessage `json:"event"`
	}
	if json.Unmarshal(body, &env) != nil || len(env.Event) == 0 || env.Event[0] != '{' {
		return "", false
	}
	var ev struct {
		Type    json.RawMessage `json:"type"`
		Subtype json.RawMessage `json:"subtype"`
	}
	if json.Unmarshal(env.Event, &ev) != nil {
		return "", false
	}
	rawString := func(raw json.RawMessage) (string, bool) {
		var s string
		if len(raw) == 0 || raw[0] != '"' || json.Unmarshal(raw, &s) != nil {
			return "", false
		}
		return s, true
	}
	t, ok := rawString(ev.Type)
	if !ok || strings.TrimSpace(t) == "" {
		return "", false
	}
	if sub, ok := rawString(ev.Subtype); ok && sub != "" {
		t += "." + sub
	}
	return t, true
}

func FuzzSlackEventType(f *testing.F) {
	f.Add([]byte(`{"type":"event_callback","event":{"type":"message","subtype":"bot_message"}}`))
	f.Add([]byte(`{"event":{"TYPE":"a","type":"b","Subtype":"c"},"Event":{"type":"d"}}`))
	f.Add([]byte(`{"event":{"type":"a\u00e9","subtype":null}}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		if !json.Valid(body) {
			return // slackEventType is only given valid JSON
		}
		got, gotOK := slackEventType(body)
		want, wantOK := referenceSlackType(body)
		if got != want || gotOK != wantOK {
			t.Fatalf("%q: slackEventType = %q, %v; encoding/json gives %q, %v", body, got, gotOK, want, wantOK)
		}
	})
}
