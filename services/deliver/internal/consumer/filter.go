package consumer

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/relayhq/relay/pkg/catalog"
	"github.com/relayhq/relay/pkg/filter"
	"github.com/relayhq/relay/pkg/glob"
	"github.com/relayhq/relay/pkg/record"
)

// FilterTimeout bounds the evaluation of every filter of one event
// together, on top of each one's cost limit (which bounds the work). It is
// far above what they take even on a starved CPU: a filter that times out
// is a non-match, and a machine under load must not drop deliveries.
const FilterTimeout = time.Second

// Filters decides which subscriptions an event concerns: enabled, one of
// their patterns matching its type, and their filter (if any) matching it.
// It counts what filters reject and the evaluations that fail, and logs a
// failing subscription's error once a minute.
type Filters struct {
	rejected *prometheus.CounterVec
	failed   *prometheus.CounterVec
	log      *slog.Logger
	mu       sync.Mutex
	logged   map[string]time.Time
}

// NewFilters registers the filter metrics with reg.
func NewFilters(reg prometheus.Registerer, log *slog.Logger) *Filters {
	f := &Filters{
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "relay_deliver_filtered_total", Help: "Events a subscription's filter did not match, so no delivery was made (origin: event, held).",
		}, []string{"origin"}),
		failed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "relay_deliver_filter_errors_total",
			Help: "Filter evaluations that failed (a missing key, the cost limit, the time limit): the event does not match.",
		}, []string{"origin"}),
		log: log, logged: map[string]time.Time{},
	}
	for _, o := range []string{"event", "held"} {
		f.rejected.WithLabelValues(o)
		f.failed.WithLabelValues(o)
	}
	reg.MustRegister(f.rejected, f.failed)
	return f
}

// event is one event being matched against its source's subscriptions: its
// filter input is prepared once and shared, and every filter it meets
// shares one deadline.
type event struct {
	ev     record.Event
	origin string
	in     *filter.Input
	ctx    context.Context
	cancel context.CancelFunc
}

func newEvent(ctx context.Context, ev record.Event, origin string) *event {
	return &event{ev: ev, origin: origin, ctx: ctx}
}

func (e *event) done() {
	if e.cancel != nil {
		e.cancel()
	}
}

// concerns reports whether the event concerns sub.
func (f *Filters) concerns(e *event, sub catalog.Subscription) bool {
	if !sub.Enabled || !glob.MatchAny(sub.Events, e.ev.Type) {
		return false
	}
	if sub.Filter == "" {
		return true
	}
	prg, err := catalog.Filters.Get(sub.Filter)
	if err == nil {
		if e.in == nil {
			e.in = filter.NewInput(e.ev)
			e.ctx, e.cancel = context.WithTimeout(e.ctx, FilterTimeout)
		}
		var ok bool
		if ok, err = prg.Match(e.ctx, e.in); err == nil {
			if !ok {
				f.rejected.WithLabelValues(e.origin).Inc()
			}
			return ok
		}
	}
	// The catalog refuses a filter that does not compile, so err is an
	// evaluation's: a non-match, counted and logged.
	f.failed.WithLabelValues(e.origin).Inc()
	if f.first(sub.ID, time.Now()) {
		f.log.WarnContext(e.ctx, "a subscription's filter failed on an event, which it therefore does not match (use has() for optional fields)",
			"subscription_id", sub.ID, "event_id", e.ev.ID, "event_type", e.ev.Type, "error", err)
	}
	return false
}

// first reports whether sub's failure at now is the first in a minute.
func (f *Filters) first(sub string, now time.Time) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.logged) > 10000 {
		f.logged = map[string]time.Time{}
	}
	if at, ok := f.logged[sub]; ok && now.Sub(at) < time.Minute {
		return false
	}
	f.logged[sub] = now
	return true
}
