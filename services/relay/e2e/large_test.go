package e2e

import (
	"bytes"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/relayhq/relay/pkg/testenv"
)

// TestLargeBodiesThroughEveryTier sends a burst of bodies just under the
// 1 MiB RELAY_MAX_BODY_BYTES default to a slow, failing endpoint whose
// backlog is full, so that deliveries are deferred in bursts and every one
// then climbs the whole ladder into the DLQ. Every record, alone or batched
// with others, must reach its tier and the DLQ on a broker at its default
// limits: before topics were created to admit the producers' batches, the
// deferrals' batches went over the broker's 1 MiB default and were refused
// with MESSAGE_TOO_LARGE on every try, forever.
func TestLargeBodiesThroughEveryTier(t *testing.T) {
	e := startStack(t, map[string]string{
		"RELAY_DELIVER_PER_SUBSCRIPTION":     "1",
		"RELAY_DELIVER_SUBSCRIPTION_BACKLOG": "1",
		"RELAY_DELIVERY_TIMEOUT":             "5s",
		// Every delivery climbs the whole ladder: the breaker would hold
		// them back after ten failures in a row.
		"RELAY_BREAKER_FAILURES": "0",
	})
	// Slow enough that a full backlog would wait longer than the first
	// tier's 1s: new deliveries are deferred, not queued.
	rc := newReceiver(t, func(*http.Request, int) (int, http.Header) {
		time.Sleep(600 * time.Millisecond)
		return 500, nil
	})
	src := e.createSource("relay")
	sub := e.subscribe(src.ID, rc.URL, "*")
	const n = 8
	pad := bytes.Repeat([]byte("x"), 1<<20-2048)
	evts := make([]string, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			body := append([]byte(fmt.Sprintf(`{"type":"big","n":%d,"pad":"`, i)), pad...)
			body = append(body, `"}`...)
			code, rep := e.send(src, "relay", body, nil)
			if code != 202 {
				t.Errorf("send %d: %d %+v", i, code, rep.Error)
			}
			evts[i] = rep.EventID
		}()
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	for _, evt := range evts {
		d := e.waitStatus(src.ID, evt, sub.ID, "dead", 120*time.Second)
		if d.Attempts != 4 || d.LastStatusCode != 500 {
			t.Fatalf("event %s: %+v; want 4 attempts (first and 3 tiers)", evt, d)
		}
	}
	for id, count := range rc.byWebhookID() {
		if count != 4 {
			t.Errorf("%s reached the endpoint %d times, want 4", id, count)
		}
	}
	metrics := "http://" + e.stack.Deliver.AdminAddr() + "/metrics"
	if v := metricValue(t, metrics, "relay_deliver_produce_refused_total"); v != 0 {
		t.Fatalf("the broker refused %v produces", v)
	}
	if v := metricValue(t, metrics, `relay_deliver_outcomes_total{outcome="deferred"}`); v == 0 {
		t.Fatal("nothing was deferred: the test did not test a deferral's burst")
	}
	var parked struct {
		Data []struct {
			Reason string `json:"reason"`
		} `json:"data"`
	}
	testenv.Eventually(t, 10*time.Second, "every dead delivery to be listed", func() bool {
		e.call("GET", "/dlq?subscription_id="+sub.ID, nil, &parked)
		return len(parked.Data) == n
	})
}

// TestDeliverHoldsBoundedBytes: with an endpoint that does not answer and
// large bodies, deliver works on no more records than their bytes allow
// (RELAY_DELIVER_MAX_INFLIGHT_BYTES), not as many as the record and
// per-subscription limits would let in; once the endpoint answers, every
// event is delivered once.
func TestDeliverHoldsBoundedBytes(t *testing.T) {
	const limit, size, n = 4 << 20, 500 << 10, 40
	e := startStack(t, map[string]string{"RELAY_DELIVER_MAX_INFLIGHT_BYTES": fmt.Sprint(limit)})
	release := make(chan struct{})
	var inside, most atomic.Int32
	rc := newReceiver(t, func(r *http.Request, _ int) (int, http.Header) {
		now := inside.Add(1)
		defer inside.Add(-1)
		for m := most.Load(); now > m && !most.CompareAndSwap(m, now); m = most.Load() {
		}
		select {
		case <-release:
		case <-r.Context().Done():
		}
		return 200, nil
	})
	src := e.createSource("relay")
	e.subscribe(src.ID, rc.URL, "*")
	pad := bytes.Repeat([]byte("x"), size)
	for i := range n {
		body := append([]byte(fmt.Sprintf(`{"type":"big","n":%d,"pad":"`, i)), pad...)
		if code, rep := e.send(src, "relay", append(body, `"}`...), nil); code != 202 {
			t.Fatalf("send %d: %d %+v", i, code, rep.Error)
		}
	}
	metrics := "http://" + e.stack.Deliver.AdminAddr() + "/metrics"
	testenv.Eventually(t, 30*time.Second, "deliver to hold its budget", func() bool {
		return metricValue(t, metrics, "relay_deliver_inflight_bytes") > limit-2*size
	})
	time.Sleep(time.Second) // time for more to start, which must not happen
	if held := metricValue(t, metrics, "relay_deliver_inflight_bytes"); held > limit {
		t.Fatalf("deliver holds %.0f bytes of records, over its %d", held, limit)
	}
	if m := most.Load(); m > limit/size {
		t.Fatalf("%d requests of %d KiB at once, more than %d bytes allow", m, size>>10, limit)
	}
	close(release)
	testenv.Eventually(t, 60*time.Second, "every event to arrive", func() bool { return len(rc.byWebhookID()) == n })
	for id, c := range rc.byWebhookID() {
		if c != 1 {
			t.Errorf("%s delivered %d times", id, c)
		}
	}
}
