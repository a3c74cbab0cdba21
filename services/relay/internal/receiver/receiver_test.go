package receiver

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/relayhq/relay/pkg/logging"
	"github.com/relayhq/relay/pkg/signature"
)

func post(t *testing.T, h http.Handler, path, id string, sign func(http.Header)) int {
	t.Helper()
	req := httptest.NewRequest(http.MethodPost, path, strings.NewReader(`{"type":"x"}`))
	req.Header.Set("Webhook-Id", id)
	if sign != nil {
		sign(req.Header)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec.Code
}

func TestModes(t *testing.T) {
	rc := New(logging.Discard())
	if c := post(t, rc, "/?mode=ok", "a", nil); c != 200 {
		t.Fatalf("ok = %d", c)
	}
	if c := post(t, rc, "/?mode=fail", "b", nil); c != 500 {
		t.Fatalf("fail = %d", c)
	}
	if c := post(t, rc, "/?mode=flaky", "c", nil); c != 500 {
		t.Fatalf("flaky first = %d", c)
	}
	if c := post(t, rc, "/?mode=flaky", "c", nil); c != 200 {
		t.Fatalf("flaky second = %d", c)
	}
	if c := post(t, rc, "/?status=410", "d", nil); c != 410 {
		t.Fatalf("status = %d", c)
	}
	rec := httptest.NewRecorder()
	rc.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/_stats", nil))
	var s Stats
	if err := json.Unmarshal(rec.Body.Bytes(), &s); err != nil {
		t.Fatal(err)
	}
	if s.Requests != 5 || s.ByWebhookID["c"] != 2 || s.ByStatus["500"] != 2 {
		t.Fatalf("stats = %+v", s)
	}
}

func TestVerifiesWithSecret(t *testing.T) {
	secret := signature.StandardWebhooks{}.NewSecret()
	rc := New(logging.Discard(), secret)
	if c := post(t, rc, "/", "a", nil); c != 401 {
		t.Fatalf("unsigned = %d, want 401", c)
	}
	sign := func(h http.Header) {
		_ = (signature.StandardWebhooks{}).Sign(h, []byte(`{"type":"x"}`), secret, time.Now())
	}
	if c := post(t, rc, "/", "a", sign); c != 200 {
		t.Fatalf("signed = %d, want 200", c)
	}
}
