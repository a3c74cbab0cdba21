// Package engine makes one delivery attempt and settles its outcome
// durably: the next tier or the DLQ is produced (and acknowledged) before the
// state records the outcome, and the record is reported done only after both.
// The consumers feed it; it is the same for first attempts, retries, replays
// and redrives.
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

	"github.com/relayhq/relay/pkg/catalog"
	"github.com/relayhq/relay/pkg/delivery"
	"github.com/relayhq/relay/pkg/kafka"
	"github.com/relayhq/relay/pkg/record"
	"github.com/relayhq/relay/pkg/redisconn"
	"github.com/relayhq/relay/services/deliver/internal/alert"
	"github.com/relayhq/relay/services/deliver/internal/outcome"
	"github.com/relayhq/relay/services/deliver/internal/sender"
)

// Producer is what the engine needs of a Kafka client.
type Producer = kafka.Producer

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
}

// Engine makes deliveries.
type Engine struct {
	cfg        Config
	deliveries *delivery.Store
	catalog    *catalog.Store
	subs       *SubCache
	sender     *sender.Sender
	producer   Producer
	alerts     Alerter
	health     *Health
	m          *Metrics
	log        *slog.Logger
	now        func() time.Time
	holds      holdLog
}

// Deps are the engine's collaborators.
type Deps struct {
	Deliveries *delivery.Store
	Catalog    *catalog.Store
	Subs       *SubCache
	Sender     *sender.Sender
	Producer   Producer
	// Alerts may be nil.
	Alerts  Alerter
	Health  *Health
	Metrics *Metrics
	Logger  *slog.Logger
}

// New returns an Engine.
func New(cfg Config, d Deps) *Engine {
	if cfg.RefusedWait <= 0 {
		cfg.RefusedWait = time.Minute
	}
	// Every topic the engine writes to, so that an alert on refusals sees
	// a zero before the first one.
	for _, t := range cfg.Names.Tiers {
		d.Metrics.refused.WithLabelValues(t.Topic)
	}
	d.Metrics.refused.WithLabelValues(cfg.Names.DLQ)
	return &Engine{
		cfg: cfg, deliveries: d.Deliveries, catalog: d.Catalog, subs: d.Subs, sender: d.Sender,
		producer: d.Producer, alerts: d.Alerts, health: d.Health, m: d.Metrics, log: d.Logger, now: time.Now,
	}
}

// Deliver settles attempt d.Attempt of delivery d to sub; d.Tier says how
// far up the ladder it is. It returns a nil error once the record is done
// with: delivered, forwarded to its next tier or the DLQ, or skipped as
// already settled. It returns an error only when ctx ended first; the record
// must then be redone. answered is how long the endpoint took to answer the
// attempt, 0 when none was made.
func (e *Engine) Deliver(ctx context.Context, d record.Delivery, sub catalog.SubscriptionWithSecrets) (answered time.Duration, err error) {
	span := trace.SpanFromContext(ctx)
	span.SetAttributes(
		attribute.String("relay.event_id", d.ID), attribute.String("relay.subscription_id", sub.ID),
		attribute.Int("relay.attempt", d.Attempt),
	)
	token := newToken()
	var begun string
	err = e.retry(ctx, "begin delivery", func() error {
		for {
			out, _, err := e.deliveries.Begin(ctx, d.ID, sub.ID, d.Attempt, token, e.cfg.LeaseFor)
			if err != nil {
				return err
			}
			if out != delivery.Busy {
				begun = out
				return nil
			}
			// Another worker is on this very attempt (a redelivery during a
			// rebalance). Wait for it to finish or for its lease to lapse.
			e.m.leaseWaits.Inc()
			if !sleep(ctx, 500*time.Millisecond) {
				return ctx.Err()
			}
		}
	})
	if err != nil {
		return 0, err
	}
	switch begun {
	case delivery.AlreadyDelivered:
		e.m.outcomes.WithLabelValues("skipped_delivered").Inc()
		return 0, nil
	case delivery.Stale:
		e.m.outcomes.WithLabelValues("skipped_stale").Inc()
		return 0, nil
	}

	if !sub.Enabled {
		return 0, e.park(ctx, d, sub, token)
	}

	now := e.now()
	resp := e.sender.Send(ctx, sender.Request{
		URL: sub.URL, Body: d.Body, ContentType: d.ContentType, EventID: d.ID, EventType: d.Type,
		Attempt: d.Attempt, Secrets: sub.Secrets.Active(now), Forwarded: d.Forwarded, Header: sub.Headers, Now: now,
	})
	if resp.Err != nil && ctx.Err() != nil {
		// Shutting down or revoked mid-attempt: nothing is settled, the
		// record comes back; let the next owner start at once.
		e.release(d, sub.ID, token)
		return resp.Latency, ctx.Err()
	}
	return resp.Latency, e.settle(ctx, d, sub, token, resp, now)
}

// settle carries out what the answer to an attempt made at now decides:
// the next tier or the DLQ, produced and acknowledged, then the outcome
// recorded under the attempt's lease.
func (e *Engine) settle(ctx context.Context, d record.Delivery, sub catalog.SubscriptionWithSecrets, token string, resp sender.Response, now time.Time) error {
	span := trace.SpanFromContext(ctx)
	class := outcome.StatusClass(resp.Status)
	e.m.attemptDuration.WithLabelValues(class).Observe(resp.Latency.Seconds())
	v := outcome.Classify(resp.Status, resp.Err, resp.Header, now)
	att := delivery.Attempt{Attempt: d.Attempt, At: now, StatusCode: resp.Status, LatencyMS: resp.Latency.Milliseconds(), Response: string(resp.Body)}
	if resp.Err != nil {
		att.Error = resp.Err.Error()
	} else if v.Kind != outcome.Delivered {
		att.Error = outcome.Describe(resp.Status, resp.Header)
	}
	span.SetAttributes(attribute.Int("http.response.status_code", resp.Status))

	res := delivery.Result{Attempt: att}
	next := record.Delivery{
		Event: d.Event, SubscriptionID: sub.ID, LastStatus: resp.Status, LastError: att.Error,
	}
	switch v.Kind {
	case outcome.Delivered:
		res.Status = delivery.StatusDelivered
		e.m.attempts.WithLabelValues("delivered", class).Inc()
	case outcome.Retry:
		if t, ok := outcome.NextTier(e.cfg.Names.Tiers, d.Tier-1, v.RetryAfter); ok {
			tr := e.cfg.Names.Tiers[t]
			next.Attempt, next.NotBefore, next.Origin, next.Tier = d.Attempt+1, now.Add(tr.Delay), record.OriginRetry, t+1
			if err := e.produce(ctx, next.Record(tr.Topic)); err != nil {
				e.release(d, sub.ID, token)
				return err
			}
			res.Status, res.NextAttemptAt = delivery.StatusRetrying, next.NotBefore
			e.m.attempts.WithLabelValues("retry", class).Inc()
			break
		}
		v.DeadReason = record.DeadRetriesExhausted
		fallthrough
	case outcome.Dead:
		next.Attempt, next.NotBefore, next.DeadReason, next.Origin, next.Tier = d.Attempt, now, v.DeadReason, d.Origin, d.Tier
		if err := e.produce(ctx, next.Record(e.cfg.Names.DLQ)); err != nil {
			e.release(d, sub.ID, token)
			return err
		}
		res.Status = delivery.StatusDead
		e.m.attempts.WithLabelValues("dead", class).Inc()
		e.m.dead.WithLabelValues(v.DeadReason).Inc()
	}
	if err := e.retry(ctx, "record delivery outcome", func() error {
		return e.deliveries.Finish(ctx, d.ID, sub.ID, token, res)
	}); err != nil {
		return err
	}
	e.m.outcomes.WithLabelValues(res.Status).Inc()
	if res.Status == delivery.StatusDead {
		if v.Gone {
			e.disable(ctx, sub.ID, "endpoint answered 410 Gone")
		}
		e.notify(d, sub.ID, v.DeadReason, d.Attempt, resp.Status, att.Error)
	}
	return nil
}

// park sends a delivery to a disabled subscription to the DLQ without
// spending an attempt; re-enable the subscription, then redrive it.
func (e *Engine) park(ctx context.Context, d record.Delivery, sub catalog.SubscriptionWithSecrets, token string) error {
	dead := record.Delivery{
		Event: d.Event, SubscriptionID: sub.ID, Attempt: d.Attempt - 1, NotBefore: e.now(),
		LastError: "subscription disabled", DeadReason: record.DeadSubscriptionDisabled, Origin: d.Origin, Tier: d.Tier,
	}
	if err := e.produce(ctx, dead.Record(e.cfg.Names.DLQ)); err != nil {
		e.release(d, sub.ID, token)
		return err
	}
	if err := e.retry(ctx, "park delivery", func() error {
		return e.deliveries.Park(ctx, d.ID, sub.ID, token, "subscription disabled", e.now())
	}); err != nil {
		return err
	}
	e.m.outcomes.WithLabelValues("parked").Inc()
	e.m.dead.WithLabelValues(record.DeadSubscriptionDisabled).Inc()
	e.notify(d, sub.ID, record.DeadSubscriptionDisabled, d.Attempt-1, 0, "subscription disabled")
	return nil
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
	return e.retry(ctx, "record deferral", func() error {
		return e.deliveries.Schedule(ctx, d.ID, d.SubscriptionID, d.NotBefore, now)
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
	return e.retry(ctx, "produce to "+r.Topic, func() error {
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
		if !sleep(ctx, e.cfg.RefusedWait) {
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
	if err := e.deliveries.Release(ctx, d.ID, sub, token); err != nil {
		e.log.Warn("releasing a delivery's lease failed; its next attempt waits for the lease to lapse",
			"event_id", d.ID, "subscription_id", sub, "lease", e.cfg.LeaseFor, "error", err)
	}
}

func (e *Engine) disable(ctx context.Context, sub, reason string) {
	off := false
	if _, err := e.catalog.UpdateSubscription(ctx, sub, catalog.SubscriptionPatch{Enabled: &off, DisabledReason: reason}); err != nil {
		e.log.WarnContext(ctx, "disabling subscription failed", "subscription_id", sub, "error", err)
		return
	}
	e.subs.Forget(sub)
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

// retry runs fn until it succeeds or ctx ends, backing off from 100ms to 5s.
// Redis outages are reported to the health gate, which pauses fetching.
func (e *Engine) retry(ctx context.Context, what string, fn func() error) error {
	return Retry(ctx, e.log, e.health, what, fn)
}

// Retry runs fn until it succeeds or ctx ends, backing off from 100ms to 5s
// and reporting Redis outages (unreachable, or refusing writes) to h.
func Retry(ctx context.Context, log *slog.Logger, h *Health, what string, fn func() error) error {
	backoff := 100 * time.Millisecond
	for failures := 0; ; failures++ {
		err := fn()
		if err == nil {
			if failures > 0 {
				log.InfoContext(ctx, "recovered", "while", what, "failures", failures)
			}
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if redisconn.IsUnavailable(err) || redisconn.IsWriteRefused(err) {
			h.RedisDown(err)
		}
		if failures == 0 || failures%20 == 0 {
			log.WarnContext(ctx, "retrying", "while", what, "error", err, "failures", failures+1)
		}
		if !sleep(ctx, backoff) {
			return ctx.Err()
		}
		if backoff = backoff * 2; backoff > 5*time.Second {
			backoff = 5 * time.Second
		}
	}
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
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
			Name: "relay_deliver_outcomes_total", Help: "Deliveries settled by outcome: delivered, retrying, dead, parked, deferred, held (subscription unreadable), skipped_delivered, skipped_stale.",
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
	for _, o := range []string{"delivered", "retrying", "dead", "parked", "deferred", "held", "skipped_delivered", "skipped_stale"} {
		m.outcomes.WithLabelValues(o)
	}
	for _, r := range []string{record.DeadRetriesExhausted, record.DeadNonRetryableStatus, record.DeadGone, record.DeadSubscriptionDisabled} {
		m.dead.WithLabelValues(r)
	}
	return m
}

// SubCache caches subscriptions (with their secrets) for a short TTL, so the
// fan-out of each event costs no Redis round trip in the steady state. A
// change made through the API is seen within the TTL.
type SubCache struct {
	store *catalog.Store
	ttl   time.Duration
	now   func() time.Time

	mu       sync.Mutex
	bySource map[string]cachedList
	byID     map[string]cachedSub
}

type cachedList struct {
	fan catalog.FanOut
	at  time.Time
}

type cachedSub struct {
	sub     catalog.SubscriptionWithSecrets
	missing bool
	at      time.Time
}

// NewSubCache returns a cache over store.
func NewSubCache(store *catalog.Store, ttl time.Duration) *SubCache {
	return &SubCache{store: store, ttl: ttl, now: time.Now, bySource: map[string]cachedList{}, byID: map[string]cachedSub{}}
}

// ForSource returns every subscription of a source, the unreadable apart.
func (c *SubCache) ForSource(ctx context.Context, src string) (catalog.FanOut, error) {
	now := c.now()
	c.mu.Lock()
	e, ok := c.bySource[src]
	c.mu.Unlock()
	if ok && now.Sub(e.at) < c.ttl {
		return e.fan, nil
	}
	fan, err := c.store.SourceSubscriptions(ctx, src)
	if err != nil {
		return catalog.FanOut{}, err
	}
	c.mu.Lock()
	if len(c.bySource) > 10000 {
		c.bySource = map[string]cachedList{}
	}
	c.bySource[src] = cachedList{fan: fan, at: now}
	c.mu.Unlock()
	return fan, nil
}

// Get returns one subscription; found is false when it was deleted.
func (c *SubCache) Get(ctx context.Context, id string) (catalog.SubscriptionWithSecrets, bool, error) {
	now := c.now()
	c.mu.Lock()
	e, ok := c.byID[id]
	c.mu.Unlock()
	if ok && now.Sub(e.at) < c.ttl {
		return e.sub, !e.missing, nil
	}
	sub, err := c.store.GetSubscriptionWithSecrets(ctx, id)
	missing := false
	switch {
	case err == nil:
	case err == catalog.ErrNotFound:
		missing = true
	default:
		return catalog.SubscriptionWithSecrets{}, false, err
	}
	entry := cachedSub{sub: sub, missing: missing, at: now}
	c.mu.Lock()
	if len(c.byID) > 100000 {
		c.byID = map[string]cachedSub{}
	}
	c.byID[id] = entry
	c.mu.Unlock()
	return entry.sub, !missing, nil
}

// Forget drops a subscription from the cache after Relay changed it.
func (c *SubCache) Forget(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.byID, id)
	for src, l := range c.bySource {
		for _, s := range l.fan.Subscriptions {
			if s.ID == id {
				delete(c.bySource, src)
				break
			}
		}
	}
}
