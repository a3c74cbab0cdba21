package alert

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/relayhq/relay/pkg/signature"
)

// alertSink answers alerts with status(n) for the nth request (from 1) and a
// short body, as chat webhooks do ("ok"), and counts the connections opened.
type alertSink struct {
	srv *httptest.Server

	mu    sync.Mutex
	conns int
	ids   []string
}

func newAlertSink(t *testing.T, status func(n int) int) *alertSink {
	s := &alertSink{}
	s.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		s.mu.Lock()
		s.ids = append(s.ids, r.Header.Get(signature.HeaderWebhookID))
		n := len(s.ids)
		s.mu.Unlock()
		w.WriteHeader(status(n))
		_, _ = io.WriteString(w, "ok")
	}))
	s.srv.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			s.mu.Lock()
			s.conns++
			s.mu.Unlock()
		}
	}
	s.srv.Start()
	t.Cleanup(s.srv.Close)
	return s
}

func (s *alertSink) seen() (ids []string, conns int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.ids...), s.conns
}

func startNotifier(t *testing.T, url string) *Notifier {
	n := New(url, signature.StandardWebhooks{}.NewSecret(), nil, slog.New(slog.DiscardHandler), prometheus.NewRegistry())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = n.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return n
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// TestAlertsShareOneConnection: each answer is read before it is closed, so
// a run of alerts reuses one pooled connection instead of dialling for each.
func TestAlertsShareOneConnection(t *testing.T) {
	sink := newAlertSink(t, func(int) int { return http.StatusOK })
	n := startNotifier(t, sink.srv.URL)
	for i := range 3 {
		n.Notify(Dead{EventID: "evt_" + string(rune('a'+i)), SubscriptionID: "sub_1", Reason: "retries_exhausted"})
	}
	waitFor(t, "three alerts sent", func() bool { return testutil.ToFloat64(n.sent.WithLabelValues("sent")) == 3 })
	ids, conns := sink.seen()
	if len(ids) != 3 || conns != 1 {
		t.Fatalf("%d alerts over %d connections, want 3 over 1", len(ids), conns)
	}
}

// TestAlertRetriedUnderItsOwnID: a failed post is tried again with the same
// webhook-id, so the receiver can tell a retry from a second alert.
func TestAlertRetriedUnderItsOwnID(t *testing.T) {
	sink := newAlertSink(t, func(n int) int {
		if n == 1 {
			return http.StatusServiceUnavailable
		}
		return http.StatusOK
	})
	n := startNotifier(t, sink.srv.URL)
	n.Notify(Dead{EventID: "evt_a", SubscriptionID: "sub_1", Reason: "retries_exhausted"})
	waitFor(t, "the alert sent", func() bool { return testutil.ToFloat64(n.sent.WithLabelValues("sent")) == 1 })
	ids, _ := sink.seen()
	if len(ids) != 2 || ids[0] == "" || ids[0] != ids[1] {
		t.Fatalf("webhook-ids of the posts = %q, want the same id twice", ids)
	}
	if f := testutil.ToFloat64(n.sent.WithLabelValues("failed")); f != 0 {
		t.Fatalf("failed = %v, want 0", f)
	}
}
