package e2e

import (
	"bytes"
	"fmt"
	"net/http"
	"sync"
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
