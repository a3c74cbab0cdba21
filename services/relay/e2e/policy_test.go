package e2e

import (
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/relayhq/relay/pkg/testenv"
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
	} {
		if code := e.call("POST", "/sources/"+src.ID+"/subscriptions", c.body, &fail); code != 400 || fail.Error.Code != "invalid_field" || !strings.Contains(fail.Error.Message, c.want) {
			t.Errorf("create %v = %d %+v; want 400 containing %q", c.body, code, fail.Error, c.want)
		}
	}
	sub := e.subscribeWith(src.ID, map[string]any{"url": "http://127.0.0.1:9/x", "filter": `type == "a"`, "retry": map[string]any{"max_attempts": 2}})
	if code := e.call("PATCH", "/sources/"+src.ID+"/subscriptions/"+sub.ID, map[string]any{"filter": "type =="}, &fail); code != 400 || !strings.Contains(fail.Error.Message, "filter: line 1") {
		t.Fatalf("a bad filter in a patch = %d %+v", code, fail.Error)
	}
	var got struct {
		Filter string `json:"filter"`
		Retry  *struct {
			MaxAttempts int `json:"max_attempts"`
		} `json:"retry"`
	}
	e.call("GET", "/sources/"+src.ID+"/subscriptions/"+sub.ID, nil, &got)
	if got.Filter != `type == "a"` || got.Retry == nil || got.Retry.MaxAttempts != 2 {
		t.Fatalf("after a refused patch: %+v; want it unchanged", got)
	}
	var cleared map[string]any
	if code := e.call("PATCH", "/sources/"+src.ID+"/subscriptions/"+sub.ID, map[string]any{"filter": "", "retry": map[string]any{}}, &cleared); code != 200 {
		t.Fatalf("clearing the policy = %d", code)
	}
	if _, ok := cleared["filter"]; ok || cleared["retry"] != nil {
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
