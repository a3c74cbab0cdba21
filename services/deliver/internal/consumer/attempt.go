package consumer

import (
	"context"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/relayhq/relay/pkg/backoff"
	"github.com/relayhq/relay/pkg/catalog"
	"github.com/relayhq/relay/pkg/lanes"
	"github.com/relayhq/relay/pkg/record"
	"github.com/relayhq/relay/services/deliver/internal/dispatch"
	"github.com/relayhq/relay/services/deliver/internal/outcome"
	"github.com/relayhq/relay/services/deliver/internal/valve"
)

// queue puts delivery d of an ordered subscription, whose record is rec,
// in its key's lane (engine.Order). It reports whether d is the key's head,
// to be attempted now, and whether its record is settled otherwise (false:
// ctx ended first).
func queue(ctx context.Context, deps Deps, d *record.Delivery, rec *kgo.Record) (head, settled bool) {
	head, err := deps.Engine.Order(ctx, d, lanes.Entry{Topic: rec.Topic, Partition: rec.Partition, Offset: rec.Offset})
	return head, err == nil
}

// attempt makes delivery d to sub when the subscription's valve lets it:
// now (through the dispatcher, or deferred to deferTo when its backlog is
// full), or, held back by its rate limit, a pause or an open circuit, put on
// a tier to wait, spending no attempt and holding nothing here. It reports
// whether the record is settled. A disabled subscription's delivery goes
// straight on, to be parked.
func attempt(ctx context.Context, deps Deps, tiers []record.Tier, d record.Delivery, sub catalog.SubscriptionWithSecrets, deferTo record.Tier) bool {
	for sub.Enabled {
		now := time.Now()
		var slot valve.Slot
		if err := deps.Gate.Retry(ctx, "admit delivery", func() (err error) {
			slot, err = deps.Valve.When(ctx, d, sub.Subscription, now)
			return err
		}); err != nil {
			return false
		}
		// The last stretch to a reserved time is waited out here when the
		// room has a place.
		stay, size := time.Duration(0), len(d.Body)
		if wait := slot.At.Sub(now); slot.Reserved && wait > outcome.Nap && wait <= tiers[0].Delay && deps.Waiting.enter(size) {
			stay = wait
		}
		hop := outcome.Throttled(now, slot.At, tiers, stay)
		if !hop.Now {
			return deps.Engine.Throttle(ctx, d, hop, slot.At, slot.Reserved) == nil
		}
		if hop.Sleep == 0 {
			break
		}
		slept := backoff.Sleep(ctx, hop.Sleep)
		if stay > 0 {
			deps.Waiting.leave(size)
		}
		if !slept {
			return false
		}
		if slot.Reserved {
			break
		}
		// The end of a pause or of an open circuit, not a time of its own:
		// ask again, to be the probe or to wait for it.
	}
	return run(ctx, deps.Dispatcher, sub.ID,
		func(ctx context.Context) (dispatch.Answer, error) { return deps.Engine.Deliver(ctx, d, sub) },
		func() error { return deps.Engine.Defer(ctx, d, deferTo.Topic, deferTo.Delay) })
}
