package consumer

import (
	"context"
	"sync/atomic"

	"github.com/twmb/franz-go/pkg/kgo"
	"golang.org/x/sync/semaphore"
)

// Budget bounds the payload bytes that deliver's consumers hold in records
// being worked on, over both consumer groups: with slow endpoints and large
// bodies, a bound in records alone lets memory grow with the bodies.
// Starting a record waits until its bytes fit.
type Budget struct {
	limit int64
	sem   *semaphore.Weighted
	held  atomic.Int64
}

// NewBudget returns a budget of limit bytes.
func NewBudget(limit int64) *Budget {
	return &Budget{limit: limit, sem: semaphore.NewWeighted(limit)}
}

// Held is the number of bytes charged now.
func (b *Budget) Held() int64 { return b.held.Load() }

// weight is what rec is charged: its key, value and headers. A record larger
// than the whole budget is charged the whole budget, so that it can start
// once nothing else is held.
func (b *Budget) weight(rec *kgo.Record) int64 {
	n := int64(len(rec.Key) + len(rec.Value))
	for _, h := range rec.Headers {
		n += int64(len(h.Key) + len(h.Value))
	}
	return min(n, b.limit)
}

// acquire waits until w bytes fit or ctx ends.
func (b *Budget) acquire(ctx context.Context, w int64) error {
	if err := b.sem.Acquire(ctx, w); err != nil {
		return err
	}
	b.held.Add(w)
	return nil
}

func (b *Budget) release(w int64) {
	b.held.Add(-w)
	b.sem.Release(w)
}
