package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"sort"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/relayhq/relay/pkg/delivery"
	"github.com/relayhq/relay/pkg/signature"
	"github.com/relayhq/relay/pkg/testenv"
)

// orderedEndpoint records, per ordering key, every request in the order
// it arrived and how it was answered, and checks each against Relay's
// recorded state: a pair recorded delivered must never be POSTed again.
type orderedEndpoint struct {
	addr  string
	store *delivery.Store
	sub   string
	// answer decides the status of attempt n of (key, seq).
	answer func(key string, seq, attempt int) int

	mu         sync.Mutex
	byKey      map[string][]arrival
	violations []string
}

type arrival struct {
	seq, attempt, status int
	id                   string
	at, answered         time.Time
}

func newOrderedEndpoint(t *testing.T, store *delivery.Store, answer func(string, int, int) int) *orderedEndpoint {
	o := &orderedEndpoint{store: store, answer: answer, byKey: map[string][]arrival{}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	o.addr = ln.Addr().String()
	srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var b struct {
			Customer string `json:"customer"`
			Seq      int    `json:"seq"`
		}
		_ = json.Unmarshal(body, &b)
		id := r.Header.Get("Webhook-Id")
		attempt, _ := strconv.Atoi(r.Header.Get("X-Relay-Attempt"))
		a := arrival{seq: b.Seq, attempt: attempt, id: id, at: time.Now()}
		ctx, cancel := context.WithTimeout(r.Context(), time.Second)
		st, ok, err := o.store.Get(ctx, id, o.sub)
		cancel()
		a.status = o.answer(b.Customer, b.Seq, attempt)
		a.answered = time.Now()
		o.mu.Lock()
		if err == nil && ok && st.Status == delivery.StatusDelivered {
			o.violations = append(o.violations, fmt.Sprintf("%s (%s #%d) POSTed again after Relay recorded it delivered", id, b.Customer, b.Seq))
		}
		o.byKey[b.Customer] = append(o.byKey[b.Customer], a)
		o.mu.Unlock()
		w.WriteHeader(a.status)
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return o
}

func (o *orderedEndpoint) snapshot() (map[string][]arrival, []string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	m := make(map[string][]arrival, len(o.byKey))
	for k, v := range o.byKey {
		m[k] = append([]arrival(nil), v...)
	}
	return m, append([]string(nil), o.violations...)
}

// settled counts the events the endpoint has answered for good: a 2xx, or
// a 4xx (which parks the delivery at once).
func settled(arrivals []arrival) map[int]bool {
	done := map[int]bool{}
	for _, a := range arrivals {
		if a.status < 500 {
			done[a.seq] = true
		}
	}
	return done
}

// TestOrderedDeliveryAtScale: 200 keys of 50 events each to an ordered
// subscription, from several deliver processes, one killed -9 and another
// added mid-run. The endpoint fails some events a few times and one key's
// events for good (400: each goes to the DLQ, and the key moves on). Each
// key's events reach the endpoint in the order ingest accepted them, each
// attempted only once the one before it was settled; while one key's head
// waits on a retry tier other keys are delivered; nothing is lost, and
// nothing recorded delivered is POSTed again.
func TestOrderedDeliveryAtScale(t *testing.T) {
	const keys, perKey = 200, 50
	// The breaker off: the flaky events' 503s come in runs that would open
	// the circuit, which holds every key alike (tested on its own).
	s := startFaultStack(t, map[string]string{"RELAY_KAFKA_PARTITIONS": "6", "RELAY_RETRY_TIERS": "1s,2s,4s", "RELAY_BREAKER_FAILURES": "0"})
	bad := "cus_000"
	flaky := func(key string, seq int) bool { return seq%10 == 3 && key[len(key)-1] == '7' }
	ep := newOrderedEndpoint(t, delivery.New(s.rdb, time.Hour), func(key string, seq, attempt int) int {
		switch {
		case key == bad:
			return 400
		case flaky(key, seq) && attempt <= 2:
			return 503
		}
		return 200
	})
	e := &env{t: t, api: s.api}
	src := e.orderedSource("customer")
	sub := e.subscribeWith(src.ID, map[string]any{"url": "http://" + ep.addr + "/hook", "ordered": true})
	ep.sub = sub.ID
	time.Sleep(2500 * time.Millisecond) // deliver's subscription cache

	// Each key's events are sent one after another (a 202 before the next),
	// twenty keys at a time; a refused request is sent again, under its
	// idempotency key.
	accepted := make([]map[int]string, keys)
	var sent sync.WaitGroup
	var progress sync.Map
	client := &http.Client{Timeout: 10 * time.Second}
	for w := 0; w < 20; w++ {
		sent.Add(1)
		go func() {
			defer sent.Done()
			for seq := 0; seq < perKey; seq++ {
				for k := w; k < keys; k += 20 {
					key := fmt.Sprintf("cus_%03d", k)
					if accepted[k] == nil {
						accepted[k] = map[int]string{}
					}
					body := []byte(fmt.Sprintf(`{"type":"order.updated","customer":%q,"seq":%d}`, key, seq))
					for try := 0; ; try++ {
						code, id := sendSigned(t, client, s.api, src, body, map[string]string{"X-Idempotency-Key": fmt.Sprintf("%s-%d", key, seq)})
						if code == 202 || code == 200 {
							accepted[k][seq] = id
							break
						}
						if try > 50 {
							t.Errorf("%s #%d refused %d times (last %d)", key, seq, try, code)
							return
						}
						time.Sleep(200 * time.Millisecond)
					}
				}
				progress.Store(w, seq)
			}
		}()
	}
	waitSent := func(seq int) {
		testenv.Eventually(t, 120*time.Second, fmt.Sprintf("every key's event %d to be sent", seq), func() bool {
			for w := 0; w < 20; w++ {
				if v, ok := progress.Load(w); !ok || v.(int) < seq {
					return false
				}
			}
			return true
		})
	}
	waitSent(12)
	s.deliver.kill()
	time.Sleep(time.Second)
	s.deliver.start()
	waitSent(25)
	more := s.newProc("deliver")
	more.start()
	sent.Wait()
	loadDone := time.Now()

	n := 0
	defer func() {
		if !t.Failed() {
			return
		}
		t.Logf("%d of %d events settled at the endpoint", n, keys*perKey)
		// Where each unfinished key stands: its lane and the delivery
		// states of its head and of its first unsettled event.
		got, _ := ep.snapshot()
		store := delivery.New(s.rdb, time.Hour)
		ctx := context.Background()
		for k := 0; k < keys; k++ {
			key := fmt.Sprintf("cus_%03d", k)
			done := settled(got[key])
			if len(done) == perKey {
				continue
			}
			first := 0
			for done[first] {
				first++
			}
			lane, _ := s.rdb.HGetAll(ctx, "relay:lane:{"+sub.ID+"}:"+key).Result()
			queue, _ := s.rdb.LRange(ctx, "relay:lane:{"+sub.ID+"}:"+key+":q", 0, 2).Result()
			head, _, _ := store.Get(ctx, lane["head"], sub.ID)
			firstSt, _, _ := store.Get(ctx, accepted[k][first], sub.ID)
			t.Logf("%s: %d settled; first unsettled #%d %s %+v; lane %v (head %+v), queue starts %v",
				key, len(done), first, accepted[k][first], firstSt, lane, head, queue)
		}
	}()
	testenv.Eventually(t, 240*time.Second, "every event to be settled at the endpoint", func() bool {
		got, _ := ep.snapshot()
		n = 0
		for _, arr := range got {
			n += len(settled(arr))
		}
		return n == keys*perKey
	})
	got, violations := ep.snapshot()
	for _, v := range violations {
		t.Error(v)
	}
	for k := 0; k < keys; k++ {
		key := fmt.Sprintf("cus_%03d", k)
		arr := got[key]
		if n := len(accepted[k]); n != perKey {
			t.Fatalf("%s: %d events accepted, want %d", key, n, perKey)
		}
		done := map[int]bool{}
		last := -1
		for i, a := range arr {
			if a.id != accepted[k][a.seq] {
				t.Errorf("%s #%d arrived as %s, accepted as %s", key, a.seq, a.id, accepted[k][a.seq])
			}
			switch {
			case a.seq < last:
				t.Errorf("%s: #%d arrived after #%d (arrival %d)", key, a.seq, last, i)
			case a.seq > last && last >= 0 && !done[last]:
				t.Errorf("%s: #%d attempted before #%d was settled", key, a.seq, last)
			case a.seq > last+1:
				t.Errorf("%s: #%d arrived right after #%d; #%d was skipped", key, a.seq, last, last+1)
			}
			if a.status < 500 {
				done[a.seq] = true
			}
			last = max(last, a.seq)
		}
		if len(done) != perKey {
			t.Errorf("%s: %d of %d events settled", key, len(done), perKey)
		}
	}

	// While a flaky head waited on its retry tier (during the load), other
	// keys were delivered: no key waits on another.
	var windows, idle int
	for key, arr := range got {
		for i, a := range arr {
			if a.status != 503 || i+1 >= len(arr) {
				continue
			}
			from, to := a.answered, arr[i+1].at
			if to.After(loadDone) {
				continue
			}
			others := 0
			for other, oarr := range got {
				if other == key {
					continue
				}
				for _, o := range oarr {
					if o.status == 200 && o.at.After(from) && o.at.Before(to) {
						others++
					}
				}
			}
			windows++
			if others == 0 {
				idle++
			}
		}
	}
	if windows == 0 || idle > 0 {
		t.Errorf("%d of %d retry waits of a head saw no other key delivered meanwhile", idle, windows)
	}

	// The bad key's events are all in the DLQ, each naming its key.
	var dlq struct {
		Data []struct {
			EventID     string `json:"event_id"`
			OrderingKey string `json:"ordering_key"`
			Reason      string `json:"reason"`
		} `json:"data"`
	}
	if code := e.call("GET", "/dlq?limit=100&subscription_id="+sub.ID, nil, &dlq); code != 200 {
		t.Fatalf("dlq: %d", code)
	}
	var parked []string
	for _, d := range dlq.Data {
		if d.OrderingKey != bad || d.Reason != "non_retryable_status" {
			t.Errorf("DLQ entry %+v", d)
		}
		parked = append(parked, d.EventID)
	}
	var want []string
	for _, id := range accepted[0] {
		want = append(want, id)
	}
	sort.Strings(parked)
	sort.Strings(want)
	if fmt.Sprint(parked) != fmt.Sprint(want) {
		t.Errorf("the DLQ holds %d entries, want the bad key's %d", len(parked), len(want))
	}
}

// sendSigned posts body to src, signed under the relay scheme, and returns
// the status and the event id.
func sendSigned(t *testing.T, client *http.Client, api string, src source, body []byte, headers map[string]string) (int, string) {
	req, _ := http.NewRequest("POST", api+"/in/"+src.ID, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	if err := (signature.Relay{}).Sign(req.Header, body, src.Secret, time.Now()); err != nil {
		t.Error(err)
		return 0, ""
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, ""
	}
	defer resp.Body.Close()
	var r ingestReply
	_ = json.NewDecoder(resp.Body).Decode(&r)
	return resp.StatusCode, r.EventID
}
