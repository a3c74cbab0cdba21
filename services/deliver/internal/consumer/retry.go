package consumer

import (
	"context"
	"errors"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/relayhq/relay/pkg/catalog"
	"github.com/relayhq/relay/pkg/kafka"
	"github.com/relayhq/relay/pkg/record"
	"github.com/relayhq/relay/services/deliver/internal/engine"
	"github.com/relayhq/relay/services/deliver/internal/offsets"
)

// Retries consumes every delay tier and relay.deliveries in group
// relay-deliver-retry. One topic per delay keeps not-before times
// non-decreasing along a partition, so only a partition's head needs
// watching: when it is not due, that partition alone is paused until it is,
// and nothing sleeps while holding the others.
type Retries struct {
	g      *group
	d      Deps
	names  record.Topics
	queues map[offsets.Partition]*held // fetched, not yet due; only the poll loop touches it
	now    func() time.Time
	order  keyOrder
}

// held are a partition's records fetched and not yet due, with the
// assignment they were fetched under: once that assignment ends they are
// dropped, even when the partition is assigned to this member again (the
// new assignment fetches them again from the committed offset).
type held struct {
	st   *partState
	recs []*kgo.Record
}

// NewRetries builds the consumer and its client.
func NewRetries(kcfg kafka.Config, names record.Topics, in kafka.Instrumentation, d Deps, o Options) (*Retries, error) {
	groupName := names.Group(record.GroupDeliverRetry)
	// Each hop of a retry chain starts a new trace linked to the previous one.
	tracer := in.Tracer("relay-deliver", groupName, true)
	c := &Retries{
		g: newGroup(groupName, tracer, d.Logger, d.Bytes, o), d: d, names: names,
		queues: map[offsets.Partition]*held{}, now: time.Now,
	}
	opts := append(kafka.ConsumerOptions(kcfg, groupName, names.RetryInputs()...), c.g.callbacks()...)
	cl, err := kafka.NewClient(kcfg, "relay-deliver-retry", in, tracer, opts...)
	if err != nil {
		return nil, err
	}
	c.g.cl = cl
	return c, nil
}

// Name implements lifecycle.Worker.
func (c *Retries) Name() string { return c.g.name }

// Close closes the client, leaving the group: Run does it when it returns.
func (c *Retries) Close() { c.g.close() }

// Run polls until ctx is cancelled.
func (c *Retries) Run(ctx context.Context) error {
	defer c.Close()
	topics := c.names.RetryInputs()
	for {
		if err := c.d.Gate.WaitUp(ctx,
			func() { c.g.cl.PauseFetchTopics(topics...) },
			func() { c.g.cl.ResumeFetchTopics(topics...) }); err != nil {
			return nil
		}
		// Wake up in time for the earliest held record, or within a second.
		wait := time.Second
		if next, ok := c.nextDue(); ok {
			if d := time.Until(next); d < wait {
				wait = max(d, 5*time.Millisecond)
			}
		}
		pctx, cancel := context.WithTimeout(ctx, wait)
		fetches := c.g.cl.PollRecords(pctx, 500)
		cancel()
		if ctx.Err() != nil || fetches.IsClientClosed() {
			return nil
		}
		fetches.EachError(func(t string, p int32, err error) {
			if !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
				c.d.Logger.Warn("fetch error", "topic", t, "partition", p, "error", err)
			}
		})
		fetchedIn := c.g.assignment()
		fetches.EachRecord(func(rec *kgo.Record) {
			c.hold(rec, fetchedIn[offsets.Partition{Topic: rec.Topic, Partition: rec.Partition}])
		})
		if !c.dispatchDue(ctx) {
			return nil
		}
	}
}

// hold queues rec, fetched under the partition state st, behind the records
// of its partition already held; those of an earlier assignment are dropped.
func (c *Retries) hold(rec *kgo.Record, st *partState) {
	tp := offsets.Partition{Topic: rec.Topic, Partition: rec.Partition}
	q := c.queues[tp]
	if q == nil || q.st != st {
		q = &held{st: st}
		c.queues[tp] = q
	}
	q.recs = append(q.recs, rec)
}

// nextDue is the earliest not-before among held records.
func (c *Retries) nextDue() (time.Time, bool) {
	var next time.Time
	for _, q := range c.queues {
		if len(q.recs) == 0 {
			continue
		}
		if nb := notBefore(q.recs[0]); next.IsZero() || nb.Before(next) {
			next = nb
		}
	}
	return next, !next.IsZero()
}

func notBefore(rec *kgo.Record) time.Time {
	d, err := record.ParseDelivery(rec)
	if err != nil {
		return time.Time{} // malformed: due now, and skipped when handled
	}
	return d.NotBefore
}

// dispatchDue starts every record whose time has come, pausing partitions
// whose head is not due and resuming those with nothing held. Records held
// from an assignment that has ended are dropped first.
func (c *Retries) dispatchDue(ctx context.Context) bool {
	now := c.now()
	for tp, q := range c.queues {
		st := c.g.state(tp)
		if st == nil || st != q.st {
			delete(c.queues, tp) // revoked: the next owner, or the next assignment, reads them again
			continue
		}
		for len(q.recs) > 0 {
			if nb := notBefore(q.recs[0]); nb.After(now) {
				if !st.paused {
					c.g.cl.PauseFetchPartitions(map[string][]int32{tp.Topic: {tp.Partition}})
					st.paused = true
				}
				break
			}
			rec := q.recs[0]
			q.recs[0] = nil
			q.recs = q.recs[1:]
			wk, ok := c.g.start(ctx, rec, q.st)
			if !ok {
				if ctx.Err() != nil {
					return false
				}
				continue
			}
			turn := c.order.next(orderKey(rec))
			go func() {
				done := c.handle(wk.st, rec, turn)
				c.g.finish(wk, done)
			}()
		}
		if len(q.recs) == 0 {
			delete(c.queues, tp)
			if st.paused {
				c.g.cl.ResumeFetchPartitions(map[string][]int32{tp.Topic: {tp.Partition}})
				st.paused = false
			}
		}
	}
	return true
}

// requeued are the origins of the delivery records that join their key's
// lane, when ordered: the others are its head's own (its retries, deferrals
// and waits for its limiter) or the head itself (ordered).
var requeued = map[string]bool{record.OriginReplay: true, record.OriginRedrive: true, record.OriginHeld: true}

// handle makes one retry, replay or redrive attempt. A replay, redrive or
// held delivery of an ordered subscription takes its place in its key's
// lane in turn.
func (c *Retries) handle(st *partState, rec *kgo.Record, turn *ticket) bool {
	defer turn.done()
	ctx, span := c.g.processContext(st, rec)
	defer span.End()
	d, err := record.ParseDelivery(rec)
	if err != nil {
		c.d.Logger.ErrorContext(ctx, "skipping malformed delivery record", "topic", rec.Topic, "partition", rec.Partition, "offset", rec.Offset, "error", err)
		return true
	}
	var sub catalog.SubscriptionWithSecrets
	var found bool
	var unreadable error
	if err := c.d.Gate.Retry(ctx, "load subscription", func() error {
		var err error
		sub, found, err = c.d.Subs.Get(ctx, d.SubscriptionID)
		if catalog.Unreadable(err) {
			unreadable, err = err, nil
		}
		return err
	}); err != nil {
		return false
	}
	if unreadable != nil {
		// Still damaged: hold it again, holding nothing else up.
		return c.d.Engine.Hold(ctx, d, unreadable) == nil
	}
	if !found {
		c.d.Logger.InfoContext(ctx, "dropping delivery to a deleted subscription", "event_id", d.ID, "subscription_id", d.SubscriptionID)
		return true
	}
	if d.Origin == record.OriginHeld {
		// Held at fan-out while the subscription could not be read; now
		// that it can, the event may turn out not to concern it.
		match := newEvent(ctx, d.Event, "held")
		concerns := c.d.Filters.concerns(match, sub.Subscription)
		match.done()
		if !concerns {
			return true
		}
	}
	if engine.Ordered(d, sub.Subscription) && requeued[d.Origin] {
		// A replay, a redrive or a held first attempt of an ordered
		// delivery takes its place behind what its key has queued.
		if !turn.wait(ctx) {
			return false
		}
		if head, settled := queue(ctx, c.d, &d, rec); !head {
			return settled
		}
	}
	turn.done()
	if d.Tier < 0 {
		// Written before records said how far up the ladder they are: the
		// tier they are on does (none for relay.deliveries).
		d.Tier = c.names.TierIndex(rec.Topic) + 1
	}
	// A deferral waits on the tier it stands on (the last, when the ladder
	// has since been shortened), or the first.
	deferTo := c.names.Tiers[min(max(d.Tier-1, 0), len(c.names.Tiers)-1)]
	return attempt(ctx, c.d, c.names.Tiers, d, sub, deferTo)
}
