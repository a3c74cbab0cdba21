package count

import (
	"context"
	"errors"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/relayhq/relay/pkg/backoff"
	"github.com/relayhq/relay/pkg/counters"
	"github.com/relayhq/relay/pkg/record"
)

// Counter is the consumer loop.
type Counter struct {
	cl       *kgo.Client
	store    *counters.Store
	topic    string
	log      *slog.Logger
	now      func() time.Time
	wanted   atomic.Bool
	counted  prometheus.Counter
	failures prometheus.Counter
}

// Name implements lifecycle.Worker.
func (c *Counter) Name() string { return "counter" }

// Run counts until ctx is cancelled.
func (c *Counter) Run(ctx context.Context) error {
	defer c.cl.Close()
	for {
		fetches := c.cl.PollRecords(ctx, 2000)
		if ctx.Err() != nil || fetches.IsClientClosed() {
			c.cl.AllowRebalance()
			return nil
		}
		fetches.EachError(func(t string, p int32, err error) {
			if !errors.Is(err, context.Canceled) {
				c.log.Warn("fetch error", "topic", t, "partition", p, "error", err)
			}
		})
		recs := fetches.Records()
		if err := c.apply(ctx, recs); err != nil {
			// Not counted: fetch the batch again from the committed offsets.
			c.rewind(recs)
		} else if len(recs) > 0 {
			if err := c.cl.CommitRecords(ctx, recs...); err != nil && ctx.Err() == nil {
				c.log.Warn("commit failed; the batch will be read again and skipped by its offsets", "error", err)
			}
		}
		c.cl.AllowRebalance()
	}
}

// apply counts recs: one script per (source, partition), retried while Redis
// is unreachable, unless a rebalance is waiting.
func (c *Counter) apply(ctx context.Context, recs []*kgo.Record) error {
	type key struct {
		src string
		p   int32
	}
	groups := map[key][]counters.Record{}
	var order []key
	for _, r := range recs {
		ev, err := record.ParseEvent(r)
		if err != nil {
			c.log.Error("not counting a malformed record", "partition", r.Partition, "offset", r.Offset, "error", err)
			continue
		}
		k := key{ev.SourceID, r.Partition}
		if _, ok := groups[k]; !ok {
			order = append(order, k)
		}
		groups[k] = append(groups[k], counters.Record{Offset: r.Offset, Type: ev.Type, ReceivedAt: ev.ReceivedAt})
	}
	for _, k := range order {
		// A rebalance waiting is a reason to give up: the partitions may be
		// someone else's by the next try.
		p := backoff.Policy{Initial: 100 * time.Millisecond, Max: 5 * time.Second, Failed: func(err error, failures int) bool {
			c.failures.Inc()
			if backoff.Every(failures, 20) {
				c.log.Warn("counting failed, retrying", "source_id", k.src, "partition", k.p, "error", err)
			}
			return !c.wanted.Load()
		}}
		if _, err := p.Retry(ctx, func(ctx context.Context) error {
			n, err := c.store.Apply(ctx, k.src, k.p, groups[k], c.now())
			if err == nil {
				c.counted.Add(float64(n))
			}
			return err
		}); err != nil {
			return err
		}
	}
	return nil
}

// rewind sends each partition of recs back to its first record, so it is
// fetched and counted again (groups already applied are skipped by offset).
func (c *Counter) rewind(recs []*kgo.Record) {
	first := map[int32]kgo.EpochOffset{}
	for _, r := range recs {
		if cur, ok := first[r.Partition]; !ok || r.Offset < cur.Offset {
			first[r.Partition] = kgo.EpochOffset{Epoch: -1, Offset: r.Offset}
		}
	}
	if len(first) > 0 {
		c.cl.SetOffsets(map[string]map[int32]kgo.EpochOffset{c.topic: first})
	}
}
