package lanes

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/relayhq/relay/pkg/kafka"
	"github.com/relayhq/relay/pkg/payloads"
	"github.com/relayhq/relay/pkg/record"
)

// Reader reads a record by its coordinates (payloads.Reader).
type Reader interface {
	RecordAt(ctx context.Context, topic string, partition int32, offset int64) (*kgo.Record, error)
}

// Advancer moves lanes on: whatever settles a head (deliver, once it is
// delivered or parked under "skip"; ingest, when a DLQ entry blocking its
// key is discarded) calls Advance before the head counts as done.
type Advancer struct {
	*Store
	Reader   Reader
	Producer kafka.Producer
	// Topic is where the next head's record goes (relay.deliveries), and
	// Events is relay.events, whose records are events rather than
	// deliveries.
	Topic, Events string
	Log           *slog.Logger
	// Now is the clock (time.Now unless set).
	Now func() time.Time
}

// Advance moves the lane of (sub, key) past evt, if evt is its head: the
// next waiting event becomes the head, its delivery's record produced to
// Topic (origin "ordered") before the lane says so. It is idempotent: asked
// again after a crash, it finds the lane moved on, or produces the same
// record again, which deliver makes once (the record carries its attempt).
// A waiting event whose record Kafka no longer has (the lane outlived the
// topic's retention) is skipped, with an error in the log.
func (a *Advancer) Advance(ctx context.Context, sub, key, evt string) error {
	now := a.now()
	promoted := ""
	for {
		next, err := a.Store.step(ctx, sub, key, evt, promoted, now)
		if err != nil || next == "" {
			return err
		}
		// skip promotes an entry no delivery can be made of, and moves on
		// past it as if it had settled.
		skip := func(msg string, args ...any) error {
			a.Log.ErrorContext(ctx, msg, append([]any{"subscription_id", sub, "ordering_key", key, "entry", next}, args...)...)
			_, err := a.Store.step(ctx, sub, key, evt, next, now)
			evt, promoted = entryEvent(next), ""
			return err
		}
		e, err := ParseEntry(next)
		if err != nil {
			if err := skip("skipping an unreadable lane entry", "error", err); err != nil {
				return err
			}
			continue
		}
		rec, err := a.Reader.RecordAt(ctx, e.Topic, e.Partition, e.Offset)
		if errors.Is(err, payloads.ErrExpired) {
			if err := skip("an ordered delivery's record is gone from Kafka (retention) while it waited; skipping it"); err != nil {
				return err
			}
			continue
		}
		if err != nil {
			return fmt.Errorf("reading the next event of lane %s/%q: %w", sub, key, err)
		}
		d, err := a.delivery(rec, e, sub, now)
		if err != nil {
			if err := skip("skipping a lane entry whose record does not read", "error", err); err != nil {
				return err
			}
			continue
		}
		r := d.Record(a.Topic)
		// Keyed by subscription and key rather than subscription alone,
		// so that one ordered subscription's keys spread over the topic's
		// partitions, and so over the deliver replicas.
		r.Key = []byte(sub + "|" + key)
		r.Context = ctx
		if err := kafka.ProduceAndWait(ctx, a.Producer, r); err != nil {
			return fmt.Errorf("producing the next event of lane %s/%q: %w", sub, key, err)
		}
		promoted = next
	}
}

// delivery is the delivery of entry e to sub that its record rec makes,
// now at the front of its key's queue.
func (a *Advancer) delivery(rec *kgo.Record, e Entry, sub string, now time.Time) (record.Delivery, error) {
	var d record.Delivery
	if rec.Topic == a.Events {
		ev, err := record.ParseEvent(rec)
		if err != nil {
			return d, err
		}
		d = record.Delivery{Event: ev, SubscriptionID: sub}
	} else {
		var err error
		if d, err = record.ParseDelivery(rec); err != nil {
			return d, err
		}
	}
	if d.ID != e.Event || d.SubscriptionID != sub {
		return d, fmt.Errorf("%w: the record at %s/%d@%d is %s for %s, not the lane's %s", record.ErrMalformed, e.Topic, e.Partition, e.Offset, d.ID, d.SubscriptionID, e.Event)
	}
	d.Attempt, d.NotBefore, d.Origin, d.HeadSince, d.Tier, d.Slot = e.Attempt, now, record.OriginOrdered, now, 0, time.Time{}
	return d, nil
}

func (a *Advancer) now() time.Time {
	if a.Now != nil {
		return a.Now()
	}
	return time.Now()
}

// entryEvent is the event an entry names, read even from one that does
// not parse.
func entryEvent(entry string) string {
	evt, _, _ := strings.Cut(entry, "|")
	return evt
}
