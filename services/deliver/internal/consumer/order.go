package consumer

import (
	"context"
	"sync"
)

// keyOrder makes the enqueues of records that share an ordering key happen
// in the order the poll loop, which sees a partition's records in offset
// order, handed them out, although each record is handled on a goroutine of
// its own: every record of a key is on one partition, and its place in its
// key's lane must be its place in that partition.
type keyOrder struct {
	mu   sync.Mutex
	last map[string]chan struct{}
}

// ticket is a record's turn among its key's records.
type ticket struct {
	o    *keyOrder
	key  string
	prev <-chan struct{}
	mine chan struct{}
	once sync.Once
}

// next hands out the turn after the last one handed out for key; the zero
// key takes no turn. The poll loop calls it, in offset order.
func (o *keyOrder) next(key string) *ticket {
	if key == "" {
		return nil
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.last == nil {
		o.last = map[string]chan struct{}{}
	}
	t := &ticket{o: o, key: key, prev: o.last[key], mine: make(chan struct{})}
	o.last[key] = t.mine
	return t
}

// wait blocks until every earlier record of the key is done enqueueing; it
// reports false when ctx ends first.
func (t *ticket) wait(ctx context.Context) bool {
	if t == nil || t.prev == nil {
		return true
	}
	select {
	case <-t.prev:
		return true
	case <-ctx.Done():
		return false
	}
}

// done lets the key's next record enqueue; it may be called more than once.
func (t *ticket) done() {
	if t == nil {
		return
	}
	t.once.Do(func() {
		close(t.mine)
		t.o.mu.Lock()
		if t.o.last[t.key] == t.mine {
			delete(t.o.last, t.key)
		}
		t.o.mu.Unlock()
	})
}
