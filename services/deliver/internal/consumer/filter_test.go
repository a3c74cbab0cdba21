package consumer

import (
	"context"
	"io"
	"log/slog"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/relayhq/relay/pkg/catalog"
	"github.com/relayhq/relay/pkg/record"
)

func TestConcerns(t *testing.T) {
	ev := record.Event{ID: "evt_1", Type: "invoice.paid", Body: []byte(`{"amount":1500}`)}
	sub := func(enabled bool, events []string, filter string) catalog.Subscription {
		return catalog.Subscription{ID: "sub_1", Enabled: enabled, Events: events, Filter: filter}
	}
	for _, c := range []struct {
		name               string
		sub                catalog.Subscription
		want               bool
		rejected, failures float64
	}{
		{"glob, no filter", sub(true, []string{"invoice.*"}, ""), true, 0, 0},
		{"disabled", sub(false, []string{"*"}, ""), false, 0, 0},
		{"glob misses: the filter is not asked", sub(true, []string{"payment.*"}, "true"), false, 0, 0},
		{"filter matches", sub(true, []string{"*"}, "data.amount > 1000"), true, 0, 0},
		{"filter rejects", sub(true, []string{"*"}, "data.amount > 2000"), false, 1, 0},
		{"filter fails: a non-match, counted apart", sub(true, []string{"*"}, "data.customer.id == 'c'"), false, 0, 1},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := NewFilters(prometheus.NewRegistry(), slog.New(slog.NewTextHandler(io.Discard, nil)))
			e := newEvent(context.Background(), ev, "event")
			defer e.done()
			if got := f.concerns(e, c.sub); got != c.want {
				t.Fatalf("concerns = %v, want %v", got, c.want)
			}
			if got := testutil.ToFloat64(f.rejected.WithLabelValues("event")); got != c.rejected {
				t.Errorf("rejected = %v, want %v", got, c.rejected)
			}
			if got := testutil.ToFloat64(f.failed.WithLabelValues("event")); got != c.failures {
				t.Errorf("failures = %v, want %v", got, c.failures)
			}
		})
	}
}
