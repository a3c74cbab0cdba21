// Package offsets tracks records that complete out of order and says, per
// partition, how far the offset may be committed: up to (not including) the
// first record that is not yet done. Committing any further would lose that
// record on a crash; committing less only redoes finished work, which the
// delivery state makes harmless.
package offsets

import (
	"sort"
	"sync"

	"github.com/twmb/franz-go/pkg/kgo"
)

// Partition names a topic partition.
type Partition struct {
	Topic     string
	Partition int32
}

// Ticket identifies one tracked record. A ticket of a partition that was
// forgotten (revoked) since it was issued is ignored by Done.
type Ticket struct {
	Partition
	Offset int64
	gen    uint64
}

type entry struct {
	offset int64
	epoch  int32
	done   bool
}

type partition struct {
	gen     uint64
	entries []entry // in offset order; entries[:head] are done and committed-through
	head    int
	last    int64 // last offset added, -1 before any
}

// Tracker is safe for concurrent use.
type Tracker struct {
	mu    sync.Mutex
	parts map[Partition]*partition
	gen   uint64
}

// New returns an empty Tracker.
func New() *Tracker { return &Tracker{parts: map[Partition]*partition{}} }

func (t *Tracker) part(p Partition) *partition {
	pt := t.parts[p]
	if pt == nil {
		t.gen++
		pt = &partition{gen: t.gen, last: -1}
		t.parts[p] = pt
	}
	return pt
}

// Add starts tracking a record. Offsets of a partition must be added in
// increasing order; a record at or below the last one added is refused (ok
// is false) and must not be processed twice.
func (t *Tracker) Add(r *kgo.Record) (Ticket, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	p := Partition{r.Topic, r.Partition}
	pt := t.part(p)
	if r.Offset <= pt.last {
		return Ticket{}, false
	}
	pt.last = r.Offset
	pt.entries = append(pt.entries, entry{offset: r.Offset, epoch: r.LeaderEpoch})
	return Ticket{Partition: p, Offset: r.Offset, gen: pt.gen}, true
}

// Done marks a record finished. When that moves the partition's commit
// point, it returns the new point (the next offset to consume, with the
// leader epoch of the last finished record) and true.
func (t *Tracker) Done(tk Ticket) (kgo.EpochOffset, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	pt := t.parts[tk.Partition]
	if pt == nil || pt.gen != tk.gen {
		return kgo.EpochOffset{}, false
	}
	rest := pt.entries[pt.head:]
	i := sort.Search(len(rest), func(i int) bool { return rest[i].offset >= tk.Offset })
	if i == len(rest) || rest[i].offset != tk.Offset {
		return kgo.EpochOffset{}, false
	}
	rest[i].done = true
	if i != 0 {
		return kgo.EpochOffset{}, false
	}
	var last entry
	for pt.head < len(pt.entries) && pt.entries[pt.head].done {
		last = pt.entries[pt.head]
		pt.head++
	}
	// Compact once the finished prefix dominates, keeping Add amortised O(1).
	if pt.head > 1024 && pt.head*2 > len(pt.entries) {
		pt.entries = append(pt.entries[:0], pt.entries[pt.head:]...)
		pt.head = 0
	}
	return kgo.EpochOffset{Epoch: last.epoch, Offset: last.offset + 1}, true
}

// Forget drops a partition (revoked or lost): tickets issued for it before
// are ignored from now on, and a later Add starts afresh.
func (t *Tracker) Forget(p Partition) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.parts, p)
}

// Pending is how many records of p are tracked and not finished.
func (t *Tracker) Pending(p Partition) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	pt := t.parts[p]
	if pt == nil {
		return 0
	}
	n := 0
	for _, e := range pt.entries[pt.head:] {
		if !e.done {
			n++
		}
	}
	return n
}
