package api

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/relayhq/relay/pkg/catalog"
	"github.com/relayhq/relay/pkg/ids"
	"github.com/relayhq/relay/pkg/signature"
	"github.com/relayhq/relay/pkg/telemetry"
)

// heldProducer holds every produce until let go, then acknowledges it, and
// from then on acknowledges at once.
type heldProducer struct {
	mu      sync.Mutex
	held    []func()
	free    bool
	arrived chan struct{}
}

func (p *heldProducer) Produce(_ context.Context, r *kgo.Record, promise func(*kgo.Record, error)) {
	p.mu.Lock()
	if p.free {
		p.mu.Unlock()
		promise(r, nil)
		return
	}
	p.held = append(p.held, func() { promise(r, nil) })
	p.mu.Unlock()
	p.arrived <- struct{}{}
}

func (p *heldProducer) ProduceSync(_ context.Context, rs ...*kgo.Record) kgo.ProduceResults {
	out := make(kgo.ProduceResults, len(rs))
	for i, r := range rs {
		out[i] = kgo.ProduceResult{Record: r}
	}
	return out
}

func (p *heldProducer) letGo() {
	p.mu.Lock()
	held := p.held
	p.held, p.free = nil, true
	p.mu.Unlock()
	for _, ack := range held {
		ack()
	}
}

// TestWebhooksBeyondTheLimitAnswer503: with RELAY_INGEST_MAX_INFLIGHT_REQUESTS
// webhooks being worked on (here, waiting for the broker), one more is
// refused at once with 503 server_busy and Retry-After: 1, counted by
// relay_ingest_busy_total{limit="requests"}, and produces nothing; the
// management routes are not limited; once the two are acknowledged,
// webhooks are taken again.
func TestWebhooksBeyondTheLimitAnswer503(t *testing.T) {
	prod := &heldProducer{arrived: make(chan struct{}, 8)}
	a, store, tel := newTestAPIWith(t, prod, 2)
	srv := httptest.NewServer(a.Handler())
	t.Cleanup(srv.Close)
	scheme, _ := signature.Lookup("relay")
	secret := scheme.NewSecret()
	src := catalog.Source{ID: ids.New(ids.Source), Name: "limit", Scheme: "relay", Tolerance: 5 * time.Minute, DedupWindow: time.Hour, CreatedAt: time.Now()}
	if err := store.CreateSource(context.Background(), src, secret); err != nil {
		t.Fatal(err)
	}
	// Without the limit a third webhook would wait at the broker too: the
	// client gives up rather than hang the test.
	client := &http.Client{Timeout: 10 * time.Second}
	post := func(n int) (int, http.Header, string) {
		body := []byte(`{"type":"order.created","n":` + strings.Repeat("1", n) + `}`)
		req, _ := http.NewRequest(http.MethodPost, srv.URL+"/in/"+src.ID, bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		if err := scheme.Sign(req.Header, body, secret, time.Now()); err != nil {
			t.Error(err)
			return 0, nil, ""
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Error(err)
			return 0, nil, ""
		}
		defer resp.Body.Close()
		var e struct {
			Error struct{ Code string } `json:"error"`
		}
		_ = json.NewDecoder(resp.Body).Decode(&e)
		return resp.StatusCode, resp.Header, e.Error.Code
	}

	codes := make(chan int, 2)
	for n := 1; n <= 2; n++ {
		go func() {
			code, _, _ := post(n)
			codes <- code
		}()
	}
	for i := 0; i < 2; i++ {
		select {
		case <-prod.arrived:
		case <-time.After(10 * time.Second):
			t.Fatal("the two webhooks never reached the producer")
		}
	}
	code, hdr, errCode := post(3)
	if code != http.StatusServiceUnavailable || errCode != "server_busy" || hdr.Get("Retry-After") != "1" {
		t.Fatalf("a third webhook while two are worked on: %d %q Retry-After %q", code, errCode, hdr.Get("Retry-After"))
	}
	if got := busyRequests(t, tel); got != 1 {
		t.Fatalf(`relay_ingest_busy_total{limit="requests"} = %v, want 1`, got)
	}
	req, _ := http.NewRequest(http.MethodGet, srv.URL+"/sources/"+src.ID, nil)
	req.Header.Set("Authorization", "Bearer fuzz-admin-token-0123456789")
	if resp, err := client.Do(req); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("a management route while webhooks are at their limit: %v %v", resp, err)
	}
	prod.letGo()
	for i := 0; i < 2; i++ {
		if code := <-codes; code != http.StatusAccepted {
			t.Fatalf("a webhook held at the broker, once acknowledged: %d", code)
		}
	}
	if code, _, _ := post(4); code != http.StatusAccepted {
		t.Fatalf("a webhook after the two ended: %d", code)
	}
}

// busyRequests reads relay_ingest_busy_total{limit="requests"}.
func busyRequests(t *testing.T, tel *telemetry.Telemetry) float64 {
	t.Helper()
	mfs, err := tel.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "relay_ingest_busy_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "limit" && l.GetValue() == "requests" {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	t.Fatal(`relay_ingest_busy_total{limit="requests"} is not registered`)
	return 0
}
