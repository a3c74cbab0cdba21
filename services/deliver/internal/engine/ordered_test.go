package engine

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/relayhq/relay/pkg/catalog"
	"github.com/relayhq/relay/pkg/delivery"
	"github.com/relayhq/relay/pkg/lanes"
	"github.com/relayhq/relay/pkg/record"
	"github.com/relayhq/relay/services/deliver/internal/sender"
)

// fakeLanes answers Enqueue with its position and records every Advance.
type fakeLanes struct {
	mu       sync.Mutex
	pos      lanes.Position
	queued   []lanes.Entry
	advanced []string
	j        *journal
}

func (f *fakeLanes) Enqueue(_ context.Context, _, _ string, e lanes.Entry, _ time.Time) (lanes.Position, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.queued = append(f.queued, e)
	return f.pos, nil
}

func (f *fakeLanes) Advance(_ context.Context, sub, key, evt string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.advanced = append(f.advanced, sub+"/"+key+"/"+evt)
	f.j.add("advance")
	return nil
}

func (f *fakeLanes) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.advanced)
}

func orderedHarness(t *testing.T, answer func(int, sender.Request) sender.Response) (*harness, *fakeLanes) {
	h := newHarness(t, answer)
	l := &fakeLanes{j: h.j}
	h.e.lanes = l
	return h, l
}

func ordered(onFailure string) catalog.SubscriptionWithSecrets {
	s := sub
	s.Ordered, s.OnFailure = true, onFailure
	return s
}

func keyed() record.Delivery {
	d := first()
	d.OrderingKey = "cus_1"
	return d
}

func (h *harness) deliverTo(t *testing.T, d record.Delivery, s catalog.SubscriptionWithSecrets) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := h.e.Deliver(ctx, d, s); err != nil {
		t.Fatalf("Deliver: %v", err)
	}
}

// A delivered head moves its key on after its outcome is recorded, and so
// does its record consumed again (the crash came before the lane moved).
func TestDeliveredHeadAdvancesItsKey(t *testing.T) {
	h, l := orderedHarness(t, status(200))
	h.deliverTo(t, keyed(), ordered(catalog.OnFailureSkip))
	if l.count() != 1 || l.advanced[0] != "sub_a/cus_1/evt_a" {
		t.Fatalf("advanced %v", l.advanced)
	}
	if got := strings.Join(h.j.all(), ", "); got != "finish delivered, advance" {
		t.Fatalf("journal %q: the lane must move after the outcome is recorded", got)
	}
	h.deliverTo(t, keyed(), ordered(catalog.OnFailureSkip))
	if l.count() != 2 || h.ep.count() != 1 {
		t.Fatalf("a redelivered head: %d advances, %d POSTs; want 2 and 1", l.count(), h.ep.count())
	}
}

// A head gone to the DLQ moves its key on under "skip", also when its
// record comes back stale; under "block" it holds the key. A retrying head
// holds it either way, and an unordered delivery never touches a lane.
func TestDeadHeadAdvancesOnlyUnderSkip(t *testing.T) {
	for _, c := range []struct {
		onFailure string
		want      int
	}{{catalog.OnFailureSkip, 1}, {catalog.OnFailureBlock, 0}} {
		h, l := orderedHarness(t, status(400))
		h.deliverTo(t, keyed(), ordered(c.onFailure))
		if st := h.states.get(event.ID, sub.ID); st.status != delivery.StatusDead {
			t.Fatalf("%s: state %+v", c.onFailure, st)
		}
		if l.count() != c.want {
			t.Fatalf("%s: %d advances, want %d", c.onFailure, l.count(), c.want)
		}
		h.deliverTo(t, keyed(), ordered(c.onFailure)) // stale now
		if l.count() != 2*c.want {
			t.Fatalf("%s: a stale record of a dead head: %d advances, want %d", c.onFailure, l.count(), 2*c.want)
		}
	}
	h, l := orderedHarness(t, status(503))
	h.deliverTo(t, keyed(), ordered(catalog.OnFailureSkip))
	h.deliverTo(t, keyed(), ordered(catalog.OnFailureSkip)) // stale, retrying
	h.deliverTo(t, keyed(), sub)                            // unordered
	if l.count() != 0 {
		t.Fatalf("a retrying head or an unordered delivery advanced: %v", l.advanced)
	}
}

// Order: the head proceeds with the time it became the head; an event
// behind it is recorded as waiting and its record settled.
func TestOrderQueuesBehindTheHead(t *testing.T) {
	h, l := orderedHarness(t, status(200))
	since := time.UnixMilli(1_700_000_000_000)
	l.pos = lanes.Position{Head: true, Behind: event.ID, Since: since}
	d := keyed()
	at := lanes.Entry{Topic: "relay.events", Partition: 2, Offset: 7}
	head, err := h.e.Order(context.Background(), &d, at)
	if err != nil || !head || !d.HeadSince.Equal(since) {
		t.Fatalf("head: %v %v %v", head, d.HeadSince, err)
	}
	if q := l.queued[0]; q.Event != event.ID || q.Attempt != 1 || q.Partition != 2 || q.Offset != 7 {
		t.Fatalf("queued %+v", q)
	}
	l.pos = lanes.Position{Behind: "evt_before"}
	if head, err := h.e.Order(context.Background(), &d, at); err != nil || head {
		t.Fatalf("behind: %v %v", head, err)
	}
	if st := h.states.get(event.ID, sub.ID); st.status != delivery.StatusWaiting {
		t.Fatalf("state of a waiting delivery: %+v", st)
	}
}
