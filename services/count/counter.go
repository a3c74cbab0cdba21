package count

import (
	"context"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/relayhq/relay/pkg/backoff"
	"github.com/relayhq/relay/pkg/counters"
	"github.com/relayhq/relay/pkg/kafka"
	"github.com/relayhq/relay/pkg/record"
)

// Counter counts what its Batches consumer polls.
type Counter struct {
	batches  *kafka.Batches
	store    *counters.Store
	log      *slog.Logger
	now      func() time.Time
	counted  prometheus.Counter
	failures prometheus.Counter
}

// Name implements lifecycle.Worker.
func (c *Counter) Name() string { return "counter" }

// Run counts until ctx is cancelled.
func (c *Counter) Run(ctx context.Context) error { return c.batches.Run(ctx) }

// handle counts one poll and commits it, or, when it could not be counted,
// sends it back to be fetched again from the committed offsets (groups
// already applied are skipped by their offsets).
func (c *Counter) handle(ctx context.Context, recs []*kgo.Record) error {
	if err := c.apply(ctx, recs); err != nil {
		c.batches.Rewind(kafka.FirstOffsets(recs))
		return err
	}
	c.batches.Commit(ctx, recs...)
	return nil
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
			return !c.batches.Wanted()
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
