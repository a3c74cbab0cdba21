package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/relayhq/relay/pkg/testenv"
	"github.com/relayhq/relay/services/relay/internal/stack"
)

// subscribeWith creates a subscription from a full request body.
func (e *env) subscribeWith(src string, body map[string]any) subscription {
	e.t.Helper()
	var s subscription
	if code := e.call("POST", "/sources/"+src+"/subscriptions", body, &s); code != 201 {
		e.t.Fatalf("create subscription %v: %d", body, code)
	}
	return s
}

// TestFiltersOnLiveReplayAndRedrive: a subscription's CEL filter decides
// which events become its deliveries on every path that makes one: the
// live fan-out, a replay and a DLQ redrive; the deliveries API says which
// subscriptions an event's filter turned away.
func TestFiltersOnLiveReplayAndRedrive(t *testing.T) {
	e := startStack(t, nil)
	big := newReceiver(t, ok200)
	all := newReceiver(t, ok200)
	var failing atomic.Bool
	failing.Store(true)
	flaky := newReceiver(t, func(*http.Request, int) (int, http.Header) {
		if failing.Load() {
			return 400, nil // dead at once
		}
		return 200, nil
	})
	src := e.createSource("relay")
	bigSub := e.subscribeWith(src.ID, map[string]any{"url": big.URL, "events": "order.*", "filter": `data.total > 100 && data.currency == "EUR"`})
	allSub := e.subscribe(src.ID, all.URL, "*")
	flakySub := e.subscribeWith(src.ID, map[string]any{"url": flaky.URL, "filter": `type == "order.created"`})

	_, small := e.send(src, "relay", []byte(`{"type":"order.created","total":50,"currency":"EUR"}`), nil)
	_, large := e.send(src, "relay", []byte(`{"type":"order.created","total":500,"currency":"EUR"}`), nil)
	_, other := e.send(src, "relay", []byte(`{"type":"order.paid","total":900,"currency":"USD"}`), nil)
	_, text := e.send(src, "relay", []byte(`total=900`), map[string]string{"Content-Type": "text/plain"})
	for _, id := range []string{small.EventID, large.EventID, other.EventID, text.EventID} {
		if id == "" {
			t.Fatal("an event was not accepted")
		}
		e.waitStatus(src.ID, id, allSub.ID, "delivered", 20*time.Second)
	}
	e.waitStatus(src.ID, large.EventID, bigSub.ID, "delivered", 20*time.Second)
	e.waitStatus(src.ID, small.EventID, flakySub.ID, "dead", 20*time.Second)
	e.waitStatus(src.ID, large.EventID, flakySub.ID, "dead", 20*time.Second)
	time.Sleep(time.Second)
	if got := big.byWebhookID(); len(got) != 1 || got[large.EventID] != 1 {
		t.Fatalf("the filtered subscription got %v; want only %s", got, large.EventID)
	}
	if got := flaky.byWebhookID(); len(got) != 2 || got[small.EventID] != 1 || got[large.EventID] != 1 {
		t.Fatalf("the type-filtered subscription got %v; want the two order.created", got)
	}

	// The deliveries API says whose filter turned an event away.
	for _, c := range []struct{ evt, sub, want string }{
		{small.EventID, bigSub.ID, "filtered"},
		{other.EventID, flakySub.ID, "filtered"},
		{text.EventID, flakySub.ID, "filtered"},
		{large.EventID, bigSub.ID, "delivered"},
	} {
		if d := e.deliveries(src.ID, c.evt)[c.sub]; d.Status != c.want {
			t.Errorf("event %s to %s: %q, want %q", c.evt, c.sub, d.Status, c.want)
		}
	}
	if _, listed := e.deliveries(src.ID, text.EventID)[bigSub.ID]; listed {
		t.Error("a subscription whose patterns do not match is listed") // text has no type: "" matches not order.*
	}

	// A replay skips what the filter does not match.
	var rep struct {
		Queued  []string `json:"queued"`
		Skipped []struct {
			SubscriptionID string `json:"subscription_id"`
			Reason         string `json:"reason"`
		} `json:"skipped"`
	}
	if code := e.call("POST", "/sources/"+src.ID+"/events/"+small.EventID+"/replay?subscription_id="+bigSub.ID, nil, &rep); code != 202 {
		t.Fatalf("replay = %d", code)
	}
	if len(rep.Queued) != 0 || len(rep.Skipped) != 1 || rep.Skipped[0].Reason != "filtered" {
		t.Fatalf("replay of a filtered event = %+v; want it skipped as filtered", rep)
	}

	// A redrive applies the filter as it is now: narrowed to the large
	// order, the flaky subscription gets that one back and drops the other.
	narrowed := `type == "order.created" && data.total >= 500`
	if code := e.call("PATCH", "/sources/"+src.ID+"/subscriptions/"+flakySub.ID, map[string]any{"filter": narrowed}, nil); code != 200 {
		t.Fatalf("patch filter = %d", code)
	}
	failing.Store(false)
	var res struct {
		Redriven int  `json:"redriven"`
		Filtered int  `json:"filtered"`
		Complete bool `json:"complete"`
	}
	if code := e.call("POST", "/replay/dlq?subscription_id="+flakySub.ID, nil, &res); code != 202 || res.Redriven != 1 || res.Filtered != 1 || !res.Complete {
		t.Fatalf("redrive = %d %+v; want one redriven, one filtered", code, res)
	}
	e.waitStatus(src.ID, large.EventID, flakySub.ID, "delivered", 20*time.Second)
	var parked struct {
		Data []any `json:"data"`
	}
	e.call("GET", "/dlq?subscription_id="+flakySub.ID, nil, &parked)
	if len(parked.Data) != 0 {
		t.Fatalf("still parked after the redrive: %v", parked.Data)
	}
	time.Sleep(time.Second)
	if got := flaky.byWebhookID(); got[small.EventID] != 1 || got[large.EventID] != 2 {
		t.Fatalf("after the redrive the endpoint saw %v; want the small order once (before), the large twice", got)
	}
}

// TestSubscriptionPolicyIsValidated: a filter that does not compile and a
// retry policy off the ladder are 400s that say what is wrong and where.
func TestSubscriptionPolicyIsValidated(t *testing.T) {
	e := startStack(t, nil)
	src := e.createSource("relay")
	var fail struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	for _, c := range []struct {
		body map[string]any
		want string
	}{
		{map[string]any{"url": "http://127.0.0.1:9/x", "filter": "data.total >"}, "filter: line 1, column 13: "},
		{map[string]any{"url": "http://127.0.0.1:9/x", "filter": "type == \"a\" ||\n  nope"}, "filter: line 2, column 3: undeclared reference to 'nope'"},
		{map[string]any{"url": "http://127.0.0.1:9/x", "filter": "size(type)"}, "a filter must give a bool"},
		{map[string]any{"url": "http://127.0.0.1:9/x", "retry": map[string]any{"max_attempts": 5}}, "retry.max_attempts: must be from 1 to 4"},
		{map[string]any{"url": "http://127.0.0.1:9/x", "retry": map[string]any{"max_attempts": -1}}, "retry.max_attempts"},
		{map[string]any{"url": "http://127.0.0.1:9/x", "rate_limit": map[string]any{"per_second": 5, "per_minute": 5}}, "rate_limit: needs per_second or per_minute"},
		{map[string]any{"url": "http://127.0.0.1:9/x", "rate_limit": map[string]any{"burst": 5}}, "rate_limit: needs per_second or per_minute"},
		{map[string]any{"url": "http://127.0.0.1:9/x", "rate_limit": map[string]any{"per_second": 200000}}, "rate_limit.per_second: must be from 1 to 100000"},
		{map[string]any{"url": "http://127.0.0.1:9/x", "rate_limit": map[string]any{"per_minute": 10, "burst": -1}}, "rate_limit.burst"},
		{map[string]any{"url": "http://127.0.0.1:9/x", "rate_limit": map[string]any{"per_hour": 10}}, `unknown field "per_hour"`},
	} {
		want := "invalid_field"
		if strings.HasPrefix(c.want, "unknown field") {
			want = "invalid_json"
		}
		if code := e.call("POST", "/sources/"+src.ID+"/subscriptions", c.body, &fail); code != 400 || fail.Error.Code != want || !strings.Contains(fail.Error.Message, c.want) {
			t.Errorf("create %v = %d %+v; want 400 containing %q", c.body, code, fail.Error, c.want)
		}
	}
	sub := e.subscribeWith(src.ID, map[string]any{
		"url": "http://127.0.0.1:9/x", "filter": `type == "a"`, "retry": map[string]any{"max_attempts": 2},
		"rate_limit": map[string]any{"per_minute": 600, "burst": 10},
	})
	if code := e.call("PATCH", "/sources/"+src.ID+"/subscriptions/"+sub.ID, map[string]any{"filter": "type =="}, &fail); code != 400 || !strings.Contains(fail.Error.Message, "filter: line 1") {
		t.Fatalf("a bad filter in a patch = %d %+v", code, fail.Error)
	}
	var got struct {
		Filter string `json:"filter"`
		Retry  *struct {
			MaxAttempts int `json:"max_attempts"`
		} `json:"retry"`
		RateLimit map[string]int `json:"rate_limit"`
	}
	e.call("GET", "/sources/"+src.ID+"/subscriptions/"+sub.ID, nil, &got)
	if got.Filter != `type == "a"` || got.Retry == nil || got.Retry.MaxAttempts != 2 || got.RateLimit["per_minute"] != 600 || got.RateLimit["burst"] != 10 || len(got.RateLimit) != 2 {
		t.Fatalf("after a refused patch: %+v; want it unchanged", got)
	}
	var cleared map[string]any
	if code := e.call("PATCH", "/sources/"+src.ID+"/subscriptions/"+sub.ID, map[string]any{"filter": "", "retry": map[string]any{}, "rate_limit": map[string]any{}}, &cleared); code != 200 {
		t.Fatalf("clearing the policy = %d", code)
	}
	if _, ok := cleared["filter"]; ok || cleared["retry"] != nil || cleared["rate_limit"] != nil {
		t.Fatalf("cleared: %v", cleared)
	}
}

// TestMaxAttemptsShortensTheLadder: a subscription that allows two attempts
// is parked after its first retry, while another on the same failing
// endpoint climbs the whole ladder.
func TestMaxAttemptsShortensTheLadder(t *testing.T) {
	e := startStack(t, nil)
	rc := newReceiver(t, func(*http.Request, int) (int, http.Header) { return 503, nil })
	src := e.createSource("relay")
	short := e.subscribeWith(src.ID, map[string]any{"url": rc.URL, "retry": map[string]any{"max_attempts": 2}})
	long := e.subscribe(src.ID, rc.URL, "*")
	_, rep := e.send(src, "relay", []byte(`{"type":"x"}`), nil)
	d := e.waitStatus(src.ID, rep.EventID, short.ID, "dead", 20*time.Second)
	if d.Attempts != 2 {
		t.Fatalf("short ladder: %+v; want dead after 2 attempts", d)
	}
	var parked struct {
		Data []struct {
			Reason   string `json:"reason"`
			Attempts int    `json:"attempts"`
		} `json:"data"`
	}
	testenv.Eventually(t, 10*time.Second, "the short ladder's delivery parked", func() bool {
		e.call("GET", "/dlq?subscription_id="+short.ID, nil, &parked)
		return len(parked.Data) == 1
	})
	if p := parked.Data[0]; p.Reason != "retries_exhausted" || p.Attempts != 2 {
		t.Fatalf("parked %+v", p)
	}
	if d := e.waitStatus(src.ID, rep.EventID, long.ID, "dead", 30*time.Second); d.Attempts != 4 {
		t.Fatalf("whole ladder: %+v; want 4 attempts", d)
	}
}

// startReplica runs a second stack (ingest and deliver) of e's
// configuration: another deliver replica in the same consumer groups,
// sharing nothing with the first but Kafka and Redis.
func (e *env) startReplica() *stack.Stack {
	e.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	s, err := stack.New(ctx, e.opts)
	if err != nil {
		cancel()
		e.t.Fatalf("start a replica: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	e.t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				e.t.Errorf("replica stopped with: %v", err)
			}
		case <-time.After(60 * time.Second):
			e.t.Error("replica did not stop within 60s")
		}
	})
	return s
}

// TestThrottledSubscriptionBesideAnUnthrottledOne: two deliver replicas
// share one subscription's limit of 10/s. Its backlog of 100 events drains
// at that pace, within the accuracy docs/guarantees.md states, while a
// second subscription on the same source gets every event without waiting
// for it; nothing is lost or POSTed twice.
func TestThrottledSubscriptionBesideAnUnthrottledOne(t *testing.T) {
	e := startStack(t, nil)
	e.startReplica()
	limited, free := newReceiver(t, ok200), newReceiver(t, ok200)
	src := e.createSource("relay")
	lim := e.subscribeWith(src.ID, map[string]any{"url": limited.URL, "rate_limit": map[string]any{"per_second": 10}})
	e.subscribe(src.ID, free.URL, "*")
	time.Sleep(2500 * time.Millisecond) // both replicas' subscription caches

	const n = 100
	var ids []string
	for i := range n {
		_, rep := e.send(src, "relay", []byte(fmt.Sprintf(`{"type":"tick","n":%d}`, i)), nil)
		if rep.EventID == "" {
			t.Fatalf("event %d not accepted", i)
		}
		ids = append(ids, rep.EventID)
	}
	testenv.Eventually(t, 30*time.Second, "the unthrottled subscription to get every event", func() bool { return len(free.byWebhookID()) == n })
	if got := len(limited.byWebhookID()); got >= n {
		t.Fatalf("the throttled subscription had all %d events as soon as the free one: no limit was applied", got)
	}
	// Its fan-out to the limited subscription may still be on its way.
	testenv.Eventually(t, 5*time.Second, "the last event's delivery to show as throttled, with its next attempt, none spent", func() bool {
		d := e.deliveries(src.ID, ids[n-1])[lim.ID]
		return d.Status == "throttled" && d.NextAttemptAt != "" && d.Attempts == 0
	})
	testenv.Eventually(t, 60*time.Second, "the throttled subscription's backlog to drain", func() bool { return len(limited.byWebhookID()) == n })
	time.Sleep(time.Second)
	for what, rc := range map[string]*receiver{"throttled": limited, "free": free} {
		for id, c := range rc.byWebhookID() {
			if c != 1 {
				t.Errorf("%s subscription: %s POSTed %d times", what, id, c)
			}
		}
		for _, r := range rc.requests() {
			if r.Header.Get("X-Relay-Attempt") != "1" {
				t.Errorf("%s subscription: attempt %s; waiting must spend none", what, r.Header.Get("X-Relay-Attempt"))
			}
		}
	}
	// The stated accuracy: in any window of w, at most burst + rate × (w + 250ms).
	var at []time.Time
	for _, r := range limited.requests() {
		at = append(at, r.At)
	}
	sort.Slice(at, func(i, j int) bool { return at[i].Before(at[j]) })
	most := 0
	for i := range at {
		j := i
		for j < len(at) && at[j].Sub(at[i]) < time.Second {
			j++
		}
		most = max(most, j-i)
	}
	span := at[len(at)-1].Sub(at[0])
	t.Logf("EVIDENCE throttled at 10/s over two replicas: %d deliveries in %v, at most %d in any second", n, span, most)
	if most > 1+13 {
		t.Errorf("%d deliveries within one second; the limit allows 10 (burst 1, 250ms of lateness: 14)", most)
	}
	if span < 9*time.Second {
		t.Errorf("%d deliveries at 10/s took %v", n, span)
	}
}

// TestEndpoint429PausesTheSubscription: an endpoint that answers 429 with
// Retry-After gets nothing before then; the delivery it refused spends one
// attempt, the others none.
func TestEndpoint429PausesTheSubscription(t *testing.T) {
	e := startStack(t, nil)
	var paused atomic.Int64 // unix ms of the 429
	rc := newReceiver(t, func(_ *http.Request, n int) (int, http.Header) {
		if n == 1 {
			paused.Store(time.Now().UnixMilli())
			return 429, http.Header{"Retry-After": {"3"}}
		}
		return 200, nil
	})
	src := e.createSource("relay")
	sub := e.subscribe(src.ID, rc.URL, "*")
	_, first := e.send(src, "relay", []byte(`{"type":"a"}`), nil)
	testenv.Eventually(t, 10*time.Second, "the 429", func() bool { return paused.Load() != 0 })
	time.Sleep(300 * time.Millisecond)
	var later []string
	for range 4 {
		_, rep := e.send(src, "relay", []byte(`{"type":"b"}`), nil)
		later = append(later, rep.EventID)
	}
	testenv.Eventually(t, 10*time.Second, "a paused delivery to show as throttled", func() bool {
		d := e.deliveries(src.ID, later[0])[sub.ID]
		return d.Status == "throttled" && d.NextAttemptAt != ""
	})
	if d := e.waitStatus(src.ID, first.EventID, sub.ID, "delivered", 20*time.Second); d.Attempts != 2 {
		t.Fatalf("the refused delivery: %+v; want delivered on its second attempt", d)
	}
	for _, id := range later {
		if d := e.waitStatus(src.ID, id, sub.ID, "delivered", 20*time.Second); d.Attempts != 1 {
			t.Fatalf("a paused delivery: %+v; want delivered on its first attempt", d)
		}
	}
	until := time.UnixMilli(paused.Load()).Add(3 * time.Second)
	for _, r := range rc.requests()[1:] {
		if r.At.Before(until.Add(-50 * time.Millisecond)) {
			t.Errorf("a request came %v before the endpoint's Retry-After was up", until.Sub(r.At))
		}
	}
}

// TestBreakerOpensProbesAndCloses: a run of failures opens the circuit;
// while it is open the endpoint gets one probe per cool-down instead of
// every delivery's retries, and the deliveries wait without spending
// attempts (none goes dead, though the ladder is shorter than the outage);
// a successful probe closes it and every event is delivered once.
func TestBreakerOpensProbesAndCloses(t *testing.T) {
	// A probe is a real attempt, and spends one: a ladder longer than the
	// outage keeps an unlucky delivery that probes often from the DLQ.
	e := startStack(t, map[string]string{
		"RELAY_BREAKER_FAILURES": "3", "RELAY_BREAKER_COOLDOWN": "2s", "RELAY_BREAKER_MAX_COOLDOWN": "2s",
		"RELAY_RETRY_TIERS": "1s,2s,3s,4s,5s,6s",
	})
	var down atomic.Bool
	down.Store(true)
	var whileDown atomic.Int64
	var mu sync.Mutex
	delivered := map[string]int{}
	rc := newReceiver(t, func(r *http.Request, _ int) (int, http.Header) {
		if down.Load() {
			whileDown.Add(1)
			return 503, nil
		}
		mu.Lock()
		delivered[r.Header.Get("Webhook-Id")]++
		mu.Unlock()
		return 200, nil
	})
	src := e.createSource("relay")
	sub := e.subscribe(src.ID, rc.URL, "*")
	var ids []string
	for i := range 10 {
		_, rep := e.send(src, "relay", []byte(fmt.Sprintf(`{"type":"x","n":%d}`, i)), nil)
		ids = append(ids, rep.EventID)
	}
	metrics := "http://" + e.stack.Deliver.AdminAddr() + "/metrics"
	testenv.Eventually(t, 20*time.Second, "the circuit to open", func() bool {
		return metricValue(t, metrics, `relay_deliver_circuit_transitions_total{to="open"}`) >= 1
	})
	opened := whileDown.Load()
	var health struct {
		Health struct {
			Circuit        string `json:"circuit"`
			FailuresInARow int    `json:"failures_in_a_row"`
			OpenSince      string `json:"open_since"`
			NextProbeAt    string `json:"next_probe_at"`
		} `json:"health"`
	}
	e.call("GET", "/sources/"+src.ID+"/subscriptions/"+sub.ID, nil, &health)
	if h := health.Health; h.Circuit != "open" || h.FailuresInARow < 3 || h.OpenSince == "" || h.NextProbeAt == "" {
		t.Errorf("the subscription's health while open: %+v", h)
	}
	// Ten seconds down: without the breaker every delivery would be tried
	// at 0, 1, 3, 6 and 10s, 50 requests in all.
	time.Sleep(10 * time.Second)
	during := whileDown.Load() - opened
	t.Logf("EVIDENCE breaker: %d requests before it opened, %d in the next 10s", opened, during)
	if during > 6 {
		t.Errorf("%d requests reached the endpoint in 10s of an open circuit with a 2s cool-down; want about one probe per cool-down", during)
	}
	for _, id := range ids {
		if d := e.deliveries(src.ID, id)[sub.ID]; d.Status == "dead" {
			t.Fatalf("a delivery went dead while its circuit was open: %+v", d)
		}
	}
	down.Store(false)
	for _, id := range ids {
		if d := e.waitStatus(src.ID, id, sub.ID, "delivered", 30*time.Second); d.Attempts > 5 {
			t.Fatalf("delivery %s: %+v", id, d)
		}
	}
	if v := metricValue(t, metrics, `relay_deliver_circuit_transitions_total{to="closed"}`); v < 1 {
		t.Fatalf("circuits closed: %v", v)
	}
	health.Health.OpenSince = ""
	e.call("GET", "/sources/"+src.ID+"/subscriptions/"+sub.ID, nil, &health)
	if h := health.Health; h.Circuit != "closed" || h.FailuresInARow != 0 || h.OpenSince != "" {
		t.Errorf("the subscription's health once closed: %+v", h)
	}
	time.Sleep(time.Second)
	mu.Lock()
	defer mu.Unlock()
	for _, id := range ids {
		if delivered[id] != 1 {
			t.Errorf("%s answered 200 %d times, want once", id, delivered[id])
		}
	}
}

// TestLongOpenCircuitDisablesTheSubscription: a circuit open past
// RELAY_BREAKER_DISABLE_AFTER disables its subscription, parks its pending
// deliveries in the DLQ as subscription_disabled, and alerts the operator.
func TestLongOpenCircuitDisablesTheSubscription(t *testing.T) {
	alerts := newReceiver(t, ok200)
	e := startStack(t, map[string]string{
		"RELAY_BREAKER_FAILURES": "2", "RELAY_BREAKER_COOLDOWN": "1s", "RELAY_BREAKER_MAX_COOLDOWN": "1s", "RELAY_BREAKER_DISABLE_AFTER": "4s",
		"RELAY_ALERT_WEBHOOK_URL": alerts.URL, "RELAY_RETRY_TIERS": "1s,2s,3s,4s,5s,6s",
	})
	rc := newReceiver(t, func(*http.Request, int) (int, http.Header) { return 503, nil })
	src := e.createSource("relay")
	sub := e.subscribe(src.ID, rc.URL, "*")
	for i := range 3 {
		e.send(src, "relay", []byte(fmt.Sprintf(`{"type":"x","n":%d}`, i)), nil)
	}
	var got struct {
		Enabled        bool   `json:"enabled"`
		DisabledReason string `json:"disabled_reason"`
	}
	testenv.Eventually(t, 30*time.Second, "the subscription to be disabled", func() bool {
		e.call("GET", "/sources/"+src.ID+"/subscriptions/"+sub.ID, nil, &got)
		return !got.Enabled
	})
	if !strings.Contains(got.DisabledReason, "circuit open since") {
		t.Fatalf("disabled_reason %q", got.DisabledReason)
	}
	var parked struct {
		Data []struct {
			Reason string `json:"reason"`
		} `json:"data"`
	}
	testenv.Eventually(t, 30*time.Second, "the pending deliveries to be parked", func() bool {
		e.call("GET", "/dlq?subscription_id="+sub.ID, nil, &parked)
		return len(parked.Data) == 3
	})
	for _, p := range parked.Data {
		if p.Reason != "subscription_disabled" {
			t.Fatalf("parked as %q", p.Reason)
		}
	}
	testenv.Eventually(t, 10*time.Second, "the alert", func() bool {
		for _, r := range alerts.requests() {
			var body struct {
				Type string `json:"type"`
				Data struct {
					SubscriptionID string `json:"subscription_id"`
					Reason         string `json:"reason"`
				} `json:"data"`
			}
			if json.Unmarshal(r.Body, &body) == nil && body.Type == "relay.subscription.disabled" && body.Data.SubscriptionID == sub.ID && body.Data.Reason == "circuit_open" {
				return true
			}
		}
		return false
	})
	metrics := "http://" + e.stack.Deliver.AdminAddr() + "/metrics"
	if v := metricValue(t, metrics, "relay_deliver_subscriptions_auto_disabled_total"); v != 1 {
		t.Fatalf("auto-disabled %v", v)
	}
}
