package consumer

import (
	"context"
	"errors"
	"fmt"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/relayhq/relay/pkg/catalog"
	"github.com/relayhq/relay/pkg/glob"
	"github.com/relayhq/relay/pkg/kafka"
	"github.com/relayhq/relay/pkg/record"
	"github.com/relayhq/relay/services/deliver/internal/engine"
	"github.com/relayhq/relay/services/deliver/internal/offsets"
)

// Events consumes relay.events in group relay-deliver and makes each
// event's first attempt to every enabled subscription whose patterns match
// its type. Each (event, subscription) is its own delivery: a failing
// endpoint gets its own retry chain and never holds back the others.
type Events struct {
	g     *group
	d     Deps
	names record.Topics
	order keyOrder
}

// NewEvents builds the consumer and its client.
func NewEvents(kcfg kafka.Config, names record.Topics, in kafka.Instrumentation, d Deps, o Options) (*Events, error) {
	groupName := names.Group(record.GroupDeliver)
	tracer := in.Tracer("relay-deliver", groupName, false)
	c := &Events{g: newGroup(groupName, tracer, d.Logger, d.Bytes, o), d: d, names: names}
	opts := append(kafka.ConsumerOptions(kcfg, groupName, names.Events), c.g.callbacks()...)
	cl, err := kafka.NewClient(kcfg, "relay-deliver-events", in, tracer, opts...)
	if err != nil {
		return nil, err
	}
	c.g.cl = cl
	return c, nil
}

// Name implements lifecycle.Worker.
func (c *Events) Name() string { return c.g.name }

// Close closes the client, leaving the group: Run does it when it returns.
func (c *Events) Close() { c.g.close() }

// Client is the consumer's Kafka client.
func (c *Events) Client() *kgo.Client { return c.g.cl }

// Run polls until ctx is cancelled, then lets in-flight work finish (up to
// RevokeWait), commits, and leaves the group.
func (c *Events) Run(ctx context.Context) error {
	defer c.Close() // leaves the group; the revoke callback commits
	for {
		if err := c.d.Gate.WaitUp(ctx,
			func() { c.g.cl.PauseFetchTopics(c.names.Events) },
			func() { c.g.cl.ResumeFetchTopics(c.names.Events) }); err != nil {
			return nil
		}
		fetches := c.g.cl.PollRecords(ctx, 500)
		if ctx.Err() != nil || fetches.IsClientClosed() {
			return nil
		}
		fetches.EachError(func(t string, p int32, err error) {
			if !errors.Is(err, context.Canceled) {
				c.d.Logger.Warn("fetch error", "topic", t, "partition", p, "error", err)
			}
		})
		var stop bool
		fetchedIn := c.g.assignment()
		fetches.EachRecord(func(rec *kgo.Record) {
			if stop {
				return
			}
			wk, ok := c.g.start(ctx, rec, fetchedIn[offsets.Partition{Topic: rec.Topic, Partition: rec.Partition}])
			if !ok {
				stop = ctx.Err() != nil
				return
			}
			turn := c.order.next(orderKey(rec))
			go func() {
				done := c.handle(wk.st, rec, turn)
				c.g.finish(wk, done)
			}()
		})
		if stop {
			return nil
		}
	}
}

// orderKey is what orders a record among those handled at once: its
// source and its ordering key; empty for an event without one.
func orderKey(rec *kgo.Record) string {
	key := record.Header(rec, record.HeaderOrderingKey)
	if key == "" {
		return ""
	}
	return record.Header(rec, record.HeaderSourceID) + "\x00" + key
}

// handle fans one event out and reports whether every delivery is settled.
// Its ordered deliveries take their places in their keys' lanes in turn.
func (c *Events) handle(st *partState, rec *kgo.Record, turn *ticket) bool {
	defer turn.done()
	ctx, span := c.g.processContext(st, rec)
	defer span.End()
	ev, err := record.ParseEvent(rec)
	if err != nil {
		// A record Relay cannot read will never become readable: skip it, loudly.
		c.d.Logger.ErrorContext(ctx, "skipping malformed event record", "topic", rec.Topic, "partition", rec.Partition, "offset", rec.Offset, "error", err)
		return true
	}
	var fan catalog.FanOut
	if err := c.d.Gate.Retry(ctx, "load subscriptions", func() error {
		var err error
		fan, err = c.d.Subs.ForSource(ctx, ev.SourceID)
		return err
	}); err != nil {
		return false
	}
	tier0 := c.names.Tiers[0]
	results := make(chan bool, len(fan.Subscriptions)+len(fan.Unreadable))
	n := 0
	for _, u := range fan.Unreadable {
		// Known not to concern it (only its secret is unreadable): nothing
		// to hold. Otherwise hold the event for it alone.
		if u.Decoded && (!u.Enabled || !glob.MatchAny(u.Events, ev.Type)) {
			continue
		}
		n++
		d := record.Delivery{Event: ev, SubscriptionID: u.ID, Attempt: 1, NotBefore: ev.ReceivedAt, Origin: record.OriginHeld}
		go func() { results <- c.d.Engine.Hold(ctx, d, u.Err) == nil }()
	}
	match := newEvent(ctx, ev, "event")
	defer match.done()
	for _, sub := range fan.Subscriptions {
		if !c.d.Filters.concerns(match, sub.Subscription) {
			continue
		}
		n++
		d := record.Delivery{Event: ev, SubscriptionID: sub.ID, Attempt: 1, NotBefore: ev.ReceivedAt}
		if engine.Ordered(d, sub.Subscription) {
			// Behind an earlier event of its key: settled here, brought
			// back when that one settles.
			if !turn.wait(ctx) {
				results <- false
				continue
			}
			if head, settled := queue(ctx, c.d, &d, rec); !head {
				results <- settled
				continue
			}
		}
		go func() { results <- attempt(ctx, c.d, c.names.Tiers, d, sub, tier0) }()
	}
	turn.done()
	ok := true
	for i := 0; i < n; i++ {
		ok = <-results && ok
	}
	return ok
}

// String describes the consumer for logs.
func (c *Events) String() string { return fmt.Sprintf("consumer %s on %s", c.g.name, c.names.Events) }
