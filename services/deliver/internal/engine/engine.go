// Package engine makes one delivery attempt and settles its outcome
// durably: the next tier or the DLQ is produced (and acknowledged) before the
// state records the outcome, and the record is reported done only after both.
// The consumers feed it; it is the same for first attempts, retries, replays
// and redrives. What to do at each point is outcome.Decide's, a pure
// function; the engine carries it out through the small interfaces declared
// here, which the fakes in its tests stand in for.
package engine

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/relayhq/relay/pkg/backoff"
	"github.com/relayhq/relay/pkg/catalog"
	"github.com/relayhq/relay/pkg/delivery"
	"github.com/relayhq/relay/pkg/kafka"
	"github.com/relayhq/relay/pkg/lanes"
	"github.com/relayhq/relay/pkg/record"
	"github.com/relayhq/relay/services/deliver/internal/alert"
	"github.com/relayhq/relay/services/deliver/internal/dispatch"
	"github.com/relayhq/relay/services/deliver/internal/outcome"
	"github.com/relayhq/relay/services/deliver/internal/sender"
)

// Producer is what the engine needs of a Kafka client.
type Producer = kafka.Producer

// States is the delivery state store (delivery.Store) as the engine uses it.
type States interface {
	Begin(ctx context.Context, evt, sub string, attempt int, token string, leaseFor time.Duration) (string, int, error)
	Finish(ctx context.Context, evt, sub, token string, r delivery.Result) error
	Park(ctx context.Context, evt, sub, token, reason string, now time.Time) error
	Schedule(ctx context.Context, evt, sub string, at, now time.Time) error
	Throttle(ctx context.Context, evt, sub string, at time.Time) error
	Wait(ctx context.Context, evt, sub, behind string, attempt int) error
	Release(ctx context.Context, evt, sub, token string) error
	Get(ctx context.Context, evt, sub string) (delivery.State, bool, error)
}

// Lanes are the per-key queues of ordered subscriptions (lanes.Advancer).
type Lanes interface {
	Enqueue(ctx context.Context, sub, key string, e lanes.Entry, now time.Time) (lanes.Position, error)
	Advance(ctx context.Context, sub, key, evt string) error
}

// Sender makes the POST (sender.Sender).
type Sender interface {
	Send(ctx context.Context, r sender.Request) sender.Response
}

// Disabler turns off a subscription whose endpoint is gone (subs.Subs).
type Disabler interface {
	Disable(ctx context.Context, id, reason string) error
}

// Retrier retries a state store call until it succeeds or ctx ends
// (gate.Gate, which also pauses consumption while Redis is down).
type Retrier interface {
	Retry(ctx context.Context, what string, fn func() error) error
}

// Observer hears what each attempt answered (valve.Valve: the circuit
// breaker and the endpoint's Retry-After).
type Observer interface {
	Observe(ctx context.Context, sub catalog.Subscription, a *outcome.Answer, now time.Time)
}

// Alerter hears about deliveries that went dead.
type Alerter interface {
	Notify(alert.Dead)
}

// Config tunes the engine.
type Config struct {
	Names record.Topics
	// LeaseFor is how long a worker owns an attempt; it must exceed the
	// delivery timeout so a live worker never loses its lease mid-POST.
	LeaseFor time.Duration
	// RefusedWait is how long a record the broker refused for good waits
	// before it is produced again (default 1m): only an operator can cure a
	// refusal (a topic's max.message.bytes, an ACL), and trying sooner would
	// only burn CPU and fill the log.
	RefusedWait time.Duration
	// BusyWait is how long a worker waits before asking again for an
	// attempt another worker holds (default 500ms).
	BusyWait time.Duration
}

// Engine makes deliveries.
type Engine struct {
	cfg      Config
	states   States
	disabler Disabler
	sender   Sender
	producer Producer
	retrier  Retrier
	alerts   Alerter
	observer Observer
	m        *Metrics
	log      *slog.Logger
	now      func() time.Time
	holds    holdLog
	lanes    Lanes
}

// Deps are the engine's collaborators.
type Deps struct {
	States   States
	Disabler Disabler
	Sender   Sender
	Producer Producer
	Retrier  Retrier
	// Alerts and Observer may be nil.
	Alerts   Alerter
	Observer Observer
	// Lanes keep ordered subscriptions' keys in order.
	Lanes   Lanes
	Metrics *Metrics
	Logger  *slog.Logger
	// Now is the clock (time.Now unless set).
	Now func() time.Time
}

// New returns an Engine.
func New(cfg Config, d Deps) *Engine {
	if cfg.RefusedWait <= 0 {
		cfg.RefusedWait = time.Minute
	}
	if cfg.BusyWait <= 0 {
		cfg.BusyWait = 500 * time.Millisecond
	}
	if d.Now == nil {
		d.Now = time.Now
	}
	// Every topic the engine writes to, so that an alert on refusals sees
	// a zero before the first one.
	for _, t := range cfg.Names.Tiers {
		d.Metrics.refused.WithLabelValues(t.Topic)
	}
	d.Metrics.refused.WithLabelValues(cfg.Names.DLQ)
	return &Engine{
		cfg: cfg, states: d.States, disabler: d.Disabler, sender: d.Sender, producer: d.Producer, retrier: d.Retrier,
		alerts: d.Alerts, observer: d.Observer, m: d.Metrics, log: d.Logger, now: d.Now, lanes: d.Lanes,
	}
}

// Deliver settles attempt d.Attempt of delivery d to sub; d.Tier says how
// far up the ladder it is. It returns a nil error once the record is done
// with: delivered, forwarded to its next tier or the DLQ, or skipped as
// already settled. It returns an error only when ctx ended first; the record
// must then be redone. The answer says how long the endpoint took to
// answer the attempt (0 when none was made) and whether it was overloaded.
// What to do at each point is outcome.Decide's; the engine only carries it
// out.
func (e *Engine) Deliver(ctx context.Context, d record.Delivery, sub catalog.SubscriptionWithSecrets) (dispatch.Answer, error) {
	span := trace.SpanFromContext(ctx)
	span.SetAttributes(
		attribute.String("relay.event_id", d.ID), attribute.String("relay.subscription_id", sub.ID),
		attribute.Int("relay.attempt", d.Attempt),
	)
	token := newToken()
	s := outcome.Situation{Record: d, Enabled: sub.Enabled, Tiers: e.cfg.Names.Tiers, DLQ: e.cfg.Names.DLQ, MaxAttempts: sub.MaxAttempts}
	var step outcome.Step
	for {
		if err := e.retrier.Retry(ctx, "begin delivery", func() (err error) {
			s.Begun, _, err = e.states.Begin(ctx, d.ID, sub.ID, d.Attempt, token, e.cfg.LeaseFor)
			return err
		}); err != nil {
			return dispatch.Answer{}, err
		}
		s.Now = e.now()
		if step = outcome.Decide(s); step.Action != outcome.Wait {
			break
		}
		// Another worker is on this very attempt (a redelivery during a
		// rebalance). Wait for it to finish or for its lease to lapse.
		e.m.leaseWaits.Inc()
		if !backoff.Sleep(ctx, e.cfg.BusyWait) {
			return dispatch.Answer{}, ctx.Err()
		}
	}
	switch step.Action {
	case outcome.Skip:
		e.m.outcomes.WithLabelValues(step.Outcome).Inc()
		return dispatch.Answer{}, e.settledBefore(ctx, d, sub.Subscription, step)
	case outcome.Park:
		return dispatch.Answer{}, e.carry(ctx, d, sub.Subscription, token, step, 0)
	}

	now := e.now()
	resp := e.sender.Send(ctx, sender.Request{
		URL: sub.URL, Body: d.Body, ContentType: d.ContentType, EventID: d.ID, EventType: d.Type,
		Attempt: d.Attempt, Secrets: sub.Secrets.Active(now), Forwarded: d.Forwarded, Header: sub.Headers, Now: now,
	})
	s.Now = now
	s.Answer = &outcome.Answer{
		Status: resp.Status, Header: resp.Header, Body: resp.Body, Latency: resp.Latency, Err: resp.Err,
		Cancelled: resp.Err != nil && ctx.Err() != nil,
	}
	step = outcome.Decide(s)
	answer := dispatch.Answer{Took: resp.Latency, Overload: outcome.Overloaded(*s.Answer)}
	if step.Action == outcome.Abandon {
		// Shutting down or revoked mid-attempt: nothing is settled, the
		// record comes back; let the next owner start at once.
		e.release(d, sub.ID, token)
		return dispatch.Answer{Took: resp.Latency}, ctx.Err()
	}
	if e.observer != nil {
		e.observer.Observe(ctx, sub.Subscription, s.Answer, now)
	}
	class := outcome.StatusClass(resp.Status)
	e.m.attemptDuration.WithLabelValues(class).Observe(resp.Latency.Seconds())
	span.SetAttributes(attribute.Int("http.response.status_code", resp.Status))
	e.m.attempts.WithLabelValues(attemptResult[step.Result.Status], class).Inc()
	return answer, e.carry(ctx, d, sub.Subscription, token, step, resp.Status)
}

// attemptResult is relay_deliver_attempts_total's result label for each
// status an attempt leaves its delivery in.
var attemptResult = map[string]string{delivery.StatusDelivered: "delivered", delivery.StatusRetrying: "retry", delivery.StatusDead: "dead"}

// carry settles a delivery as step says: the next tier or the DLQ is
// produced and acknowledged, then the outcome recorded under the attempt's
// lease (parked, for a disabled subscription); a delivery gone dead is then
// alerted on, and a 410 disables its subscription. status is the endpoint's
// answer, 0 for none.
func (e *Engine) carry(ctx context.Context, d record.Delivery, s catalog.Subscription, token string, step outcome.Step, status int) error {
	sub := d.SubscriptionID
	if step.Topic != "" {
		if err := e.produce(ctx, step.Forward.Record(step.Topic)); err != nil {
			e.release(d, sub, token)
			return err
		}
	}
	var err error
	if step.Action == outcome.Park {
		err = e.retrier.Retry(ctx, "park delivery", func() error {
			return e.states.Park(ctx, d.ID, sub, token, step.Forward.LastError, e.now())
		})
	} else {
		err = e.retrier.Retry(ctx, "record delivery outcome", func() error {
			return e.states.Finish(ctx, d.ID, sub, token, step.Result)
		})
	}
	if err != nil {
		return err
	}
	settled := step.Result.Status
	if step.Action == outcome.Park {
		settled = delivery.StatusDead
	}
	if err := e.advance(ctx, d, s, settled); err != nil {
		return err
	}
	e.m.outcomes.WithLabelValues(step.Outcome).Inc()
	if step.DeadReason == "" {
		return nil
	}
	e.m.dead.WithLabelValues(step.DeadReason).Inc()
	if step.Disable {
		e.disable(ctx, sub, "endpoint answered 410 Gone")
	}
	e.notify(d, sub, step.DeadReason, step.Forward.Attempt, status, step.Forward.LastError)
	return nil
}

// Order queues delivery d of an ordered subscription (a first attempt, a
// replay, a redrive) behind the events of its ordering key, by the
// coordinates of its record, rec. It reports true when d is its key's head,
// to be attempted now; its HeadSince is then set. Otherwise d waits in the
// key's lane, recorded as waiting behind the head, and its record is
// settled: the head's settling brings it back (Advance).
func (e *Engine) Order(ctx context.Context, d *record.Delivery, rec lanes.Entry) (bool, error) {
	rec.Event, rec.Attempt = d.ID, d.Attempt
	var pos lanes.Position
	if err := e.retrier.Retry(ctx, "queue ordered delivery", func() (err error) {
		pos, err = e.lanes.Enqueue(ctx, d.SubscriptionID, d.OrderingKey, rec, e.now())
		return err
	}); err != nil {
		return false, err
	}
	if pos.Head {
		d.HeadSince = pos.Since
		return true, nil
	}
	if err := e.retrier.Retry(ctx, "record waiting delivery", func() error {
		return e.states.Wait(ctx, d.ID, d.SubscriptionID, pos.Behind, d.Attempt)
	}); err != nil {
		return false, err
	}
	e.m.outcomes.WithLabelValues("waiting").Inc()
	return false, nil
}

// Ordered reports whether delivery d to sub goes through its key's lane.
func Ordered(d record.Delivery, sub catalog.Subscription) bool {
	return sub.Ordered && d.OrderingKey != ""
}

// settledBefore finishes a record found settled before it was attempted:
// an ordered delivery's key must still move on if the crash that brought
// the record back came before its lane did.
func (e *Engine) settledBefore(ctx context.Context, d record.Delivery, sub catalog.Subscription, step outcome.Step) error {
	if !Ordered(d, sub) {
		return nil
	}
	status := delivery.StatusDelivered
	if step.Outcome != "skipped_delivered" {
		// Stale: this attempt finished; only a delivery that then went to
		// the DLQ moves its key on (a retrying one is still its head).
		if err := e.retrier.Retry(ctx, "read delivery state", func() (err error) {
			var st delivery.State
			st, _, err = e.states.Get(ctx, d.ID, d.SubscriptionID)
			status = st.Status
			return err
		}); err != nil {
			return err
		}
	}
	return e.advance(ctx, d, sub, status)
}

// advance moves an ordered delivery's key on once the delivery is settled
// as status, as outcome.MovesLane says, before its record counts as done.
func (e *Engine) advance(ctx context.Context, d record.Delivery, sub catalog.Subscription, status string) error {
	if !Ordered(d, sub) || !outcome.MovesLane(status, sub.OnFailure) {
		return nil
	}
	return e.retrier.Retry(ctx, "advance ordered key", func() error {
		return e.lanes.Advance(ctx, sub.ID, d.OrderingKey, d.ID)
	})
}

// Defer puts a delivery that spent no attempt back on a tier topic for later,
// because its subscription's backlog is full. topic is where it goes. It
// keeps d.Tier: a deferral spends no rung of the ladder either.
func (e *Engine) Defer(ctx context.Context, d record.Delivery, topic string, delay time.Duration) error {
	now := e.now()
	d.NotBefore, d.Origin = now.Add(delay), record.OriginDeferred
	if d.LastError == "" {
		d.LastError = "deferred: subscription backlog full"
	}
	if err := e.produce(ctx, d.Record(topic)); err != nil {
		return err
	}
	e.m.outcomes.WithLabelValues("deferred").Inc()
	return e.retrier.Retry(ctx, "record deferral", func() error {
		return e.states.Schedule(ctx, d.ID, d.SubscriptionID, d.NotBefore, now)
	})
}

// Throttle puts a delivery that may not be attempted before slot on the
// tier hop says, spending no attempt and no rung: its subscription's rate
// limit reserved slot for it, or its endpoint asked for a pause, or its
// circuit is open. The record carries slot when one was reserved (for a
// pause or an open circuit it asks again when it comes back), and the
// delivery shows as throttled until slot.
func (e *Engine) Throttle(ctx context.Context, d record.Delivery, hop outcome.Hop, slot time.Time, reserved bool) error {
	d.NotBefore, d.Origin, d.Slot = hop.NotBefore, record.OriginThrottled, time.Time{}
	if reserved {
		d.Slot = slot
	}
	if err := e.produce(ctx, d.Record(e.cfg.Names.Tiers[hop.Tier].Topic)); err != nil {
		return err
	}
	e.m.outcomes.WithLabelValues("throttled").Inc()
	return e.retrier.Retry(ctx, "record throttling", func() error {
		return e.states.Throttle(ctx, d.ID, d.SubscriptionID, slot)
	})
}

// Hold puts a delivery whose subscription cannot be read as stored (a
// damaged field, a secret the key does not open) on the hold tier, to be
// tried again from there: it holds only that subscription's deliveries,
// spends no attempt and no rung, and records no state, since whether an
// event held at fan-out concerns the subscription at all is known only once
// it can be read. Only an operator's repair (PATCH) or removal (DELETE) ends
// the holding; the first hold of each subscription in a minute is logged as
// an error.
func (e *Engine) Hold(ctx context.Context, d record.Delivery, why error) error {
	tr := HoldTier(e.cfg.Names.Tiers)
	d.NotBefore = e.now().Add(tr.Delay)
	if err := e.produce(ctx, d.Record(tr.Topic)); err != nil {
		return err
	}
	e.m.outcomes.WithLabelValues("held").Inc()
	if e.holds.first(d.SubscriptionID, e.now()) {
		e.log.ErrorContext(ctx, "subscription unreadable; its deliveries are held until it is repaired (PATCH it) or deleted",
			"subscription_id", d.SubscriptionID, "source_id", d.SourceID, "retry_in", tr.Delay, "error", why)
	}
	return nil
}

// HoldTier is where held deliveries wait: the first tier of at least a
// minute (a repair is seen within about that), else the ladder's last.
func HoldTier(tiers []record.Tier) record.Tier {
	for _, t := range tiers {
		if t.Delay >= time.Minute {
			return t
		}
	}
	return tiers[len(tiers)-1]
}

// holdLog remembers when each subscription's holding was last logged.
type holdLog struct {
	mu   sync.Mutex
	last map[string]time.Time
}

// first reports whether sub's hold at now is the first in a minute.
func (h *holdLog) first(sub string, now time.Time) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.last == nil || len(h.last) > 10000 {
		h.last = map[string]time.Time{}
	}
	if at, ok := h.last[sub]; ok && now.Sub(at) < time.Minute {
		return false
	}
	h.last[sub] = now
	return true
}

// produce writes r and waits for the broker's acknowledgement, retrying
// until it succeeds or ctx ends: an outcome is never settled on a forward
// the broker did not take. A refusal no retry can cure is not retried as an
// outage: it is logged as an error (once per record), counted in
// relay_deliver_produce_refused_total, and tried again every RefusedWait,
// the record staying uncommitted until an operator acts.
func (e *Engine) produce(ctx context.Context, r *kgo.Record) error {
	r.Context = ctx
	refused := false
	return e.retrier.Retry(ctx, "produce to "+r.Topic, func() error {
		err := kafka.ProduceAndWait(ctx, e.producer, r)
		if !kafka.Refused(err) {
			return err
		}
		e.m.refused.WithLabelValues(r.Topic).Inc()
		if !refused {
			refused = true
			e.log.ErrorContext(ctx, "the broker refused a record for good; its delivery waits, uncommitted, until an operator acts "+
				"(a topic's max.message.bytes below what RELAY_MAX_BODY_BYTES needs, or an ACL)",
				"topic", r.Topic, "event_id", record.Header(r, record.HeaderEventID), "subscription_id", string(r.Key),
				"value_bytes", len(r.Value), "retry_in", e.cfg.RefusedWait, "error", err)
		}
		if !backoff.Sleep(ctx, e.cfg.RefusedWait) {
			return ctx.Err()
		}
		return err
	})
}

// release gives the lease back after an abandoned attempt, best effort:
// a lease left behind lapses by itself, and the record's next owner waits
// for that, so a failure is only worth a warning that says so.
func (e *Engine) release(d record.Delivery, sub, token string) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := e.states.Release(ctx, d.ID, sub, token); err != nil {
		e.log.Warn("releasing a delivery's lease failed; its next attempt waits for the lease to lapse",
			"event_id", d.ID, "subscription_id", sub, "lease", e.cfg.LeaseFor, "error", err)
	}
}

func (e *Engine) disable(ctx context.Context, sub, reason string) {
	if err := e.disabler.Disable(ctx, sub, reason); err != nil {
		e.log.WarnContext(ctx, "disabling subscription failed", "subscription_id", sub, "error", err)
		return
	}
	e.log.WarnContext(ctx, "subscription disabled", "subscription_id", sub, "reason", reason)
}

func (e *Engine) notify(d record.Delivery, sub, reason string, attempts, status int, lastErr string) {
	e.log.Warn("delivery dead", "event_id", d.ID, "subscription_id", sub, "reason", reason, "attempts", attempts)
	if e.alerts == nil {
		return
	}
	e.alerts.Notify(alert.Dead{
		EventID: d.ID, SourceID: d.SourceID, SubscriptionID: sub, EventType: d.Type,
		Reason: reason, Attempts: attempts, LastStatusCode: status, LastError: lastErr,
	})
}

func newToken() string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// Metrics are the engine's Prometheus metrics.
type Metrics struct {
	attempts        *prometheus.CounterVec
	attemptDuration *prometheus.HistogramVec
	outcomes        *prometheus.CounterVec
	dead            *prometheus.CounterVec
	refused         *prometheus.CounterVec
	leaseWaits      prometheus.Counter
}

// NewMetrics registers the engine's metrics with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		attempts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "relay_deliver_attempts_total", Help: "Delivery attempts by result (delivered, retry, dead) and status class (2xx..5xx, network).",
		}, []string{"result", "status_class"}),
		attemptDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "relay_deliver_attempt_duration_seconds", Help: "Latency of delivery attempts by status class.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 15, 30},
		}, []string{"status_class"}),
		outcomes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "relay_deliver_outcomes_total", Help: "Deliveries settled by outcome: delivered, retrying, dead, parked, deferred, held (subscription unreadable), skipped_delivered, skipped_stale, waiting (an ordered delivery queued behind its key's head).",
		}, []string{"outcome"}),
		dead: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "relay_deliver_dead_total", Help: "Deliveries sent to the DLQ, by reason.",
		}, []string{"reason"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "relay_deliver_produce_refused_total", Help: "Produces the broker refused for good (a record larger than its topic admits, an ACL), by topic; each waits for an operator.",
		}, []string{"topic"}),
		leaseWaits: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "relay_deliver_lease_waits_total", Help: "Times a worker waited for another worker's lease on the same delivery.",
		}),
	}
	reg.MustRegister(m.attempts, m.attemptDuration, m.outcomes, m.dead, m.refused, m.leaseWaits)
	for _, o := range []string{"delivered", "retrying", "dead", "parked", "deferred", "held", "skipped_delivered", "skipped_stale", "waiting"} {
		m.outcomes.WithLabelValues(o)
	}
	for _, r := range []string{record.DeadRetriesExhausted, record.DeadNonRetryableStatus, record.DeadGone, record.DeadSubscriptionDisabled} {
		m.dead.WithLabelValues(r)
	}
	return m
}
