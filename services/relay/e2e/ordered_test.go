package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
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

type orderedDelivery struct {
	SubscriptionID string `json:"subscription_id"`
	Status         string `json:"status"`
	OrderingKey    string `json:"ordering_key"`
	Behind         string `json:"behind"`
}

func (e *env) orderedDeliveries(src, evt string) map[string]orderedDelivery {
	e.t.Helper()
	var out struct {
		Data []orderedDelivery `json:"data"`
	}
	if code := e.call("GET", "/sources/"+src+"/events/"+evt+"/deliveries", nil, &out); code != 200 {
		e.t.Fatalf("deliveries: %d", code)
	}
	m := map[string]orderedDelivery{}
	for _, d := range out.Data {
		m[d.SubscriptionID] = d
	}
	return m
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
	t.Cleanup(func() { once.Do(func() { close(release) }) })
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
		d2, d3 := e.orderedDeliveries(src.ID, second)[sub.ID], e.orderedDeliveries(src.ID, third)[sub.ID]
		return d2.Status == "waiting" && d2.Behind == first && d3.Status == "waiting" && d3.Behind == first
	})
	if d := e.orderedDeliveries(src.ID, second)[sub.ID]; d.OrderingKey != "cus_1" {
		t.Fatalf("a waiting delivery's ordering key = %q", d.OrderingKey)
	}
	if d := e.orderedDeliveries(src.ID, second)[plainSub.ID]; d.OrderingKey != "" || d.Status != "delivered" {
		t.Fatalf("the unordered subscription's delivery = %+v", d)
	}
	var ev struct {
		OrderingKey string `json:"ordering_key"`
	}
	if code := e.call("GET", "/sources/"+src.ID+"/events/"+second, nil, &ev); code != 200 || ev.OrderingKey != "cus_1" {
		t.Fatalf("the event's ordering key: %d %q", code, ev.OrderingKey)
	}

	once.Do(func() { close(release) })
	e.waitStatus(src.ID, third, sub.ID, "delivered", 20*time.Second)

	// A head the endpoint refuses for good goes to the DLQ; the next
	// proceeds, and the entry says which key it held up.
	dead := send("cus_1", 4, true)
	after := send("cus_1", 5, false)
	e.waitStatus(src.ID, dead, sub.ID, "dead", 20*time.Second)
	e.waitStatus(src.ID, after, sub.ID, "delivered", 20*time.Second)
	mu.Lock()
	got := fmt.Sprint(order)
	mu.Unlock()
	if want := "[{cus_2 1} {cus_1 1} {cus_1 2} {cus_1 3} {cus_1 5}]"; got != want {
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
