package kafka

import (
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/relayhq/relay/pkg/record"
)

func TestStickyForIgnoresKeysOfItsTopicsOnly(t *testing.T) {
	p := StickyFor(2*time.Millisecond, "relay.events")
	events := p.ForTopic("relay.events")
	first := events.Partition(&kgo.Record{Key: []byte("evt_1")}, 6)
	for i := 2; i < 50; i++ {
		if got := events.Partition(&kgo.Record{Key: []byte(fmt.Sprintf("evt_%d", i))}, 6); got != first {
			t.Fatalf("record %d of one batch went to partition %d, the first to %d", i, got, first)
		}
	}
	events.(kgo.TopicPartitionerOnNewBatch).OnNewBatch()
	if next := events.Partition(&kgo.Record{Key: []byte("evt_x")}, 6); next == first {
		t.Fatalf("the next batch stayed on partition %d", first)
	}

	// Other topics hash the key (murmur2, as Java and the default do).
	keyed := p.ForTopic("relay.deliveries")
	want := kgo.StickyKeyPartitioner(nil).ForTopic("relay.deliveries")
	for i := 0; i < 50; i++ {
		r := &kgo.Record{Key: []byte(fmt.Sprintf("sub_%d", i))}
		if got, w := keyed.Partition(r, 6), want.Partition(r, 6); got != w {
			t.Fatalf("key %s went to partition %d, murmur2 says %d", r.Key, got, w)
		}
	}
}

// backups is a TopicBackupIter over fixed counts.
type backups struct {
	n []int64
	i int
}

func (b *backups) Next() (int, int64) { b.i++; return b.i - 1, b.n[b.i-1] }
func (b *backups) Rem() int           { return len(b.n) - b.i }

// A batch stays on its partition; the next goes to the partition with the
// fewest records buffered; and a partition whose batch stays open past
// stuckAfter (its leader is gone, nothing drains) is left for another,
// rather than taking every record until its batch fills.
func TestStickyLeavesAPartitionThatStopsDraining(t *testing.T) {
	clock := time.Unix(0, 0)
	tp := StickyFor(2*time.Millisecond, "relay.events").ForTopic("relay.events").(*stickyTopic)
	tp.now = func() time.Time { return clock }
	pick := func(counts ...int64) int {
		return tp.PartitionByBackup(&kgo.Record{}, len(counts), &backups{n: counts})
	}
	first := pick(5, 0, 3)
	if first != 1 {
		t.Fatalf("first record went to partition %d, want the least backed up, 1", first)
	}
	clock = clock.Add(50 * time.Millisecond)
	if got := pick(5, 40, 3); got != 1 {
		t.Fatalf("within its batch a record left partition 1 for %d", got)
	}
	tp.OnNewBatch()
	if got := pick(5, 40, 3); got != 2 {
		t.Fatalf("the next batch went to %d, want the least backed up, 2", got)
	}
	// Partition 2's batch stays open: its leader died.
	clock = clock.Add(tp.stuckAfter)
	if got := pick(5, 0, 90); got == 2 {
		t.Fatal("records kept going to a partition whose batch has not drained")
	} else if got != 1 {
		t.Fatalf("left the stuck partition for %d, want the least backed up, 1", got)
	}
	// The stuck partition is skipped for a while, even with nothing
	// buffered on it (records in flight to a dead broker are not counted).
	for i := 0; i < 5; i++ {
		tp.OnNewBatch()
		if got := pick(9, 9, 0); got == 2 {
			t.Fatalf("batch %d went back to the stuck partition", i)
		}
	}
	clock = clock.Add(tp.avoidFor)
	tp.OnNewBatch()
	if got := pick(9, 9, 0); got != 2 {
		t.Fatalf("after avoidFor the partition is not tried again: %d", got)
	}
}

func TestStickyChoice(t *testing.T) {
	counts := func(c ...int64) func(int) (int64, bool) { return func(i int) (int64, bool) { return c[i], false } }
	avoiding := func(bad int, c ...int64) func(int) (int64, bool) {
		return func(i int) (int64, bool) { return c[i], i == bad }
	}
	for _, c := range []struct {
		name  string
		cur   int
		n     int
		stuck bool
		b     func(int) (int64, bool)
		want  int
	}{
		{"an avoided partition is skipped though it has the fewest", 0, 3, true, avoiding(2, 5, 4, 0), 1},
		{"every partition avoided: the least backed up", 0, 2, true, func(i int) (int64, bool) { return []int64{3, 1}[i], true }, 1},
		{"no partition yet: the least backed up", -1, 3, false, counts(2, 1, 3), 1},
		{"open batch: stay", 2, 3, false, counts(0, 0, 9), 2},
		{"stuck: the least backed up", 2, 3, true, counts(4, 1, 9), 1},
		{"ties rotate from the one after cur", 0, 3, true, counts(0, 0, 0), 1},
		{"cur past the writable partitions", 5, 3, false, counts(1, 0, 1), 1},
		{"one partition", -1, 1, false, counts(7), 0},
	} {
		if got := stickyChoice(c.cur, c.n, c.stuck, c.b); got != c.want {
			t.Errorf("%s: stickyChoice = %d, want %d", c.name, got, c.want)
		}
	}
}

// TestStickyForHashesOrderedEvents: an event with an ordering key goes to
// its key's partition (murmur2, among all of them), whatever the sticky
// choice of the moment, so that a key's events stay in order on one.
func TestStickyForHashesOrderedEvents(t *testing.T) {
	tp := StickyFor(2*time.Millisecond, "relay.events").ForTopic("relay.events").(*stickyTopic)
	want := kgo.StickyKeyPartitioner(nil).ForTopic("relay.events")
	keyed := func(key string) *kgo.Record {
		return &kgo.Record{Key: []byte(key), Headers: []kgo.RecordHeader{{Key: record.HeaderOrderingKey, Value: []byte(key)}}}
	}
	if tp.RequiresConsistency(&kgo.Record{Key: []byte("evt_1")}) || !tp.RequiresConsistency(keyed("cus_1")) {
		t.Fatal("only an event with an ordering key requires consistent partitioning")
	}
	spread := map[int]bool{}
	for i := 0; i < 50; i++ {
		r := keyed(fmt.Sprintf("cus_%d", i))
		w := want.Partition(r, 6)
		for _, counts := range [][]int64{{0, 9, 9, 9, 9, 9}, {9, 9, 9, 9, 9, 0}} {
			if got := tp.PartitionByBackup(r, 6, &backups{n: counts}); got != w {
				t.Fatalf("key %s went to partition %d, murmur2 says %d", r.Key, got, w)
			}
		}
		spread[w] = true
	}
	if len(spread) < 4 {
		t.Fatalf("50 keys on %d of 6 partitions", len(spread))
	}
}
