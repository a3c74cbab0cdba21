// Package valve decides when each delivery to a subscription may be
// attempted (its rate limit, a pause its endpoint asked for, its circuit
// breaker), through the shared state of package throttle, and feeds that
// state with what attempts tell of the endpoint. A subscription with none
// of these costs no Redis round trip: the valve asks Redis only for a
// subscription with a rate limit, one it has seen paused or open, or a
// delivery that was held back before.
package valve

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/relayhq/relay/pkg/catalog"
	"github.com/relayhq/relay/pkg/record"
	"github.com/relayhq/relay/pkg/throttle"
	"github.com/relayhq/relay/services/deliver/internal/alert"
	"github.com/relayhq/relay/services/deliver/internal/outcome"
)

// Store is the shared state (throttle.Store).
type Store interface {
	Admit(ctx context.Context, sub string, l throttle.Limit, now time.Time) (throttle.Ticket, error)
	Pause(ctx context.Context, sub string, until, now time.Time) error
	Failed(ctx context.Context, sub string, now time.Time) (throttle.Breaker, error)
	Succeeded(ctx context.Context, sub string) (bool, error)
}

// Disabler turns a subscription off (subs.Subs).
type Disabler interface {
	Disable(ctx context.Context, id, reason string) error
}

// Alerter hears of subscriptions disabled for a long outage.
type Alerter interface {
	NotifyDisabled(alert.Disabled)
}

// Config tunes the valve.
type Config struct {
	// DisableAfter is how long a circuit may stay open before its
	// subscription is disabled (0: never).
	DisableAfter time.Duration
	// ResetEvery is how often, at most, a success is written to reset the
	// count of failures of a subscription this replica has seen nothing
	// wrong with: often enough that "in a row" holds across replicas, rarely
	// enough to cost nothing at volume (default 5s).
	ResetEvery time.Duration
}

// Deps are the valve's collaborators.
type Deps struct {
	Store    Store
	Disabler Disabler
	// Alerts may be nil.
	Alerts Alerter
	Logger *slog.Logger
	Reg    prometheus.Registerer
}

// Valve is safe for concurrent use.
type Valve struct {
	cfg Config
	d   Deps

	mu sync.Mutex
	// watch holds the subscriptions known here to be paused or open, until
	// when: their deliveries ask Redis, whatever their limit.
	watch map[string]time.Time
	// reset is when a success of each subscription was last written.
	reset map[string]time.Time

	held        *prometheus.CounterVec
	transitions *prometheus.CounterVec
	disabled    prometheus.Counter
}

// New returns a Valve.
func New(cfg Config, d Deps) *Valve {
	if cfg.ResetEvery <= 0 {
		cfg.ResetEvery = 5 * time.Second
	}
	v := &Valve{
		cfg: cfg, d: d, watch: map[string]time.Time{}, reset: map[string]time.Time{},
		held: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "relay_deliver_throttled_total",
			Help: "Deliveries held back without spending an attempt, by reason: rate_limit, paused (a 429's Retry-After), circuit_open.",
		}, []string{"reason"}),
		transitions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "relay_deliver_circuit_transitions_total", Help: "Subscription circuits opened (a run of failures, or a failed probe) and closed (a successful probe).",
		}, []string{"to"}),
		disabled: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "relay_deliver_subscriptions_auto_disabled_total",
			Help: "Subscriptions disabled because their circuit stayed open for RELAY_BREAKER_DISABLE_AFTER.",
		}),
	}
	for _, r := range []string{"rate_limit", "paused", "circuit_open"} {
		v.held.WithLabelValues(r)
	}
	v.transitions.WithLabelValues("open")
	v.transitions.WithLabelValues("closed")
	d.Reg.MustRegister(v.held, v.transitions, v.disabled)
	return v
}

// Limit is sub's rate limit as the store takes it.
func Limit(sub catalog.Subscription) throttle.Limit {
	if sub.RateLimit == nil {
		return throttle.Limit{}
	}
	return throttle.Limit{Interval: sub.RateLimit.Interval(), Burst: sub.RateLimit.Burst}
}

// watched reports whether sub is known here to be paused or open.
func (v *Valve) watched(sub string, now time.Time) bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	until, ok := v.watch[sub]
	if ok && now.After(until.Add(time.Minute)) {
		delete(v.watch, sub)
		return false
	}
	return ok
}

func (v *Valve) watchUntil(sub string, until time.Time) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if len(v.watch) > 100_000 {
		clear(v.watch)
	}
	if until.After(v.watch[sub]) {
		v.watch[sub] = until
	}
}

// Slot is When's answer: when a delivery may be attempted, and whether
// that time is reserved for it (a rate limit's slot, which it keeps while
// it waits) or only the end of a wait it must ask again after (a pause, an
// open circuit).
type Slot struct {
	At       time.Time
	Reserved bool
}

// When returns the time delivery d to sub may be attempted: now, or later.
// A throttled delivery keeps the time reserved for it unless it fell more
// than outcome.Late behind it, or the subscription was paused or opened
// since.
func (v *Valve) When(ctx context.Context, d record.Delivery, sub catalog.Subscription, now time.Time) (Slot, error) {
	watched := v.watched(sub.ID, now)
	switch {
	case !d.Slot.IsZero() && now.Sub(d.Slot) <= outcome.Late && !watched:
		return Slot{At: d.Slot, Reserved: true}, nil
	case sub.RateLimit == nil && !watched && d.Origin != record.OriginThrottled:
		return Slot{At: now}, nil
	}
	t, err := v.d.Store.Admit(ctx, sub.ID, Limit(sub), now)
	if err != nil {
		return Slot{}, err
	}
	switch t.Verdict {
	case throttle.Open, throttle.Probing:
		v.watchUntil(sub.ID, t.At)
		v.held.WithLabelValues("circuit_open").Inc()
		return Slot{At: t.At}, nil
	case throttle.Probe:
		return Slot{At: now}, nil
	}
	if !t.At.After(now) {
		return Slot{At: now, Reserved: sub.RateLimit != nil}, nil
	}
	if sub.RateLimit == nil {
		v.watchUntil(sub.ID, t.At)
		v.held.WithLabelValues("paused").Inc()
		return Slot{At: t.At}, nil
	}
	v.held.WithLabelValues("rate_limit").Inc()
	return Slot{At: t.At, Reserved: true}, nil
}

// Observe feeds what an attempt to sub's endpoint answered to the shared
// state: a run of failures opens its circuit (a long-open one disables the
// subscription), a success closes it, a 429's Retry-After pauses every
// delivery to it. It never fails the delivery: the attempt's outcome is
// settled already, and an error is only logged.
func (v *Valve) Observe(ctx context.Context, sub catalog.Subscription, a *outcome.Answer, now time.Time) {
	health, pause := outcome.Judge(a, now)
	if pause > 0 {
		if err := v.d.Store.Pause(ctx, sub.ID, now.Add(pause), now); err != nil {
			v.d.Logger.WarnContext(ctx, "recording an endpoint's Retry-After failed", "subscription_id", sub.ID, "error", err)
		} else {
			v.watchUntil(sub.ID, now.Add(pause))
		}
	}
	switch health {
	case outcome.Up:
		if !v.resetDue(sub.ID, now) {
			return
		}
		closed, err := v.d.Store.Succeeded(ctx, sub.ID)
		if err != nil {
			v.d.Logger.WarnContext(ctx, "resetting a subscription's failures failed", "subscription_id", sub.ID, "error", err)
			return
		}
		if closed {
			v.transitions.WithLabelValues("closed").Inc()
			v.d.Logger.InfoContext(ctx, "circuit closed: the endpoint answered its probe", "subscription_id", sub.ID)
		}
	case outcome.Down:
		b, err := v.d.Store.Failed(ctx, sub.ID, now)
		if err != nil {
			v.d.Logger.WarnContext(ctx, "counting a failed attempt for the circuit breaker failed", "subscription_id", sub.ID, "error", err)
			return
		}
		v.forgetReset(sub.ID)
		if b.OpenUntil.IsZero() {
			return
		}
		v.watchUntil(sub.ID, b.OpenUntil)
		if b.Opened {
			v.transitions.WithLabelValues("open").Inc()
			v.d.Logger.WarnContext(ctx, "circuit open: deliveries to the subscription wait, spending no attempt, until a probe succeeds",
				"subscription_id", sub.ID, "failures_in_a_row", b.Fails, "probe_at", b.OpenUntil, "open_since", b.OpenedAt)
		}
		if v.cfg.DisableAfter > 0 && !b.OpenedAt.IsZero() && now.Sub(b.OpenedAt) >= v.cfg.DisableAfter {
			v.disable(ctx, sub, b.OpenedAt)
		}
	}
}

// resetDue reports whether a success of sub should be written: it is
// watched, or the last was written ResetEvery ago.
func (v *Valve) resetDue(sub string, now time.Time) bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	if _, watched := v.watch[sub]; watched {
		delete(v.watch, sub)
		v.reset[sub] = now
		return true
	}
	if last, ok := v.reset[sub]; ok && now.Sub(last) < v.cfg.ResetEvery {
		return false
	}
	if len(v.reset) > 100_000 {
		clear(v.reset)
	}
	v.reset[sub] = now
	return true
}

func (v *Valve) forgetReset(sub string) {
	v.mu.Lock()
	defer v.mu.Unlock()
	delete(v.reset, sub)
}

// disable turns off a subscription whose circuit has been open since
// since: its deliveries in flight are parked in the DLQ as they come back
// (subscription_disabled), and the operator is told.
func (v *Valve) disable(ctx context.Context, sub catalog.Subscription, since time.Time) {
	reason := "circuit open since " + since.UTC().Format(time.RFC3339) + " (RELAY_BREAKER_DISABLE_AFTER)"
	if err := v.d.Disabler.Disable(ctx, sub.ID, reason); err != nil {
		v.d.Logger.WarnContext(ctx, "disabling a subscription whose circuit stayed open failed", "subscription_id", sub.ID, "error", err)
		return
	}
	v.disabled.Inc()
	v.d.Logger.ErrorContext(ctx, "subscription disabled: its circuit stayed open; its pending deliveries go to the DLQ as subscription_disabled",
		"subscription_id", sub.ID, "source_id", sub.SourceID, "open_since", since)
	if v.d.Alerts != nil {
		v.d.Alerts.NotifyDisabled(alert.Disabled{SubscriptionID: sub.ID, SourceID: sub.SourceID, Reason: "circuit_open", OpenSince: since.UTC()})
	}
}
