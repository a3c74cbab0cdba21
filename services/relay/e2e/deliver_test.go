package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/relayhq/relay/pkg/catalog"
	"github.com/relayhq/relay/pkg/ids"
	"github.com/relayhq/relay/pkg/record"
	"github.com/relayhq/relay/pkg/secretbox"
	"github.com/relayhq/relay/pkg/signature"
	"github.com/relayhq/relay/pkg/testenv"
)

func TestFlakyEndpointDeliveredOnSecondAttempt(t *testing.T) {
	e := startStack(t, nil)
	rc := newReceiver(t, func(r *http.Request, n int) (int, http.Header) {
		if r.Header.Get("X-Relay-Attempt") == "1" {
			return 500, nil
		}
		return 200, nil
	})
	src := e.createSource("relay")
	sub := e.subscribe(src.ID, rc.URL, "*")
	_, rep := e.send(src, "relay", []byte(`{"type":"order.created"}`), nil)
	d := e.waitStatus(src.ID, rep.EventID, sub.ID, "delivered", 30*time.Second)
	if d.Attempts != 2 || len(d.History) != 2 || d.History[0].StatusCode != 200 || d.History[1].StatusCode != 500 {
		t.Fatalf("delivery = %+v", d)
	}
	got := rc.requests()
	if len(got) != 2 || got[0].Header.Get("Webhook-Id") != got[1].Header.Get("Webhook-Id") {
		t.Fatalf("receiver got %d requests; webhook-id must be the same on every attempt", len(got))
	}
	// The retry waited for its tier (1s).
	if gap := got[1].At.Sub(got[0].At); gap < 900*time.Millisecond {
		t.Fatalf("second attempt came %v after the first, before its 1s tier", gap)
	}
}

// TestFailThroughEveryTierThenRedrive is the seed's demo: an endpoint that
// always fails is retried through every tier, parked, listed, and delivered
// exactly once after a redrive; a healthy subscription on the same event gets
// exactly one delivery throughout.
func TestFailThroughEveryTierThenRedrive(t *testing.T) {
	e := startStack(t, nil)
	var healthy atomic.Bool
	// Once healthy, the endpoint answers only when released, so that the
	// redriven attempt cannot settle before the test has looked at it.
	release := make(chan struct{})
	var once sync.Once
	free := func() { once.Do(func() { close(release) }) }
	failing := newReceiver(t, func(*http.Request, int) (int, http.Header) {
		if healthy.Load() {
			<-release
			return 200, nil
		}
		return 503, nil
	})
	t.Cleanup(free)
	good := newReceiver(t, ok200)
	src := e.createSource("relay")
	bad := e.subscribe(src.ID, failing.URL, "payment.*")
	e.subscribe(src.ID, good.URL, []string{"payment.*", "invoice.*"})
	_, rep := e.send(src, "relay", []byte(`{"type":"payment.failed"}`), nil)

	dead := e.waitStatus(src.ID, rep.EventID, bad.ID, "dead", 60*time.Second)
	if dead.Attempts != 4 || dead.LastStatusCode != 503 {
		t.Fatalf("dead delivery = %+v; want 4 attempts (first + 3 tiers)", dead)
	}
	if n := len(failing.requests()); n != 4 {
		t.Fatalf("failing endpoint got %d requests, want 4", n)
	}
	var parked struct {
		Data []struct {
			EventID        string `json:"event_id"`
			SubscriptionID string `json:"subscription_id"`
			Reason         string `json:"reason"`
			Attempts       int    `json:"attempts"`
		} `json:"data"`
	}
	testenv.Eventually(t, 10*time.Second, "the dead delivery to be listed", func() bool {
		e.call("GET", "/dlq?subscription_id="+bad.ID, nil, &parked)
		return len(parked.Data) == 1
	})
	if p := parked.Data[0]; p.EventID != rep.EventID || p.Reason != "retries_exhausted" || p.Attempts != 4 {
		t.Fatalf("parked = %+v", p)
	}

	healthy.Store(true)
	var res struct {
		Redriven int  `json:"redriven"`
		Complete bool `json:"complete"`
	}
	if code := e.call("POST", "/replay/dlq?subscription_id="+bad.ID, nil, &res); code != 202 || res.Redriven != 1 || !res.Complete {
		t.Fatalf("redrive = %d %+v", code, res)
	}
	// Queued again: retrying, due now, its four failed attempts kept.
	if d := e.deliveries(src.ID, rep.EventID)[bad.ID]; d.Status != "retrying" || d.NextAttemptAt == "" || d.Attempts != 4 {
		t.Fatalf("redriven delivery before its attempt settles = %+v; want retrying with a next attempt", d)
	}
	free()
	d := e.waitStatus(src.ID, rep.EventID, bad.ID, "delivered", 30*time.Second)
	if d.Attempts != 5 {
		t.Fatalf("after redrive: %+v", d)
	}
	// A second redrive finds nothing: each parked record is redriven once.
	if code := e.call("POST", "/replay/dlq", nil, &res); code != 202 || res.Redriven != 0 {
		t.Fatalf("second redrive = %d %+v", code, res)
	}
	e.call("GET", "/dlq?subscription_id="+bad.ID, nil, &parked)
	if len(parked.Data) != 0 {
		t.Fatalf("still listed after redrive: %+v", parked.Data)
	}
	time.Sleep(2 * time.Second)
	if got := failing.byWebhookID()[rep.EventID]; got != 5 {
		t.Fatalf("the recovered endpoint saw %d requests in all, want 4 failures + 1 delivery", got)
	}
	if got := good.byWebhookID()[rep.EventID]; got != 1 {
		t.Fatalf("the healthy endpoint got %d deliveries, want exactly 1", got)
	}
}

func TestNonRetryableAndGone(t *testing.T) {
	e := startStack(t, nil)
	rc400 := newReceiver(t, func(*http.Request, int) (int, http.Header) { return 400, nil })
	rc410 := newReceiver(t, func(*http.Request, int) (int, http.Header) { return 410, nil })
	src := e.createSource("relay")
	s400 := e.subscribe(src.ID, rc400.URL, "*")
	s410 := e.subscribe(src.ID, rc410.URL, "*")
	_, rep := e.send(src, "relay", []byte(`{"type":"x"}`), nil)
	d := e.waitStatus(src.ID, rep.EventID, s400.ID, "dead", 20*time.Second)
	if d.Attempts != 1 {
		t.Fatalf("400 was retried: %+v", d)
	}
	d = e.waitStatus(src.ID, rep.EventID, s410.ID, "dead", 20*time.Second)
	if d.Attempts != 1 {
		t.Fatalf("410 was retried: %+v", d)
	}
	var sub struct {
		Enabled        bool   `json:"enabled"`
		DisabledReason string `json:"disabled_reason"`
	}
	e.call("GET", "/sources/"+src.ID+"/subscriptions/"+s410.ID, nil, &sub)
	if sub.Enabled || !strings.Contains(sub.DisabledReason, "410") {
		t.Fatalf("410 did not disable the subscription: %+v", sub)
	}
	e.call("GET", "/sources/"+src.ID+"/subscriptions/"+s400.ID, nil, &sub)
	if !sub.Enabled {
		t.Fatal("400 disabled the subscription")
	}
	// The disabled subscription no longer receives new events.
	_, rep2 := e.send(src, "relay", []byte(`{"type":"y"}`), nil)
	e.waitStatus(src.ID, rep2.EventID, s400.ID, "dead", 20*time.Second)
	time.Sleep(500 * time.Millisecond)
	if n := len(rc410.requests()); n != 1 {
		t.Fatalf("disabled endpoint got %d requests, want 1", n)
	}
}

func TestRetryAfterPicksTheTier(t *testing.T) {
	// Tiers 1s, 2s, 3s: Retry-After: 2 must skip the 1s tier.
	e := startStack(t, nil)
	rc := newReceiver(t, func(r *http.Request, n int) (int, http.Header) {
		if n == 1 {
			return 429, http.Header{"Retry-After": {"2"}}
		}
		return 200, nil
	})
	src := e.createSource("relay")
	sub := e.subscribe(src.ID, rc.URL, "*")
	_, rep := e.send(src, "relay", []byte(`{"type":"x"}`), nil)
	e.waitStatus(src.ID, rep.EventID, sub.ID, "delivered", 30*time.Second)
	got := rc.requests()
	if len(got) != 2 {
		t.Fatalf("%d requests", len(got))
	}
	if gap := got[1].At.Sub(got[0].At); gap < 1900*time.Millisecond {
		t.Fatalf("retried after %v; Retry-After asked for 2s", gap)
	}
}

func TestSlowEndpointDoesNotDelayFastOne(t *testing.T) {
	e := startStack(t, nil)
	// The slow endpoint answers only when the test lets it: whatever the
	// fast endpoint receives meanwhile was not held up by it.
	release := make(chan struct{})
	slow := newReceiver(t, func(r *http.Request, _ int) (int, http.Header) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
		return 200, nil
	})
	fast := newReceiver(t, ok200)
	src := e.createSource("relay")
	slowSub := e.subscribe(src.ID, slow.URL, "*")
	fastSub := e.subscribe(src.ID, fast.URL, "*")
	var evts []string
	for i := 0; i < 5; i++ {
		_, rep := e.send(src, "relay", []byte(fmt.Sprintf(`{"type":"x","n":%d}`, i)), nil)
		evts = append(evts, rep.EventID)
	}
	for _, evt := range evts {
		e.waitStatus(src.ID, evt, fastSub.ID, "delivered", 30*time.Second)
	}
	testenv.Eventually(t, 10*time.Second, "the slow endpoint to be called", func() bool { return len(slow.requests()) > 0 })
	for _, evt := range evts {
		if st := e.deliveries(src.ID, evt)[slowSub.ID].Status; st == "delivered" {
			t.Fatalf("event %s already delivered to the blocked endpoint", evt)
		}
	}
	close(release)
	for _, evt := range evts {
		e.waitStatus(src.ID, evt, slowSub.ID, "delivered", 30*time.Second)
	}
}

// A subscription's full backlog: deliver waits for room when the endpoint
// keeps up (it is only behind), and defers to the first tier, without
// spending an attempt, when the endpoint is stuck.
func TestFullBacklog(t *testing.T) {
	sendN := func(t *testing.T, e *env, src source, n int) {
		t.Helper()
		for i := 0; i < n; i++ {
			if code, _ := e.send(src, "relay", []byte(fmt.Sprintf(`{"type":"x","n":%d}`, i)), nil); code != 202 {
				t.Fatalf("send %d: %d", i, code)
			}
		}
	}
	attemptsAllFirst := func(t *testing.T, rc *receiver) {
		t.Helper()
		for _, r := range rc.requests() {
			if a := r.Header.Get("X-Relay-Attempt"); a != "1" {
				t.Fatalf("a delivery came with attempt %s: deferring spent an attempt", a)
			}
		}
	}

	t.Run("endpoint keeps up: wait, no deferral", func(t *testing.T) {
		// A deferral would cost 5 s: waiting for room is sooner.
		e := startStack(t, map[string]string{"RELAY_RETRY_TIERS": "5s,10s",
			"RELAY_DELIVER_PER_SUBSCRIPTION": "1", "RELAY_DELIVER_SUBSCRIPTION_BACKLOG": "1"})
		rc := newReceiver(t, func(*http.Request, int) (int, http.Header) {
			time.Sleep(5 * time.Millisecond)
			return 200, nil
		})
		src := e.createSource("relay")
		e.subscribe(src.ID, rc.URL, "*")
		const n = 20
		sendN(t, e, src, n)
		testenv.Eventually(t, 30*time.Second, "every event to arrive", func() bool { return len(rc.byWebhookID()) == n })
		attemptsAllFirst(t, rc)
		if d := e.endOffsets(e.names.Tiers[0].Topic); d != 0 {
			t.Fatalf("%d deliveries deferred to %s although the endpoint kept up", d, e.names.Tiers[0].Topic)
		}
	})

	t.Run("endpoint stuck: defer without spending an attempt", func(t *testing.T) {
		e := startStack(t, map[string]string{"RELAY_DELIVER_PER_SUBSCRIPTION": "1", "RELAY_DELIVER_SUBSCRIPTION_BACKLOG": "1"})
		release := make(chan struct{})
		rc := newReceiver(t, func(r *http.Request, _ int) (int, http.Header) {
			select {
			case <-release:
			case <-r.Context().Done():
			}
			return 200, nil
		})
		src := e.createSource("relay")
		e.subscribe(src.ID, rc.URL, "*")
		const n = 5
		sendN(t, e, src, n)
		// One runs, one is queued; the others wait at most the first tier's
		// delay (1s here) for room that does not come, and are deferred.
		testenv.Eventually(t, 30*time.Second, "deliveries deferred to the first tier", func() bool {
			return e.endOffsets(e.names.Tiers[0].Topic) > 0
		})
		close(release)
		testenv.Eventually(t, 60*time.Second, "every event to arrive", func() bool { return len(rc.byWebhookID()) == n })
		time.Sleep(2 * time.Second)
		for id, count := range rc.byWebhookID() {
			if count != 1 {
				t.Errorf("%s delivered %d times", id, count)
			}
		}
		attemptsAllFirst(t, rc)
	})
}

// TestDeliverRestartRedeliversNothingDelivered stops a deliver replica in
// the middle of a stream of deliveries and starts another: every event
// reaches the endpoint exactly once.
func TestDeliverRestartRedeliversNothingDelivered(t *testing.T) {
	e := startServices(t, services{}, map[string]string{"RELAY_REVOKE_WAIT": "10s"})
	stop := e.extraDeliver()
	rc := newReceiver(t, func(*http.Request, int) (int, http.Header) {
		time.Sleep(20 * time.Millisecond)
		return 200, nil
	})
	src := e.createSource("relay")
	e.subscribe(src.ID, rc.URL, "*")
	const n = 200
	ids := map[string]bool{}
	for i := 0; i < n; i++ {
		code, rep := e.send(src, "relay", []byte(fmt.Sprintf(`{"type":"x","n":%d}`, i)), nil)
		if code != 202 {
			t.Fatalf("send %d: %d", i, code)
		}
		ids[rep.EventID] = true
		if i == n/2 {
			stop() // mid-stream: some delivered, some in flight, some not started
			e.extraDeliver()
		}
	}
	testenv.Eventually(t, 60*time.Second, "every event to arrive", func() bool { return len(rc.byWebhookID()) == n })
	time.Sleep(2 * time.Second)
	for id, count := range rc.byWebhookID() {
		if !ids[id] {
			t.Fatalf("unknown webhook-id %s", id)
		}
		if count != 1 {
			t.Errorf("%s delivered %d times", id, count)
		}
	}
}

// TestForcedResend: an operator resends a delivered event to an endpoint
// that acknowledged it and then lost it. It is POSTed once more, with the
// same webhook-id and the next attempt number; a stale copy of the first
// attempt's record, as Kafka could redeliver it, still POSTs nothing.
func TestForcedResend(t *testing.T) {
	e := startStack(t, nil)
	rc := newReceiver(t, ok200)
	src := e.createSource("relay")
	sub := e.subscribe(src.ID, rc.URL, "*")
	body := []byte(`{"type":"order.paid"}`)
	_, rep := e.send(src, "relay", body, nil)
	e.waitStatus(src.ID, rep.EventID, sub.ID, "delivered", 20*time.Second)

	var res struct {
		Queued  []string `json:"queued"`
		Skipped []struct {
			Reason string `json:"reason"`
		} `json:"skipped"`
	}
	replay := "/sources/" + src.ID + "/events/" + rep.EventID + "/replay"
	if code := e.call("POST", replay, nil, &res); code != 202 || len(res.Queued) != 0 || len(res.Skipped) != 1 || res.Skipped[0].Reason != "already_delivered" {
		t.Fatalf("replay without force: %d %+v", code, res)
	}
	if code := e.call("POST", replay+"?force=yes", nil, nil); code != 400 {
		t.Fatalf("force=yes: %d, want 400", code)
	}
	if code := e.call("POST", replay+"?force=true", nil, &res); code != 202 || len(res.Queued) != 1 || res.Queued[0] != sub.ID {
		t.Fatalf("forced replay: %d %+v", code, res)
	}
	testenv.Eventually(t, 20*time.Second, "the resend", func() bool { return len(rc.requests()) == 2 })
	d := e.waitStatus(src.ID, rep.EventID, sub.ID, "delivered", 20*time.Second)
	got := rc.requests()[1].Header
	if d.Attempts != 2 || len(d.History) != 2 || got.Get("Webhook-Id") != rep.EventID || got.Get("X-Relay-Attempt") != "2" {
		t.Fatalf("after the resend: %+v, headers %v", d, got)
	}

	// The first attempt's record once more: stale, so not POSTed.
	cl, err := kgo.NewClient(kgo.SeedBrokers(e.kcfg.Brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	old := record.Delivery{
		Event:          record.Event{ID: rep.EventID, SourceID: src.ID, Type: "order.paid", ReceivedAt: time.Now(), ContentType: "application/json", Body: body},
		SubscriptionID: sub.ID, Attempt: 1, NotBefore: time.Now(), Origin: record.OriginReplay,
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := cl.ProduceSync(ctx, old.Record(e.names.Deliveries)).FirstErr(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * time.Second)
	if n := len(rc.requests()); n != 2 {
		t.Fatalf("a stale record of the first attempt made the endpoint get %d requests, want 2", n)
	}
}

func TestReplaySkipsDelivered(t *testing.T) {
	e := startStack(t, nil)
	ok := newReceiver(t, ok200)
	// The replayed attempt is answered only when released, so that the test
	// can look at the delivery while it is queued.
	release := make(chan struct{})
	var once sync.Once
	free := func() { once.Do(func() { close(release) }) }
	bad := newReceiver(t, func(_ *http.Request, n int) (int, http.Header) {
		if n > 1 {
			<-release
		}
		return 400, nil
	})
	t.Cleanup(free) // before the receiver's Close, which waits for its handlers
	src := e.createSource("relay")
	okSub := e.subscribe(src.ID, ok.URL, "*")
	badSub := e.subscribe(src.ID, bad.URL, "*")
	_, rep := e.send(src, "relay", []byte(`{"type":"x"}`), nil)
	e.waitStatus(src.ID, rep.EventID, okSub.ID, "delivered", 20*time.Second)
	e.waitStatus(src.ID, rep.EventID, badSub.ID, "dead", 20*time.Second)

	var res struct {
		Queued  []string `json:"queued"`
		Skipped []struct {
			SubscriptionID string `json:"subscription_id"`
			Reason         string `json:"reason"`
		} `json:"skipped"`
	}
	if code := e.call("POST", "/sources/"+src.ID+"/events/"+rep.EventID+"/replay", nil, &res); code != 202 {
		t.Fatalf("replay = %d", code)
	}
	if len(res.Queued) != 1 || res.Queued[0] != badSub.ID || len(res.Skipped) != 1 || res.Skipped[0].SubscriptionID != okSub.ID {
		t.Fatalf("replay = %+v", res)
	}
	// Queued again: retrying, due now, its failed attempt kept.
	if d := e.deliveries(src.ID, rep.EventID)[badSub.ID]; d.Status != "retrying" || d.NextAttemptAt == "" || d.Attempts != 1 {
		t.Fatalf("replayed dead delivery before its attempt settles = %+v; want retrying with a next attempt", d)
	}
	free()
	testenv.Eventually(t, 20*time.Second, "the replayed attempt", func() bool { return len(bad.requests()) == 2 })
	if got := bad.requests()[1].Header.Get("X-Relay-Attempt"); got != "2" {
		t.Fatalf("replayed attempt number %s, want 2", got)
	}
	time.Sleep(time.Second)
	if n := len(ok.requests()); n != 1 {
		t.Fatalf("the delivered subscription got %d requests, want 1", n)
	}
}

func TestGlobFilteringAndRotatedSubscriptionSecret(t *testing.T) {
	e := startStack(t, nil)
	rc := newReceiver(t, ok200)
	src := e.createSource("relay")
	sub := e.subscribe(src.ID, rc.URL, []string{"payment.*"})
	var rot struct {
		Secret string `json:"secret"`
	}
	if code := e.call("POST", "/sources/"+src.ID+"/subscriptions/"+sub.ID+"/rotate-secret", map[string]any{"grace": "1h"}, &rot); code != 200 {
		t.Fatalf("rotate = %d", code)
	}
	time.Sleep(2500 * time.Millisecond) // deliver's subscription cache
	for _, typ := range []string{"invoice.paid", "payment.succeeded", "payments.x", "payment.intent.created"} {
		e.send(src, "relay", []byte(`{"type":"`+typ+`"}`), nil)
	}
	testenv.Eventually(t, 20*time.Second, "two matching deliveries", func() bool { return len(rc.requests()) == 2 })
	time.Sleep(time.Second)
	var types []string
	for _, r := range rc.requests() {
		types = append(types, r.Header.Get("X-Relay-Event-Type"))
		sigs := strings.Fields(r.Header.Get("Webhook-Signature"))
		if len(sigs) != 2 {
			t.Fatalf("during the grace period want two v1 signatures, got %q", r.Header.Get("Webhook-Signature"))
		}
		for _, secret := range []string{sub.Secret, rot.Secret} {
			if err := (signature.StandardWebhooks{}).Verify(signature.Request{Header: r.Header, Body: r.Body}, []string{secret}, time.Now(), 0); err != nil {
				t.Fatalf("a receiver with either secret must verify: %v", err)
			}
		}
		if attempt, _ := strconv.Atoi(r.Header.Get("X-Relay-Attempt")); attempt != 1 {
			t.Fatalf("attempt %d", attempt)
		}
	}
	sort.Strings(types)
	if strings.Join(types, ",") != "payment.intent.created,payment.succeeded" {
		t.Fatalf("delivered types %v", types)
	}
}

// TestCustomHeadersReachTheEndpoint: an endpoint behind a gateway that
// wants its own credential gets it on every delivery. A credential the
// endpoint refuses (401) parks the delivery; once the subscription's
// headers are fixed, a redrive carries the new one.
func TestCustomHeadersReachTheEndpoint(t *testing.T) {
	e := startStack(t, nil)
	rc := newReceiver(t, func(r *http.Request, _ int) (int, http.Header) {
		if r.Header.Get("Authorization") != "Bearer gateway-token-2" {
			return 401, nil
		}
		return 200, nil
	})
	src := e.createSource("relay")
	var sub subscription
	if code := e.call("POST", "/sources/"+src.ID+"/subscriptions", map[string]any{
		"url": rc.URL, "headers": map[string]string{"authorization": "Bearer gateway-token-1", "X-Tenant": "acme"},
	}, &sub); code != 201 {
		t.Fatalf("create subscription: %d", code)
	}
	_, rep := e.send(src, "relay", []byte(`{"type":"order.paid"}`), nil)
	dead := e.waitStatus(src.ID, rep.EventID, sub.ID, "dead", 30*time.Second)
	if dead.LastStatusCode != 401 || dead.Attempts != 1 {
		t.Fatalf("with the old credential: %+v, want dead on its first attempt (401)", dead)
	}
	got := rc.requests()
	if len(got) != 1 || got[0].Header.Get("Authorization") != "Bearer gateway-token-1" || got[0].Header.Get("X-Tenant") != "acme" ||
		got[0].Header.Get("Webhook-Id") != rep.EventID {
		t.Fatalf("the endpoint got %d requests, the first with %v", len(got), got[0].Header)
	}

	if code := e.call("PATCH", "/sources/"+src.ID+"/subscriptions/"+sub.ID, map[string]any{
		"headers": map[string]string{"Authorization": "Bearer gateway-token-2"},
	}, nil); code != 200 {
		t.Fatalf("PATCH headers: %d", code)
	}
	time.Sleep(2500 * time.Millisecond) // deliver's subscription cache
	var res struct {
		Redriven int `json:"redriven"`
	}
	testenv.Eventually(t, 10*time.Second, "the parked delivery to be redriven", func() bool {
		e.call("POST", "/replay/dlq?subscription_id="+sub.ID, nil, &res)
		return res.Redriven == 1
	})
	e.waitStatus(src.ID, rep.EventID, sub.ID, "delivered", 30*time.Second)
	got = rc.requests()
	last := got[len(got)-1].Header
	if last.Get("Authorization") != "Bearer gateway-token-2" || last.Get("X-Tenant") != "" {
		t.Fatalf("after the PATCH the endpoint got %v; want the new set of headers only", last)
	}
	// The credential never shows in what Relay keeps of the attempts.
	var raw json.RawMessage
	e.call("GET", "/sources/"+src.ID+"/events/"+rep.EventID+"/deliveries", nil, &raw)
	if strings.Contains(string(raw), "gateway-token") {
		t.Fatalf("a delivery's state shows the credential: %s", raw)
	}
}

// TestForwardedHeadersKeepAnAppUnchanged: an app written against GitHub's
// webhooks, behind Relay, still gets X-GitHub-Event and X-GitHub-Delivery and
// can check GitHub's own signature, on a first delivery as on a replay.
func TestForwardedHeadersKeepAnAppUnchanged(t *testing.T) {
	e := startStack(t, nil)
	var src source
	if code := e.call("POST", "/sources", map[string]any{
		"name": "github", "verification": map[string]any{"scheme": "github"},
		"forward_headers": []string{"X-GitHub-Event", "X-GitHub-Delivery", "X-Hub-Signature-256"},
	}, &src); code != 201 {
		t.Fatalf("create source: %d", code)
	}
	// The app: GitHub's checks, with the secret GitHub signs with.
	app := newReceiver(t, func(r *http.Request, _ int) (int, http.Header) {
		body, _ := io.ReadAll(r.Body)
		if err := (signature.GitHub{}).Verify(signature.Request{Header: r.Header, Body: body}, []string{src.Secret}, time.Now(), 0); err != nil ||
			r.Header.Get("X-GitHub-Event") != "issues" || r.Header.Get("X-GitHub-Delivery") != "72d3162e-cc78-11e3-81ab-4c9367dc0958" {
			return 400, nil
		}
		return 200, nil
	})
	first := e.subscribe(src.ID, app.URL, "*")
	_, rep := e.send(src, "github", []byte(`{"action":"opened","issue":{"number":1}}`), map[string]string{
		"X-GitHub-Event": "issues", "X-GitHub-Delivery": "72d3162e-cc78-11e3-81ab-4c9367dc0958",
	})
	e.waitStatus(src.ID, rep.EventID, first.ID, "delivered", 30*time.Second)

	// A subscription added later gets the event by replay, headers and all.
	later := e.subscribe(src.ID, app.URL, "issues.*")
	var replayed struct {
		Queued []string `json:"queued"`
	}
	if code := e.call("POST", "/sources/"+src.ID+"/events/"+rep.EventID+"/replay", nil, &replayed); code != 202 || len(replayed.Queued) != 1 {
		t.Fatalf("replay: %d %+v", code, replayed)
	}
	if d := e.waitStatus(src.ID, rep.EventID, later.ID, "delivered", 30*time.Second); d.Attempts != 1 {
		t.Fatalf("replayed delivery: %+v", d)
	}
	if n := len(app.requests()); n != 2 {
		t.Fatalf("the app got %d requests, want 2 (each accepted on its first attempt)", n)
	}
}

// TestDeliveriesThroughAnEgressProxy: with RELAY_DELIVERY_PROXY every
// delivery goes through the proxy, which forwards it to the endpoint.
func TestDeliveriesThroughAnEgressProxy(t *testing.T) {
	var proxied atomic.Int64
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Host == "" {
			http.Error(w, "not a proxy request", http.StatusBadRequest)
			return
		}
		proxied.Add(1)
		out, _ := http.NewRequestWithContext(r.Context(), r.Method, r.URL.String(), r.Body)
		out.Header = r.Header.Clone()
		out.Header.Del("Proxy-Authorization")
		resp, err := http.DefaultTransport.RoundTrip(out)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		w.WriteHeader(resp.StatusCode)
	}))
	t.Cleanup(proxy.Close)
	e := startStack(t, map[string]string{"RELAY_DELIVERY_PROXY": proxy.URL})
	rc := newReceiver(t, ok200)
	src := e.createSource("relay")
	sub := e.subscribe(src.ID, rc.URL, "*")
	_, rep := e.send(src, "relay", []byte(`{"type":"order.paid"}`), nil)
	e.waitStatus(src.ID, rep.EventID, sub.ID, "delivered", 20*time.Second)
	if n := proxied.Load(); n != 1 || len(rc.requests()) != 1 || rc.requests()[0].Header.Get("Webhook-Id") != rep.EventID {
		t.Fatalf("the proxy forwarded %d requests, the endpoint got %d", n, len(rc.requests()))
	}
}

// TestCorruptSubscriptionHoldsItsEventsUntilRepaired: a subscription whose
// stored events filter is damaged is not read as matching nothing (which
// would drop its events for good): deliver holds the event, and delivers it
// once the subscription is repaired through the API.
func TestCorruptSubscriptionHoldsItsEventsUntilRepaired(t *testing.T) {
	e := startStack(t, nil)
	rc := newReceiver(t, ok200)
	src := e.createSource("relay")
	sub := e.subscribe(src.ID, rc.URL, "order.*")
	rdb := testenv.Redis(t)
	if err := rdb.HSet(context.Background(), "relay:sub:{"+sub.ID+"}", "events", "order.*").Err(); err != nil {
		t.Fatal(err)
	}
	_, rep := e.send(src, "relay", []byte(`{"type":"order.created"}`), nil)
	time.Sleep(3 * time.Second) // a healthy delivery takes milliseconds here
	if n := len(rc.requests()); n != 0 {
		t.Fatalf("%d deliveries to a subscription whose filter cannot be read", n)
	}
	if code := e.call("PATCH", "/sources/"+src.ID+"/subscriptions/"+sub.ID, map[string]any{"events": []string{"order.*"}}, nil); code != 200 {
		t.Fatalf("PATCH repairing the subscription = %d", code)
	}
	e.waitStatus(src.ID, rep.EventID, sub.ID, "delivered", 30*time.Second)
	if n := len(rc.requests()); n != 1 {
		t.Fatalf("%d deliveries after the repair, want 1", n)
	}
}

// TestDamagedSubscriptionHoldsOnlyItsOwn: thousands of events behind a
// damaged subscription, far more than deliver works on at once, hold up
// neither the healthy subscription beside it nor another source's; the
// damaged one's events are held for it alone and delivered, each once, when
// it is repaired. Before, every event of the source waited on the damaged
// subscription, holding its in-flight slot, until nothing was delivered.
func TestDamagedSubscriptionHoldsOnlyItsOwn(t *testing.T) {
	e := startStack(t, map[string]string{"RELAY_DELIVER_MAX_INFLIGHT_RECORDS": "20"})
	damagedRC, healthyRC, otherRC := newReceiver(t, ok200), newReceiver(t, ok200), newReceiver(t, ok200)
	src, other := e.createSource("relay"), e.createSource("relay")
	damaged := e.subscribe(src.ID, damagedRC.URL, "order.*")
	e.subscribe(src.ID, healthyRC.URL, "*")
	e.subscribe(other.ID, otherRC.URL, "*")
	rdb := testenv.Redis(t)
	if err := rdb.HSet(context.Background(), "relay:sub:{"+damaged.ID+"}", "events", "order.*").Err(); err != nil {
		t.Fatal(err)
	}
	const n, senders = 2000, 8
	var wg sync.WaitGroup
	for w := range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += senders {
				if code, _ := e.send(src, "relay", []byte(fmt.Sprintf(`{"type":"order.created","n":%d}`, i)), nil); code != 202 {
					t.Errorf("send %d: %d", i, code)
					return
				}
				if i%100 == 0 {
					e.send(other, "relay", []byte(fmt.Sprintf(`{"type":"x","n":%d}`, i)), nil)
				}
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	testenv.Eventually(t, 120*time.Second, "every event at the healthy subscription", func() bool {
		return len(healthyRC.byWebhookID()) == n && len(otherRC.byWebhookID()) == n/100
	})
	if got := len(damagedRC.requests()); got != 0 {
		t.Fatalf("%d deliveries to a subscription whose filter cannot be read", got)
	}
	if code := e.call("PATCH", "/sources/"+src.ID+"/subscriptions/"+damaged.ID, map[string]any{"events": []string{"order.*"}}, nil); code != 200 {
		t.Fatalf("PATCH repairing the subscription = %d", code)
	}
	testenv.Eventually(t, 120*time.Second, "every held event at the repaired subscription", func() bool {
		return len(damagedRC.byWebhookID()) == n
	})
	time.Sleep(2 * time.Second) // time for a delivery that should not happen
	for _, rc := range []*receiver{damagedRC, healthyRC, otherRC} {
		for id, count := range rc.byWebhookID() {
			if count != 1 {
				t.Fatalf("%s delivered %d times", id, count)
			}
		}
	}
}

// TestDisabledSubscription: a disabled subscription gets no new event; a
// delivery already in its retry chain is parked in the DLQ (reason
// subscription_disabled) rather than attempted; once it is enabled again, a
// redrive delivers the parked one and a replay to it the events it missed.
func TestDisabledSubscription(t *testing.T) {
	e := startStack(t, nil)
	var healthy atomic.Bool
	rc := newReceiver(t, func(*http.Request, int) (int, http.Header) {
		if healthy.Load() {
			return 200, nil
		}
		// The retry comes on the last tier (3s), after deliver's subscription
		// cache (2s) has seen the PATCH below.
		return 503, http.Header{"Retry-After": {"3"}}
	})
	src := e.createSource("relay")
	sub := e.subscribe(src.ID, rc.URL, "*")
	_, first := e.send(src, "relay", []byte(`{"type":"order.created","n":1}`), nil)
	e.waitStatus(src.ID, first.EventID, sub.ID, "retrying", 20*time.Second)
	if code := e.call("PATCH", "/sources/"+src.ID+"/subscriptions/"+sub.ID, map[string]any{"enabled": false}, nil); code != 200 {
		t.Fatalf("disable = %d", code)
	}
	d := e.waitStatus(src.ID, first.EventID, sub.ID, "dead", 20*time.Second)
	var parked struct {
		Data []struct {
			EventID string `json:"event_id"`
			Reason  string `json:"reason"`
		} `json:"data"`
	}
	testenv.Eventually(t, 10*time.Second, "the parked delivery to be listed", func() bool {
		e.call("GET", "/dlq?subscription_id="+sub.ID, nil, &parked)
		return len(parked.Data) == 1
	})
	if p := parked.Data[0]; p.EventID != first.EventID || p.Reason != "subscription_disabled" || d.Attempts != 1 {
		t.Fatalf("parked %+v after %d attempts; want subscription_disabled after the one made before", p, d.Attempts)
	}

	_, missed := e.send(src, "relay", []byte(`{"type":"order.created","n":2}`), nil)
	var replay struct {
		Queued  []string `json:"queued"`
		Skipped []struct {
			Reason string `json:"reason"`
		} `json:"skipped"`
	}
	replayMissed := "/sources/" + src.ID + "/events/" + missed.EventID + "/replay?subscription_id=" + sub.ID
	if code := e.call("POST", replayMissed, nil, &replay); code != 202 || len(replay.Queued) != 0 || len(replay.Skipped) != 1 || replay.Skipped[0].Reason != "disabled" {
		t.Fatalf("replay to the disabled subscription = %d %+v, want it skipped as disabled", code, replay)
	}
	time.Sleep(2 * time.Second) // time for a delivery that should not happen
	if n := rc.byWebhookID()[missed.EventID]; n != 0 {
		t.Fatalf("the disabled subscription got the new event %d times", n)
	}

	healthy.Store(true)
	if code := e.call("PATCH", "/sources/"+src.ID+"/subscriptions/"+sub.ID, map[string]any{"enabled": true}, nil); code != 200 {
		t.Fatalf("enable = %d", code)
	}
	time.Sleep(2500 * time.Millisecond) // deliver's subscription cache
	if code := e.call("POST", "/replay/dlq?subscription_id="+sub.ID, nil, nil); code != 202 {
		t.Fatalf("redrive = %d", code)
	}
	if code := e.call("POST", replayMissed, nil, &replay); code != 202 || len(replay.Queued) != 1 {
		t.Fatalf("replay to the enabled subscription = %d %+v", code, replay)
	}
	e.waitStatus(src.ID, first.EventID, sub.ID, "delivered", 20*time.Second)
	e.waitStatus(src.ID, missed.EventID, sub.ID, "delivered", 20*time.Second)
	if got := rc.byWebhookID(); got[first.EventID] != 2 || got[missed.EventID] != 1 {
		t.Fatalf("requests per event %v; want the parked one twice (failed, then redriven) and the missed one once", got)
	}
}

// TestRangeReplayCatchesUp: the events a disabled subscription missed are
// sent to it, each once, by one replay of the time range once it is enabled
// again; a second replay of the range sends nothing more.
func TestRangeReplayCatchesUp(t *testing.T) {
	e := startStack(t, nil)
	rc := newReceiver(t, ok200)
	src := e.createSource("relay")
	sub := e.subscribe(src.ID, rc.URL, "order.*")
	if code := e.call("PATCH", "/sources/"+src.ID+"/subscriptions/"+sub.ID, map[string]any{"enabled": false}, nil); code != 200 {
		t.Fatalf("disable = %d", code)
	}
	time.Sleep(2500 * time.Millisecond) // deliver's subscription cache
	from := time.Now().UTC()
	var missed []string
	for i := 0; i < 12; i++ {
		_, rep := e.send(src, "relay", []byte(fmt.Sprintf(`{"type":"order.created","n":%d}`, i)), nil)
		missed = append(missed, rep.EventID)
	}
	time.Sleep(2 * time.Second) // time for a delivery that should not happen
	if n := len(rc.requests()); n != 0 {
		t.Fatalf("the disabled subscription got %d requests", n)
	}
	if code := e.call("PATCH", "/sources/"+src.ID+"/subscriptions/"+sub.ID, map[string]any{"enabled": true}, nil); code != 200 {
		t.Fatalf("enable = %d", code)
	}
	time.Sleep(2500 * time.Millisecond)
	path := "/sources/" + src.ID + "/replay?from=" + from.Format(time.RFC3339Nano) + "&subscription_id=" + sub.ID
	var res struct {
		Events, Queued int
		Skipped        map[string]int
		Complete       bool
	}
	if code := e.call("POST", path, nil, &res); code != 202 || res.Events != 12 || res.Queued != 12 || !res.Complete {
		t.Fatalf("range replay = %d %+v", code, res)
	}
	for _, evt := range missed {
		e.waitStatus(src.ID, evt, sub.ID, "delivered", 20*time.Second)
	}
	if code := e.call("POST", path, nil, &res); code != 202 || res.Queued != 0 || res.Skipped["already_delivered"] != 12 {
		t.Fatalf("second range replay = %d %+v", code, res)
	}
	time.Sleep(time.Second)
	got := rc.byWebhookID()
	for _, evt := range missed {
		if got[evt] != 1 {
			t.Fatalf("requests per event %v; want each missed event once", got)
		}
	}
}

// TestDeliverOpensSecretsSealedUnderThePreviousKey: during a RELAY_SECRET_KEY
// rotation deliver signs with a subscription secret that only
// RELAY_SECRET_KEY_PREVIOUS opens, as ingest verifies with one.
func TestDeliverOpensSecretsSealedUnderThePreviousKey(t *testing.T) {
	oldKey, newKey := secretbox.GenerateKey(), secretbox.GenerateKey()
	e := startStack(t, map[string]string{"RELAY_SECRET_KEY": newKey, "RELAY_SECRET_KEY_PREVIOUS": oldKey})
	rc := newReceiver(t, ok200)
	src := e.createSource("relay")
	// Written as a replica still on the old key would have: sealed under it.
	raw, _ := secretbox.ParseKey(oldKey)
	box, err := secretbox.New(raw, nil)
	if err != nil {
		t.Fatal(err)
	}
	const secret = "whsec_b2xkLWtleS1zdWJzY3JpcHRpb24="
	sub := catalog.Subscription{ID: ids.New(ids.Subscription), SourceID: src.ID, URL: rc.URL, Events: []string{"*"}, Enabled: true, CreatedAt: time.Now(), UpdatedAt: time.Now()}
	if err := catalog.New(testenv.Redis(t), box).CreateSubscription(context.Background(), sub, secret, nil); err != nil {
		t.Fatal(err)
	}
	_, rep := e.send(src, "relay", []byte(`{"type":"rotation.test"}`), nil)
	e.waitStatus(src.ID, rep.EventID, sub.ID, "delivered", 20*time.Second)
	got := rc.requests()[0]
	if err := (signature.StandardWebhooks{}).Verify(signature.Request{Header: got.Header, Body: got.Body}, []string{secret}, time.Now(), 0); err != nil {
		t.Fatalf("the delivery is not signed with the subscription's secret: %v", err)
	}
}
