package consumer

import (
	"context"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/relayhq/relay/pkg/logging"
	"github.com/relayhq/relay/pkg/record"
	"github.com/relayhq/relay/services/deliver/internal/offsets"
)

// idleClient is a client that never connects: the callbacks only pause and
// resume partitions on it.
func idleClient(t *testing.T) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers("127.0.0.1:1"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

var tp = offsets.Partition{Topic: "relay.events", Partition: 0}

func at(offset int64) *kgo.Record {
	return &kgo.Record{Topic: tp.Topic, Partition: tp.Partition, Offset: offset}
}

// A record fetched under an assignment that ended while it waited for room
// is not worked on, even when the partition was assigned back to this
// member meanwhile: the new assignment fetches from the committed offset,
// and a record of the old fetch in its tracker would make it refuse the
// lower offsets as seen, moving the commit point past records never
// delivered.
func TestRecordOfAnEndedAssignmentIsRefused(t *testing.T) {
	cl := idleClient(t)
	g := newGroup("g", nil, logging.Discard(), NewBudget(1<<20), Options{MaxInFlight: 1})
	g.cl = cl
	ctx := context.Background()
	g.assigned(ctx, cl, map[string][]int32{tp.Topic: {0}})
	fetchedIn := g.assignment()[tp]

	g.inflight <- struct{}{} // every slot taken: the next start waits
	started := make(chan bool, 1)
	go func() {
		_, ok := g.start(ctx, at(100), fetchedIn)
		started <- ok
	}()
	time.Sleep(20 * time.Millisecond) // let it wait for a slot

	g.lost(ctx, cl, map[string][]int32{tp.Topic: {0}})
	g.assigned(ctx, cl, map[string][]int32{tp.Topic: {0}})
	<-g.inflight
	if <-started {
		t.Fatal("a record of the ended assignment was worked on under the new one")
	}

	now := g.assignment()[tp]
	for _, off := range []int64{90, 100} {
		wk, ok := g.start(ctx, at(off), now)
		if !ok {
			t.Fatalf("offset %d, fetched again from the committed offset, was refused", off)
		}
		g.finish(wk, false)
	}
}

// Records held until due by the retry consumer belong to the assignment
// they were fetched under: a partition lost and assigned back drops them
// (they are fetched again), and the new fetch's records are held on their
// own.
func TestHeldRecordsOfAnEndedAssignmentAreDropped(t *testing.T) {
	cl := idleClient(t)
	g := newGroup("g", nil, logging.Discard(), NewBudget(1<<20), Options{MaxInFlight: 10})
	g.cl = cl
	c := &Retries{g: g, queues: map[offsets.Partition]*held{}, now: time.Now}
	ctx := context.Background()
	later := func(offset int64) *kgo.Record {
		d := record.Delivery{Event: record.Event{ID: "evt_1", SourceID: "src_1"}, SubscriptionID: "sub_1", Attempt: 2, NotBefore: time.Now().Add(time.Hour)}
		r := d.Record(tp.Topic)
		r.Partition, r.Offset = tp.Partition, offset
		return r
	}

	g.assigned(ctx, cl, map[string][]int32{tp.Topic: {0}})
	c.hold(later(100), g.assignment()[tp])
	c.hold(later(101), g.assignment()[tp])
	g.lost(ctx, cl, map[string][]int32{tp.Topic: {0}})
	g.assigned(ctx, cl, map[string][]int32{tp.Topic: {0}})
	if !c.dispatchDue(ctx) {
		t.Fatal("dispatchDue stopped")
	}
	if q := c.queues[tp]; q != nil {
		t.Fatalf("%d records of the ended assignment still held", len(q.recs))
	}

	now := g.assignment()[tp]
	c.hold(later(90), now)
	c.hold(later(100), now)
	if q := c.queues[tp]; q == nil || len(q.recs) != 2 || q.recs[0].Offset != 90 || q.st != now {
		t.Fatalf("the new assignment's records are not held on their own: %+v", q)
	}
}
