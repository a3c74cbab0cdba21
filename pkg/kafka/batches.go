package kafka

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// Batches is a consumer group member that commits by hand, for consumers
// that settle what they poll in batches and commit only once it is settled
// (archive, count). Rebalances wait until its loop is between polls, so a
// batch is settled and committed by the member that polled it; a handler
// stuck retrying an outage gives way when Wanted says a rebalance waits,
// and Rewind sends a partition back to records not settled, so they are
// fetched again. Build it, pass Options to the client, then SetClient.
type Batches struct {
	// Topic is the one topic consumed.
	Topic string
	// MaxRecords bounds one poll.
	MaxRecords int
	// Wait, when set, bounds how long a poll waits for records (a handler
	// that flushes on time needs to be called without them); nil waits
	// until there are records.
	Wait func() time.Duration
	// Handle settles one poll's records (none when a poll timed out). It
	// commits what it settled (Commit) or rewinds what it did not.
	Handle func(ctx context.Context, recs []*kgo.Record) error
	// Dropped, when set, hears of partitions revoked or lost: whatever the
	// handler held of them is no longer its to settle.
	Dropped func(partitions []int32)
	Log     *slog.Logger

	cl        *kgo.Client
	wanted    atomic.Bool
	closeOnce sync.Once
}

// Close closes the client once, leaving the group: Run does it as it
// returns, the service when it is never run.
func (b *Batches) Close() { b.closeOnce.Do(b.cl.Close) }

// Options are the group options Batches needs on its client.
func (b *Batches) Options() []kgo.Opt {
	drop := func(_ context.Context, _ *kgo.Client, ps map[string][]int32) {
		if b.Dropped != nil && len(ps[b.Topic]) > 0 {
			b.Dropped(ps[b.Topic])
		}
		b.wanted.Store(false)
	}
	return []kgo.Opt{
		kgo.DisableAutoCommit(),
		kgo.BlockRebalanceOnPoll(),
		kgo.OnPartitionsCallbackBlocked(func(context.Context, *kgo.Client) { b.wanted.Store(true) }),
		kgo.OnPartitionsRevoked(drop),
		kgo.OnPartitionsLost(drop),
	}
}

// SetClient sets the client Batches consumes with.
func (b *Batches) SetClient(cl *kgo.Client) { b.cl = cl }

// Wanted reports whether a rebalance waits for the loop to be between polls.
func (b *Batches) Wanted() bool { return b.wanted.Load() }

// Commit commits past recs. A failure is only logged: the records are read
// again, and the handler must already make that harmless.
func (b *Batches) Commit(ctx context.Context, recs ...*kgo.Record) {
	if len(recs) == 0 {
		return
	}
	if err := b.cl.CommitRecords(ctx, recs...); err != nil && ctx.Err() == nil {
		b.Log.Warn("commit failed; the records will be read again", "topic", b.Topic, "error", err)
	}
}

// Rewind sends each partition back to the given offset, so that it is
// fetched again from there.
func (b *Batches) Rewind(to map[int32]int64) {
	if len(to) == 0 {
		return
	}
	at := make(map[int32]kgo.EpochOffset, len(to))
	for p, o := range to {
		at[p] = kgo.EpochOffset{Epoch: -1, Offset: o}
	}
	b.cl.SetOffsets(map[string]map[int32]kgo.EpochOffset{b.Topic: at})
}

// FirstOffsets is the first offset of each partition among recs: where to
// rewind to so that all of them are fetched again.
func FirstOffsets(recs []*kgo.Record) map[int32]int64 {
	first := map[int32]int64{}
	for _, r := range recs {
		if cur, ok := first[r.Partition]; !ok || r.Offset < cur {
			first[r.Partition] = r.Offset
		}
	}
	return first
}

// Run polls and hands each poll to Handle until ctx is cancelled, then
// closes the client, leaving the group. Records polled and not settled at
// shutdown are read again by the next owner.
func (b *Batches) Run(ctx context.Context) error {
	defer b.Close()
	for {
		pctx, cancel := ctx, context.CancelFunc(func() {})
		if b.Wait != nil {
			pctx, cancel = context.WithTimeout(ctx, b.Wait())
		}
		fetches := b.cl.PollRecords(pctx, b.MaxRecords)
		cancel()
		if ctx.Err() != nil || fetches.IsClientClosed() {
			b.cl.AllowRebalance()
			return nil
		}
		fetches.EachError(func(t string, p int32, err error) {
			if !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
				b.Log.Warn("fetch error", "topic", t, "partition", p, "error", err)
			}
		})
		err := b.Handle(ctx, fetches.Records())
		b.cl.AllowRebalance()
		if err != nil && ctx.Err() != nil {
			return nil
		}
	}
}
