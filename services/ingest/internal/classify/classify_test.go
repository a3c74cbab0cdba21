package classify

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/relayhq/relay/pkg/signature"
)

func TestEventType(t *testing.T) {
	tests := []struct {
		name    string
		headers map[string]string
		body    string
		want    string
	}{
		{"stripe json type", nil, `{"id":"evt_1","type":"payment_intent.succeeded"}`, "payment_intent.succeeded"},
		{"github with action", map[string]string{"X-GitHub-Event": "pull_request"}, `{"action":"opened"}`, "pull_request.opened"},
		{"github without action", map[string]string{"X-GitHub-Event": "push"}, `{"ref":"main"}`, "push"},
		{"shopify topic", map[string]string{"X-Shopify-Topic": "orders/create"}, `{"id":1}`, "orders/create"},
		{"not json", nil, "token=abc&x=1", "unknown"},
		{"type not a string", nil, `{"type":42}`, "unknown"},
		{"empty type", nil, `{"type":""}`, "unknown"},
		{"control chars dropped", nil, `{"type":"a\u0000b\nc"}`, "abc"},
		{"long type bounded", nil, `{"type":"` + strings.Repeat("x", 500) + `"}`, strings.Repeat("x", maxTypeLen)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := http.Header{}
			for k, v := range tt.headers {
				h.Set(k, v)
			}
			if got := EventType(h, []byte(tt.body)); got != tt.want {
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

	h := http.Header{}
	h.Set("X-Idempotency-Key", "order-42")
	if got := DedupKey(h, body, stripe); got != "idem:order-42" {
		t.Fatalf("idempotency key first: %q", got)
	}
	if got := DedupKey(http.Header{}, body, stripe); got != "dlv:evt_stripe_1" {
		t.Fatalf("stripe event id: %q", got)
	}
	gh := http.Header{}
	gh.Set("X-GitHub-Delivery", "d-1")
	if got := DedupKey(gh, body, github); got != "dlv:d-1" {
		t.Fatalf("github delivery: %q", got)
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
