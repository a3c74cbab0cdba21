package engine

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/relayhq/relay/pkg/record"
	"github.com/relayhq/relay/pkg/testenv"
)

// refusingProducer answers the first refusals produces with err, then
// acknowledges.
type refusingProducer struct {
	err      error
	refusals int
	calls    int
}

func (p *refusingProducer) Produce(_ context.Context, r *kgo.Record, promise func(*kgo.Record, error)) {
	p.calls++
	if p.calls <= p.refusals {
		promise(r, p.err)
		return
	}
	promise(r, nil)
}

// A record the broker refuses for good (here, a batch over the topic's
// max.message.bytes) is not retried as an outage, in a loop as fast as the
// backoff allows: it waits RefusedWait between tries, is logged as an error
// once, naming the setting to look at, and is counted.
func TestRefusedProduceWaitsForAnOperator(t *testing.T) {
	tooLarge := fmt.Errorf("%w (uncompressed_bytes=1174557)", kerr.MessageTooLarge)
	newEngine := func(p Producer, wait time.Duration) (*Engine, *testenv.LogBuffer) {
		log, logs := testenv.Logger()
		return &Engine{cfg: Config{RefusedWait: wait}, producer: p, retrier: retryLoop{}, log: log, m: NewMetrics(prometheus.NewRegistry())}, logs
	}
	rec := func() *kgo.Record {
		return record.Delivery{Event: record.Event{ID: "evt_big", SourceID: "src_a"}, SubscriptionID: "sub_a", Attempt: 2}.Record("relay.retry.5s")
	}

	t.Run("not tried again before the wait", func(t *testing.T) {
		p := &refusingProducer{err: tooLarge, refusals: 1000}
		e, _ := newEngine(p, time.Hour)
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancel()
		if err := e.produce(ctx, rec()); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("produce returned %v, want the context's end", err)
		}
		if p.calls != 1 {
			t.Fatalf("a refused record was produced %d times within its wait", p.calls)
		}
	})

	t.Run("logged once, counted each time, produced once cured", func(t *testing.T) {
		p := &refusingProducer{err: tooLarge, refusals: 3}
		e, logs := newEngine(p, time.Millisecond)
		if err := e.produce(context.Background(), rec()); err != nil {
			t.Fatal(err)
		}
		if p.calls != 4 {
			t.Fatalf("%d produces, want 3 refused and 1 acknowledged", p.calls)
		}
		if n := testutil.ToFloat64(e.m.refused.WithLabelValues("relay.retry.5s")); n != 3 {
			t.Fatalf("relay_deliver_produce_refused_total %v, want 3", n)
		}
		out := logs.String()
		if n := strings.Count(out, "refused a record for good"); n != 1 {
			t.Fatalf("refusal logged %d times, want once: %s", n, out)
		}
		for _, want := range []string{"level=ERROR", "max.message.bytes", "RELAY_MAX_BODY_BYTES", "event_id=evt_big", "subscription_id=sub_a", "MESSAGE_TOO_LARGE"} {
			if !strings.Contains(out, want) {
				t.Errorf("log lacks %q: %s", want, out)
			}
		}
	})

	t.Run("an outage is retried at once", func(t *testing.T) {
		p := &refusingProducer{err: kerr.NotLeaderForPartition, refusals: 2}
		e, logs := newEngine(p, time.Hour)
		if err := e.produce(context.Background(), rec()); err != nil {
			t.Fatal(err)
		}
		if strings.Contains(logs.String(), "refused a record for good") {
			t.Fatalf("a transient error was logged as a refusal: %s", logs.String())
		}
	})
}
