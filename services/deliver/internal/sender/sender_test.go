package sender

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/relayhq/relay/pkg/signature"
	"github.com/relayhq/relay/pkg/ssrf"
)

func TestSendSignsAndKeepsResponse(t *testing.T) {
	secret := signature.StandardWebhooks{}.NewSecret()
	now := time.Now()
	var got *http.Request
	var gotBody []byte
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = r
		gotBody, _ = io.ReadAll(r.Body)
		w.WriteHeader(503)
		_, _ = io.WriteString(w, strings.Repeat("e", 10000))
	}))
	defer srv.Close()

	s := New(Config{Timeout: 5 * time.Second, ConnectTimeout: time.Second, AllowPrivate: true, MaxIdlePerHost: 4}, nil)
	body := []byte(`{"type":"invoice.paid"}`)
	resp := s.Send(context.Background(), Request{
		URL: srv.URL + "/hook", Body: body, EventID: "evt_1", EventType: "invoice.paid", Attempt: 3, Secrets: []string{secret}, Now: now,
		// A subscription's own headers go along; Relay's own are Relay's
		// even were one given (the API refuses them).
		Header: map[string]string{"Authorization": "Bearer endpoint-token", "X-Relay-Event-Id": "forged", "Webhook-Id": "forged"},
	})
	if resp.Err != nil || resp.Status != 503 {
		t.Fatalf("resp = %+v", resp)
	}
	if len(resp.Body) != MaxResponse {
		t.Fatalf("kept %d bytes of the response, want %d", len(resp.Body), MaxResponse)
	}
	if string(gotBody) != string(body) {
		t.Fatalf("body = %q", gotBody)
	}
	for h, want := range map[string]string{
		"Webhook-Id": "evt_1", "X-Relay-Event-Id": "evt_1", "X-Relay-Event-Type": "invoice.paid",
		"X-Relay-Attempt": "3", "Content-Type": "application/json", "Authorization": "Bearer endpoint-token",
	} {
		if v := got.Header.Get(h); v != want {
			t.Errorf("%s = %q, want %q", h, v, want)
		}
	}
	if !strings.HasPrefix(got.Header.Get("User-Agent"), "Relay/") {
		t.Errorf("User-Agent = %q", got.Header.Get("User-Agent"))
	}
	// The receiver's view: both signatures verify with the subscription's secret.
	req := signature.Request{Header: got.Header, Body: gotBody}
	if err := (signature.StandardWebhooks{}).Verify(req, []string{secret}, now, 0); err != nil {
		t.Fatalf("standard webhooks signature: %v", err)
	}
	if err := (signature.Relay{}).Verify(req, []string{secret}, now, 0); err != nil {
		t.Fatalf("x-relay-signature: %v", err)
	}
}

func TestSendTimeoutAndGuard(t *testing.T) {
	block := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-block }))
	defer srv.Close()
	defer close(block)
	secret := signature.StandardWebhooks{}.NewSecret()

	s := New(Config{Timeout: 200 * time.Millisecond, ConnectTimeout: time.Second, AllowPrivate: true, MaxIdlePerHost: 4}, nil)
	resp := s.Send(context.Background(), Request{URL: srv.URL + "/?token=sekrit", Body: []byte("{}"), EventID: "e", Secrets: []string{secret}, Now: time.Now()})
	if resp.Err == nil || !strings.Contains(resp.Err.Error(), "timeout") {
		t.Fatalf("want a timeout, got %+v", resp)
	}
	if strings.Contains(resp.Err.Error(), "sekrit") {
		t.Fatalf("error leaks the URL: %v", resp.Err)
	}

	guarded := New(Config{Timeout: time.Second, ConnectTimeout: time.Second, MaxIdlePerHost: 4}, nil)
	resp = guarded.Send(context.Background(), Request{URL: srv.URL, Body: []byte("{}"), EventID: "e", Secrets: []string{secret}, Now: time.Now()})
	if !errors.Is(resp.Err, ssrf.ErrForbidden) {
		t.Fatalf("guarded sender reached a loopback server: %+v", resp)
	}
}

func TestRedirectsAreNotFollowed(t *testing.T) {
	hit := false
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hit = true }))
	defer target.Close()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, target.URL, http.StatusTemporaryRedirect)
	}))
	defer srv.Close()
	s := New(Config{Timeout: time.Second, ConnectTimeout: time.Second, AllowPrivate: true, MaxIdlePerHost: 4}, nil)
	resp := s.Send(context.Background(), Request{URL: srv.URL, Body: []byte("{}"), EventID: "e", Secrets: []string{signature.StandardWebhooks{}.NewSecret()}, Now: time.Now()})
	if resp.Status != http.StatusTemporaryRedirect || hit {
		t.Fatalf("redirect followed: status %d, target hit %v", resp.Status, hit)
	}
}

// With RELAY_DELIVERY_PROXY every delivery goes through the proxy, which
// Relay reaches though it is on a private address, with its credentials;
// an endpoint that is, or resolves to, a forbidden address is refused
// before anything is sent.
func TestSendThroughAProxy(t *testing.T) {
	var seen []*http.Request
	var mu sync.Mutex
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.Clone(context.Background()))
		mu.Unlock()
		w.WriteHeader(204) // the proxy answers for the endpoint
	}))
	defer proxy.Close()
	pu, _ := url.Parse(proxy.URL)
	pu.User = url.UserPassword("relay", "proxy-password")
	s := New(Config{Timeout: 5 * time.Second, ConnectTimeout: time.Second, MaxIdlePerHost: 4, Proxy: pu}, nil)
	send := func(target string) Response {
		return s.Send(context.Background(), Request{URL: target, Body: []byte(`{}`), EventID: "evt_1", EventType: "t", Attempt: 1,
			Secrets: []string{signature.StandardWebhooks{}.NewSecret()}, Now: time.Now()})
	}

	if resp := send("http://93.184.216.34/hook?x=1"); resp.Err != nil || resp.Status != 204 {
		t.Fatalf("a public endpoint through the proxy: %+v", resp)
	}
	mu.Lock()
	if len(seen) != 1 || seen[0].URL.String() != "http://93.184.216.34/hook?x=1" || seen[0].Header.Get("Webhook-Id") != "evt_1" ||
		!strings.HasPrefix(seen[0].Header.Get("Proxy-Authorization"), "Basic ") {
		t.Fatalf("the proxy saw %d requests: %v", len(seen), seen)
	}
	mu.Unlock()
	for _, target := range []string{"http://127.0.0.1:9/x", "http://localhost:9/x", "http://[::ffff:10.0.0.1]/x"} {
		if resp := send(target); !errors.Is(resp.Err, ssrf.ErrForbidden) {
			t.Errorf("%s through the proxy: %+v, want ErrForbidden", target, resp)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(seen) != 1 {
		t.Fatalf("forbidden endpoints reached the proxy: %d requests", len(seen))
	}
}

// With RELAY_REQUIRE_HTTPS an http:// endpoint (a subscription made before
// it was set) is refused without a connection.
func TestRequireHTTPSRefusesPlainHTTP(t *testing.T) {
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits.Add(1) }))
	defer srv.Close()
	s := New(Config{Timeout: 5 * time.Second, ConnectTimeout: time.Second, AllowPrivate: true, MaxIdlePerHost: 4, RequireHTTPS: true}, nil)
	resp := s.Send(context.Background(), Request{URL: srv.URL + "/hook", Body: []byte(`{}`), EventID: "evt_1", Attempt: 1,
		Secrets: []string{signature.StandardWebhooks{}.NewSecret()}, Now: time.Now()})
	if resp.Err == nil || !strings.Contains(resp.Err.Error(), "RELAY_REQUIRE_HTTPS") || hits.Load() != 0 {
		t.Fatalf("http:// with RELAY_REQUIRE_HTTPS: %+v, %d requests reached the endpoint", resp, hits.Load())
	}
}
