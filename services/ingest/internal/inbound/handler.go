// Package inbound is ingest's hot path, POST /in/{source_id}: read the body
// within its memory budget, verify the sender's signature, claim the dedup
// key, produce the event with acks=all, and only then answer 202.
package inbound

import (
	"context"
	"log/slog"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/relayhq/relay/pkg/catalog"
	"github.com/relayhq/relay/pkg/kafka"
	"github.com/relayhq/relay/pkg/record"
	"github.com/relayhq/relay/pkg/redisconn"
	"github.com/relayhq/relay/services/ingest/internal/dedup"
	"github.com/relayhq/relay/services/ingest/internal/eventstore"
	"github.com/relayhq/relay/services/ingest/internal/rest"
)

// Config is the hot path's share of ingest's configuration.
type Config struct {
	MaxBodyBytes int64
	// MaxInflightBytes bounds the bytes request bodies hold in memory at
	// once (RELAY_INGEST_MAX_INFLIGHT_BYTES); beyond it a request is
	// answered 503 with Retry-After.
	MaxInflightBytes int64
	// MaxInflightRequests bounds the webhooks worked on at once once their
	// bodies are read (RELAY_INGEST_MAX_INFLIGHT_REQUESTS); beyond it a
	// webhook is answered 503 with Retry-After before it is verified.
	MaxInflightRequests int
	DefaultDedupWindow  time.Duration
	ProduceTimeout      time.Duration
	Names               record.Topics
}

// Deps are what the hot path works with.
type Deps struct {
	Catalog  *catalog.Store
	Events   *eventstore.Store
	Dedup    *dedup.Store
	Producer kafka.Producer
	// Pipe carries the per-request bookkeeping (shared pipelines under load).
	Pipe     redisconn.Pipeliner
	Registry prometheus.Registerer
	Logger   *slog.Logger
}

// Handler serves POST /in/{source_id}.
type Handler struct {
	cfg      Config
	log      *slog.Logger
	catalog  *catalog.Store
	sources  *catalog.Cache[sourceEntry]
	events   *eventstore.Store
	dedup    *dedup.Store
	producer kafka.Producer
	pipe     redisconn.Pipeliner
	m        *metrics
	now      func() time.Time
	bodies   *bodyBudget
	// working holds a token per webhook being worked on (its body read).
	working chan struct{}
	// refusedRequests and refusedBodies pace the log lines of requests
	// refused for each limit.
	refusedRequests, refusedBodies *refusalLog
}

// New returns the handler and registers its metrics.
func New(cfg Config, d Deps) *Handler {
	h := &Handler{
		cfg: cfg, log: d.Logger, catalog: d.Catalog, events: d.Events, dedup: d.Dedup, producer: d.Producer, pipe: d.Pipe,
		m: newMetrics(d.Registry), now: time.Now, bodies: &bodyBudget{limit: cfg.MaxInflightBytes},
		working: make(chan struct{}, max(1, cfg.MaxInflightRequests)), refusedRequests: &refusalLog{}, refusedBodies: &refusalLog{},
		sources: catalog.NewCache[sourceEntry](catalog.CacheConfig{TTL: 2 * time.Second, Stale: 10 * time.Minute, Outage: redisconn.IsUnavailable}),
	}
	d.Registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "relay_ingest_body_bytes", Help: "Bytes inbound request bodies hold in memory now (bounded by RELAY_INGEST_MAX_INFLIGHT_BYTES).",
	}, func() float64 { return float64(h.bodies.held.Load()) }))
	d.Registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "relay_ingest_inflight_requests", Help: "Inbound webhooks being worked on now, their bodies read (bounded by RELAY_INGEST_MAX_INFLIGHT_REQUESTS).",
	}, func() float64 { return float64(len(h.working)) }))
	return h
}

// Serve is the gin handler of POST /in/:source_id.
func (a *Handler) Serve(c *gin.Context) { a.ingest(c) }

// startWork takes one of MaxInflightRequests places for a webhook whose
// body has been read, or answers 503 at once: a sender retries later, which
// costs it less than a request queued behind thousands of others until it
// times out, and the webhooks taken stay fast. Reading a body takes no
// place (RELAY_INGEST_MAX_INFLIGHT_BYTES and the read timeout bound it), so
// that slow senders cannot keep every other webhook out. done gives the
// place back.
func (a *Handler) startWork(c *gin.Context) (done func(), ok bool) {
	select {
	case a.working <- struct{}{}:
		return func() { <-a.working }, true
	default:
		a.m.busy.WithLabelValues("requests").Inc()
		a.refusedRequests.note(c.Request.Context(), a.log, "requests refused: inbound requests at their limit (RELAY_INGEST_MAX_INFLIGHT_REQUESTS)", "limit", cap(a.working))
		rest.Busy(c, "ingest is working on as many webhooks as it may right now; nothing was accepted, retry shortly")
		return nil, false
	}
}

// Forget drops a source from the hot path's cache, after the management API
// changed or deleted it: the next webhook reads it again.
func (a *Handler) Forget(sourceID string) { a.sources.Forget(sourceID) }

// sourceEntry is what the hot path caches of a source.
type sourceEntry struct {
	src     catalog.Source
	secrets catalog.Secrets
}

// source returns a source and its secrets from the cache: one Redis round
// trip saved per webhook. When Redis cannot be reached, a known source keeps
// verifying from its cached copy for up to 10 minutes, so a Redis outage
// does not turn into 503s for every sender.
func (a *Handler) source(ctx context.Context, id string) (catalog.Source, catalog.Secrets, error) {
	e, err := a.sources.Get(ctx, id, func(ctx context.Context) (sourceEntry, error) {
		src, sec, err := a.catalog.GetSourceWithSecrets(ctx, id)
		return sourceEntry{src, sec}, err
	})
	return e.src, e.secrets, err
}

type metrics struct {
	verifyFailures  *prometheus.CounterVec
	events          *prometheus.CounterVec
	dedupFailOpen   prometheus.Counter
	produceDuration prometheus.Histogram
	produceFailures prometheus.Counter
	produceLate     *prometheus.CounterVec
	unkeyed         *prometheus.CounterVec
	storeFailures   prometheus.Counter
	busy            *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		verifyFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "relay_ingest_verification_failures_total", Help: "Inbound requests rejected by signature verification, by scheme and reason.",
		}, []string{"scheme", "reason"}),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "relay_ingest_events_total", Help: "Inbound requests that passed verification, by result: accepted, duplicate (a dedup hit), or handshake (a sender's endpoint verification, answered and not kept).",
		}, []string{"result"}),
		dedupFailOpen: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "relay_ingest_dedup_fail_open_total", Help: "Events accepted without dedup because Redis was unreachable.",
		}),
		produceDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "relay_ingest_produce_duration_seconds", Help: "Time from produce to broker acknowledgement (acks=all).",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 5, 10},
		}),
		produceFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "relay_ingest_produce_failures_total", Help: "Events refused with 503 because the broker did not acknowledge them in time.",
		}),
		produceLate: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "relay_ingest_produce_late_total", Help: "Produces answered 503 before the broker answered, by what the broker then did: accepted (a retry finds the event) or failed.",
		}, []string{"outcome"}),
		unkeyed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "relay_ingest_unkeyed_total", Help: "Events accepted without an ordering key on a source that names one (absent, empty, or a body that is not JSON), by source: their deliveries are unordered.",
		}, []string{"source_id"}),
		storeFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "relay_ingest_event_store_failures_total", Help: "Accepted events that could not be written to the events API store (Redis).",
		}),
		busy: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "relay_ingest_busy_total", Help: "Inbound requests answered 503 server_busy, by the limit they met: requests (RELAY_INGEST_MAX_INFLIGHT_REQUESTS) or bytes (RELAY_INGEST_MAX_INFLIGHT_BYTES).",
		}, []string{"limit"}),
	}
	reg.MustRegister(m.verifyFailures, m.events, m.dedupFailOpen, m.produceDuration, m.produceFailures, m.produceLate, m.unkeyed, m.storeFailures, m.busy)
	for _, r := range []string{"accepted", "duplicate", "handshake"} {
		m.events.WithLabelValues(r)
	}
	for _, l := range []string{"requests", "bytes"} {
		m.busy.WithLabelValues(l)
	}
	return m
}
