package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/relayhq/relay/pkg/testenv"
)

// orderedSource creates a source whose events are keyed by the JSON path.
func (e *env) orderedSource(path string) source {
	e.t.Helper()
	var s source
	body := map[string]any{"name": "ordered", "ordering_key": map[string]any{"json_path": path}}
	if code := e.call("POST", "/sources", body, &s); code != 201 {
		e.t.Fatalf("create source with an ordering key: %d", code)
	}
	return s
}

// TestOrderedKeyWaitsForItsHead: while the first event of a key is being
// delivered (its endpoint holds the request), the key's next events wait,
// and the deliveries API says behind which; another key and an unordered
// subscription of the same source go on. Released, the key's events arrive
// in the order ingest accepted them. An event whose head went to the DLQ
// lets the next proceed ("skip"), and the DLQ entry names the key.
func TestOrderedKeyWaitsForItsHead(t *testing.T) {
	e := startStack(t, nil)
	release := make(chan struct{})
	var once sync.Once
	type seen struct {
		customer string
		seq      int
	}
	var mu sync.Mutex
	var order []seen
	orderedRcv := newReceiver(t, func(r *http.Request, _ int) (int, http.Header) {
		var b struct {
			Customer string `json:"customer"`
			Seq      int    `json:"seq"`
			Fail     bool   `json:"fail"`
		}
		_ = json.NewDecoder(r.Body).Decode(&b)
		if b.Customer == "cus_1" && b.Seq == 1 {
			<-release
		}
		if b.Fail {
			return 400, nil
		}
		mu.Lock()
		order = append(order, seen{b.Customer, b.Seq})
		mu.Unlock()
		return 200, nil
	})
	// After the receiver's Close is registered, so it runs first: Close
	// waits for the request held on release.
	t.Cleanup(func() { once.Do(func() { close(release) }) })
	plain := newReceiver(t, ok200)
	src := e.orderedSource("customer")
	sub := e.subscribeWith(src.ID, map[string]any{"url": orderedRcv.URL, "ordered": true})
	if sub.ID == "" {
		t.Fatal("no ordered subscription")
	}
	plainSub := e.subscribe(src.ID, plain.URL, "*")
	time.Sleep(2500 * time.Millisecond) // deliver's subscription cache

	send := func(customer string, seq int, fail bool) string {
		t.Helper()
		body := fmt.Sprintf(`{"type":"order.updated","customer":%q,"seq":%d,"fail":%v}`, customer, seq, fail)
		code, r := e.send(src, "relay", []byte(body), nil)
		if code != 202 {
			t.Fatalf("send %s/%d: %d", customer, seq, code)
		}
		return r.EventID
	}
	zero := send("cus_1", 0, false)
	e.waitStatus(src.ID, zero, sub.ID, "delivered", 20*time.Second)
	first := send("cus_1", 1, false)
	e.waitStatus(src.ID, first, plainSub.ID, "delivered", 20*time.Second)
	second := send("cus_1", 2, false)
	third := send("cus_1", 3, false)
	other := send("cus_2", 1, false)

	// cus_2 and the unordered subscription are not held up by cus_1.
	e.waitStatus(src.ID, other, sub.ID, "delivered", 20*time.Second)
	for _, id := range []string{second, third} {
		e.waitStatus(src.ID, id, plainSub.ID, "delivered", 20*time.Second)
	}
	testenv.Eventually(t, 20*time.Second, "the key's later events to wait behind its head", func() bool {
		d2, d3 := e.deliveries(src.ID, second)[sub.ID], e.deliveries(src.ID, third)[sub.ID]
		return d2.Status == "waiting" && d2.Behind == first && d3.Status == "waiting" && d3.Behind == first
	})
	if d := e.deliveries(src.ID, second)[sub.ID]; d.OrderingKey != "cus_1" {
		t.Fatalf("a waiting delivery's ordering key = %q", d.OrderingKey)
	}
	if d := e.deliveries(src.ID, second)[plainSub.ID]; d.OrderingKey != "" || d.Status != "delivered" {
		t.Fatalf("the unordered subscription's delivery = %+v", d)
	}
	var ev struct {
		OrderingKey string `json:"ordering_key"`
	}
	if code := e.call("GET", "/sources/"+src.ID+"/events/"+second, nil, &ev); code != 200 || ev.OrderingKey != "cus_1" {
		t.Fatalf("the event's ordering key: %d %q", code, ev.OrderingKey)
	}

	// A resend of an event the key delivered before goes behind what waits.
	if code := e.call("POST", "/sources/"+src.ID+"/events/"+zero+"/replay?subscription_id="+sub.ID+"&force=true", nil, nil); code != 202 {
		t.Fatalf("replay: %d", code)
	}
	testenv.Eventually(t, 20*time.Second, "the resend to wait behind the key's head", func() bool {
		d := e.deliveries(src.ID, zero)[sub.ID]
		return d.Status == "waiting" && d.Behind == first
	})

	once.Do(func() { close(release) })
	e.waitStatus(src.ID, third, sub.ID, "delivered", 20*time.Second)
	e.waitStatus(src.ID, zero, sub.ID, "delivered", 20*time.Second)

	// A head the endpoint refuses for good goes to the DLQ; the next
	// proceeds, and the entry says which key it held up.
	dead := send("cus_1", 4, true)
	after := send("cus_1", 5, false)
	e.waitStatus(src.ID, dead, sub.ID, "dead", 20*time.Second)
	e.waitStatus(src.ID, after, sub.ID, "delivered", 20*time.Second)
	mu.Lock()
	got := fmt.Sprint(order)
	mu.Unlock()
	if want := "[{cus_1 0} {cus_2 1} {cus_1 1} {cus_1 2} {cus_1 3} {cus_1 0} {cus_1 5}]"; got != want {
		t.Fatalf("the endpoint saw %s, want %s", got, want)
	}
	var dlq struct {
		Data []struct {
			EventID     string `json:"event_id"`
			OrderingKey string `json:"ordering_key"`
			HeldKeyFor  string `json:"held_key_for"`
		} `json:"data"`
	}
	if code := e.call("GET", "/dlq?subscription_id="+sub.ID, nil, &dlq); code != 200 || len(dlq.Data) != 1 ||
		dlq.Data[0].EventID != dead || dlq.Data[0].OrderingKey != "cus_1" || dlq.Data[0].HeldKeyFor == "" {
		t.Fatalf("the DLQ entry: %d %+v", code, dlq.Data)
	}
}

// TestOrderedBlockHoldsTheKeyUntilRedriven: under on_failure "block" a head
// that goes to the DLQ keeps its key's next events waiting (other keys go
// on) until it is redriven and delivered; then the key continues in order.
func TestOrderedBlockHoldsTheKeyUntilRedriven(t *testing.T) {
	e := startStack(t, nil)
	refusing := true // the endpoint refuses cus_1's first event
	var mu sync.Mutex
	var order []string
	rcv := newReceiver(t, func(r *http.Request, _ int) (int, http.Header) {
		var b struct {
			Customer string `json:"customer"`
			Seq      int    `json:"seq"`
		}
		_ = json.NewDecoder(r.Body).Decode(&b)
		mu.Lock()
		defer mu.Unlock()
		if (refusing && b.Customer == "cus_1" || b.Customer == "cus_3") && b.Seq == 1 {
			return 400, nil
		}
		order = append(order, fmt.Sprintf("%s#%d", b.Customer, b.Seq))
		return 200, nil
	})
	src := e.orderedSource("customer")
	sub := e.subscribeWith(src.ID, map[string]any{"url": rcv.URL, "ordered": true, "on_failure": "block"})
	time.Sleep(2500 * time.Millisecond) // deliver's subscription cache
	send := func(customer string, seq int) string {
		t.Helper()
		code, r := e.send(src, "relay", []byte(fmt.Sprintf(`{"customer":%q,"seq":%d}`, customer, seq)), nil)
		if code != 202 {
			t.Fatalf("send %s#%d: %d", customer, seq, code)
		}
		return r.EventID
	}
	head := send("cus_1", 1)
	e.waitStatus(src.ID, head, sub.ID, "dead", 20*time.Second)
	next := send("cus_1", 2)
	// Another key sent after it and delivered: the blocked key's event has
	// been fanned out by then, and still waits.
	e.waitStatus(src.ID, send("cus_2", 1), sub.ID, "delivered", 20*time.Second)
	testenv.Eventually(t, 20*time.Second, "the blocked key's next event to wait", func() bool {
		d := e.deliveries(src.ID, next)[sub.ID]
		return d.Status == "waiting" && d.Behind == head
	})
	mu.Lock()
	refusing = false
	mu.Unlock()
	var res struct {
		Redriven int `json:"redriven"`
	}
	if code := e.call("POST", "/replay/dlq?subscription_id="+sub.ID, nil, &res); code != 202 || res.Redriven != 1 {
		t.Fatalf("redrive = %d %+v", code, res)
	}
	e.waitStatus(src.ID, next, sub.ID, "delivered", 20*time.Second)

	// A blocked key moved past its parked head without a redrive.
	dead := send("cus_3", 1)
	e.waitStatus(src.ID, dead, sub.ID, "dead", 20*time.Second)
	behind := send("cus_3", 2)
	type laneView struct {
		Head       string `json:"head"`
		HeadStatus string `json:"head_status"`
		Waiting    int    `json:"waiting"`
	}
	lane := "/sources/" + src.ID + "/subscriptions/" + sub.ID + "/lane"
	var l laneView
	testenv.Eventually(t, 20*time.Second, "cus_3's lane to hold its parked head and one behind it", func() bool {
		l = laneView{}
		return e.call("GET", lane+"?ordering_key=cus_3", nil, &l) == 200 && l.Head == dead && l.HeadStatus == "dead" && l.Waiting == 1
	})
	// The answer shows the lane after the skip: behind as its head, or no
	// head at all when deliver was quicker and has delivered it already.
	var skipped laneView
	if code := e.call("POST", lane+"/skip?ordering_key=cus_3", nil, &skipped); code != 200 || skipped.Head != behind && skipped.Head != "" {
		t.Fatalf("skip: %d %+v", code, skipped)
	}
	e.waitStatus(src.ID, behind, sub.ID, "delivered", 20*time.Second)
	var apiErr struct {
		Error struct {
			Code string `json:"code"`
		} `json:"error"`
	}
	if code := e.call("POST", lane+"/skip?ordering_key=cus_3", nil, &apiErr); code != 409 || apiErr.Error.Code != "key_idle" {
		t.Fatalf("skip of an idle key: %d %+v", code, apiErr)
	}
	mu.Lock()
	defer mu.Unlock()
	if got, want := fmt.Sprint(order), "[cus_2#1 cus_1#1 cus_1#2 cus_3#2]"; got != want {
		t.Fatalf("the endpoint saw %s, want %s", got, want)
	}
}

// TestOrderingIsValidated: a bad ordering key or on_failure is a 400 that
// names the field; ordered is fixed at creation, on_failure may change;
// both read back.
func TestOrderingIsValidated(t *testing.T) {
	e := startServices(t, services{}, nil)
	type apiError struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	for _, c := range []struct {
		path string
		body map[string]any
		want string
	}{
		{"/sources", map[string]any{"name": "a", "ordering_key": map[string]any{}}, "ordering_key: needs header or json_path"},
		{"/sources", map[string]any{"name": "a", "ordering_key": map[string]any{"header": "X-A", "json_path": "a"}}, "ordering_key: needs header or json_path"},
		{"/sources", map[string]any{"name": "a", "ordering_key": map[string]any{"json_path": "data..id"}}, "ordering_key.json_path"},
	} {
		var r apiError
		if code := e.call("POST", c.path, c.body, &r); code != 400 || r.Error.Code != "invalid_field" || !strings.Contains(r.Error.Message, c.want) {
			t.Errorf("POST %s %v: %d %+v, want 400 naming %q", c.path, c.body, code, r, c.want)
		}
	}
	src := e.orderedSource("data.customer_id")
	var got struct {
		OrderingKey struct {
			JSONPath string `json:"json_path"`
		} `json:"ordering_key"`
	}
	if code := e.call("GET", "/sources/"+src.ID, nil, &got); code != 200 || got.OrderingKey.JSONPath != "data.customer_id" {
		t.Fatalf("source read back: %d %+v", code, got)
	}
	subs := "/sources/" + src.ID + "/subscriptions"
	for _, c := range []struct {
		body map[string]any
		want string
	}{
		{map[string]any{"url": "http://127.0.0.1:9/h", "on_failure": "skip"}, "on_failure: applies only to an ordered subscription"},
		{map[string]any{"url": "http://127.0.0.1:9/h", "ordered": true, "on_failure": "later"}, "on_failure: is \"later\""},
	} {
		var r apiError
		if code := e.call("POST", subs, c.body, &r); code != 400 || !strings.Contains(r.Error.Message, c.want) {
			t.Errorf("POST %v: %d %+v, want 400 naming %q", c.body, code, r, c.want)
		}
	}
	type subView struct {
		ID        string `json:"id"`
		Ordered   bool   `json:"ordered"`
		OnFailure string `json:"on_failure"`
	}
	var sub subView
	if code := e.call("POST", subs, map[string]any{"url": "http://127.0.0.1:9/h", "ordered": true}, &sub); code != 201 || !sub.Ordered || sub.OnFailure != "skip" {
		t.Fatalf("ordered subscription: %d %+v", code, sub)
	}
	var r apiError
	if code := e.call("PATCH", subs+"/"+sub.ID, map[string]any{"ordered": false}, &r); code != 400 || !strings.Contains(r.Error.Message, "ordered: is fixed at creation") {
		t.Fatalf("PATCH ordered: %d %+v", code, r)
	}
	if code := e.call("PATCH", subs+"/"+sub.ID, map[string]any{"on_failure": "block"}, &sub); code != 200 || !sub.Ordered || sub.OnFailure != "block" {
		t.Fatalf("PATCH on_failure: %d %+v", code, sub)
	}
	for q, want := range map[string]string{"": "ordering_key: is required", "?ordering_key=" + strings.Repeat("k", 300): "ordering_key: is 300 bytes"} {
		var r apiError
		if code := e.call("GET", subs+"/"+sub.ID+"/lane"+q, nil, &r); code != 400 || !strings.Contains(r.Error.Message, want) {
			t.Errorf("GET lane%.20s: %d %+v, want 400 naming %q", q, code, r, want)
		}
	}
}
