package lanes

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/relayhq/relay/pkg/ids"
	"github.com/relayhq/relay/pkg/logging"
	"github.com/relayhq/relay/pkg/payloads"
	"github.com/relayhq/relay/pkg/record"
	"github.com/relayhq/relay/pkg/testenv"
)

func TestEntryRoundTrip(t *testing.T) {
	e := Entry{Event: "evt_1", Topic: "relay.events", Partition: 3, Offset: 42, Attempt: 1}
	got, err := ParseEntry(e.String())
	if err != nil || got != e {
		t.Fatalf("round trip = %+v, %v", got, err)
	}
	for _, bad := range []string{"", "evt_1", "evt_1|relay.events|x|1|1", "evt_1|relay.events|1|1|0", "|relay.events|1|1|1", "evt_1|relay.events|-1|1|1"} {
		if _, err := ParseEntry(bad); err == nil {
			t.Errorf("ParseEntry(%q) accepted", bad)
		}
	}
}

// testEntry is evt's entry, at an offset of its own.
func testEntry(evt string) Entry {
	return Entry{Event: evt, Topic: "relay.events", Partition: 1, Offset: int64(len(evt)), Attempt: 1}
}

// TestLane walks one lane through its life: the first event is the head,
// the next ones queue in order (once, however often they are enqueued), the
// head settling promotes the first waiting one only once its record is
// produced, and the last one settling deletes the lane.
func TestLane(t *testing.T) {
	ctx := context.Background()
	s := New(testenv.Redis(t))
	sub, key := ids.New(ids.Subscription), "cus_1"
	now := time.UnixMilli(time.Now().UnixMilli())
	entry := func(evt string) Entry {
		return Entry{Event: evt, Topic: "relay.events", Partition: 1, Offset: int64(len(evt)), Attempt: 1}
	}

	pos, err := s.Enqueue(ctx, sub, key, entry("evt_a"), now)
	if err != nil || !pos.Head || pos.Behind != "evt_a" || !pos.Since.Equal(now) {
		t.Fatalf("first event = %+v, %v", pos, err)
	}
	if pos, _ := s.Enqueue(ctx, sub, key, entry("evt_a"), now.Add(time.Second)); !pos.Head || !pos.Since.Equal(now) {
		t.Fatalf("the head enqueued again = %+v", pos)
	}
	for _, evt := range []string{"evt_bb", "evt_ccc", "evt_bb"} {
		if pos, err := s.Enqueue(ctx, sub, key, entry(evt), now); err != nil || pos.Head || pos.Behind != "evt_a" {
			t.Fatalf("%s = %+v, %v", evt, pos, err)
		}
	}
	if n, _ := s.Waiting(ctx, sub, key); n != 2 {
		t.Fatalf("%d waiting, want 2 (evt_bb once)", n)
	}
	// Another key of the same subscription is its own lane.
	if pos, _ := s.Enqueue(ctx, sub, "cus_2", entry("evt_x"), now); !pos.Head {
		t.Fatalf("another key's first event = %+v", pos)
	}

	// evt_a settles: evt_bb's record first, then the promotion.
	next, err := s.step(ctx, sub, key, "evt_a", "", now)
	if err != nil || next != entry("evt_bb").String() {
		t.Fatalf("step past the head = %q, %v", next, err)
	}
	if head, _, _, _ := s.Head(ctx, sub, key); head != "evt_a" {
		t.Fatalf("head before the promotion = %s", head)
	}
	later := now.Add(time.Minute)
	if next, _ := s.step(ctx, sub, key, "evt_a", next, later); next != "" {
		t.Fatalf("promotion answered %q", next)
	}
	if head, since, ok, _ := s.Head(ctx, sub, key); !ok || head != "evt_bb" || !since.Equal(later) {
		t.Fatalf("head after the promotion = %s since %v", head, since)
	}
	// Settling evt_a again (its record consumed twice) moves nothing.
	if next, _ := s.step(ctx, sub, key, "evt_a", "", later); next != "" {
		t.Fatalf("a settled head settling again answered %q", next)
	}

	// evt_bb settles and evt_ccc's record is produced, but the promotion
	// is lost (a crash); evt_ccc is delivered and settles: it promotes
	// itself and moves on, emptying the lane.
	if next, _ := s.step(ctx, sub, key, "evt_bb", "", later); next != entry("evt_ccc").String() {
		t.Fatalf("step past evt_bb = %q", next)
	}
	if next, _ := s.step(ctx, sub, key, "evt_ccc", "", later); next != "" {
		t.Fatalf("the last event settling answered %q", next)
	}
	if _, _, ok, _ := s.Head(ctx, sub, key); ok {
		t.Fatal("an empty lane was kept")
	}
	if pos, _ := s.Enqueue(ctx, sub, key, entry("evt_dddd"), later); !pos.Head {
		t.Fatalf("an event after the lane emptied = %+v", pos)
	}
}

// TestLaneHeadSettlesBeforeItsPromotion: the next head's record is
// consumed and settled before its predecessor's settling has promoted it.
// Its own settling promotes it and moves the lane on, and the
// predecessor's late promotion then changes nothing.
func TestLaneHeadSettlesBeforeItsPromotion(t *testing.T) {
	ctx := context.Background()
	s := New(testenv.Redis(t))
	sub, key := ids.New(ids.Subscription), "cus_1"
	now := time.UnixMilli(time.Now().UnixMilli())
	entry := func(evt string) string { return testEntry(evt).String() }
	for _, evt := range []string{"evt_a", "evt_bb", "evt_ccc"} {
		if _, err := s.Enqueue(ctx, sub, key, testEntry(evt), now); err != nil {
			t.Fatal(err)
		}
	}
	if next, _ := s.step(ctx, sub, key, "evt_a", "", now); next != entry("evt_bb") {
		t.Fatalf("evt_a settling = %q", next)
	}
	// evt_bb's record is out; it settles first.
	next, err := s.step(ctx, sub, key, "evt_bb", "", now)
	if err != nil || next != entry("evt_ccc") {
		t.Fatalf("evt_bb settling before its promotion = %q, %v", next, err)
	}
	if next, _ := s.step(ctx, sub, key, "evt_bb", next, now); next != "" {
		t.Fatalf("evt_bb promoting evt_ccc = %q", next)
	}
	if head, _, _, _ := s.Head(ctx, sub, key); head != "evt_ccc" {
		t.Fatalf("head = %s, want evt_ccc", head)
	}
	// evt_a's promotion of evt_bb, late, changes nothing.
	if next, _ := s.step(ctx, sub, key, "evt_a", entry("evt_bb"), now); next != "" {
		t.Fatalf("a late promotion answered %q", next)
	}
	if head, _, _, _ := s.Head(ctx, sub, key); head != "evt_ccc" {
		t.Fatalf("head after the late promotion = %s, want evt_ccc", head)
	}
}

// TestAdvance: the advancer produces the next head's delivery, read from
// its record, before the lane says it is the head; a record Kafka no longer
// has is skipped for the one behind it.
func TestAdvance(t *testing.T) {
	testenv.RedisBackends(t, func(t *testing.T, rdb redis.UniversalClient) {
		ctx := context.Background()
		s := New(rdb)
		sub, key := ids.New(ids.Subscription), "cus_1"
		now := time.UnixMilli(time.Now().UnixMilli())
		events := map[int64]record.Event{}
		for i, id := range []string{"evt_a", "evt_b", "evt_c"} {
			events[int64(i)] = record.Event{ID: id, SourceID: "src_1", Type: "t", ReceivedAt: now, OrderingKey: key, Body: []byte(id)}
			if _, err := s.Enqueue(ctx, sub, key, Entry{Event: id, Topic: "relay.events", Partition: 0, Offset: int64(i), Attempt: 1}, now); err != nil {
				t.Fatal(err)
			}
		}
		reader := &fakeReader{events: events, gone: map[int64]bool{1: true}}
		prod := &fakeProducer{}
		a := &Advancer{Store: s, Reader: reader, Producer: prod, Topic: "relay.deliveries", Events: "relay.events", Log: logging.Discard(), Now: func() time.Time { return now }}
		if err := a.Advance(ctx, sub, key, "evt_a"); err != nil {
			t.Fatal(err)
		}
		if len(prod.recs) != 1 {
			t.Fatalf("%d records produced, want evt_c's alone (evt_b's is gone)", len(prod.recs))
		}
		d, err := record.ParseDelivery(prod.recs[0])
		if err != nil || d.ID != "evt_c" || d.SubscriptionID != sub || d.Attempt != 1 || d.Origin != record.OriginOrdered ||
			!d.HeadSince.Equal(now) || d.OrderingKey != key || string(d.Body) != "evt_c" || prod.recs[0].Topic != "relay.deliveries" {
			t.Fatalf("next head's delivery = %+v (%v)", d, err)
		}
		if head, _, _, _ := s.Head(ctx, sub, key); head != "evt_c" {
			t.Fatalf("head = %s, want evt_c", head)
		}
		// Kafka unreachable: an error, and the lane as it was.
		if _, err := s.Enqueue(ctx, sub, key, Entry{Event: "evt_d", Topic: "relay.events", Partition: 0, Offset: 9, Attempt: 1}, now); err != nil {
			t.Fatal(err)
		}
		reader.err = payloads.ErrKafkaUnavailable
		if err := a.Advance(ctx, sub, key, "evt_c"); !errors.Is(err, payloads.ErrKafkaUnavailable) {
			t.Fatalf("advance with Kafka down = %v", err)
		}
		if head, _, _, _ := s.Head(ctx, sub, key); head != "evt_c" {
			t.Fatalf("head after a failed advance = %s, want evt_c still", head)
		}
	})
}

type fakeReader struct {
	events map[int64]record.Event
	gone   map[int64]bool
	err    error
}

func (r *fakeReader) RecordAt(_ context.Context, topic string, partition int32, offset int64) (*kgo.Record, error) {
	if r.err != nil {
		return nil, r.err
	}
	ev, ok := r.events[offset]
	if !ok || r.gone[offset] {
		return nil, payloads.ErrExpired
	}
	rec := ev.Record(topic)
	rec.Partition, rec.Offset = partition, offset
	return rec, nil
}

type fakeProducer struct {
	mu   sync.Mutex
	recs []*kgo.Record
}

func (p *fakeProducer) Produce(_ context.Context, r *kgo.Record, promise func(*kgo.Record, error)) {
	p.mu.Lock()
	p.recs = append(p.recs, r)
	p.mu.Unlock()
	promise(r, nil)
}
