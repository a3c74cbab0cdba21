// Package api is ingest's HTTP API: the inbound webhook endpoint and the
// management routes described in docs/openapi.yaml, served with gin.
package api

import (
	"bytes"
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel/attribute"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/relayhq/relay/pkg/catalog"
	"github.com/relayhq/relay/pkg/counters"
	"github.com/relayhq/relay/pkg/delivery"
	"github.com/relayhq/relay/pkg/health"
	"github.com/relayhq/relay/pkg/ids"
	"github.com/relayhq/relay/pkg/kafka"
	"github.com/relayhq/relay/pkg/record"
	"github.com/relayhq/relay/pkg/redisconn"
	"github.com/relayhq/relay/pkg/signature"
	"github.com/relayhq/relay/pkg/telemetry"
	"github.com/relayhq/relay/services/ingest/internal/dedup"
	"github.com/relayhq/relay/services/ingest/internal/dlq"
	"github.com/relayhq/relay/services/ingest/internal/eventstore"
	"github.com/relayhq/relay/services/ingest/internal/payloads"
)

// Producer is what the API needs of a Kafka client.
// Webhooks go through Produce, so that concurrent requests share batches
// (kafka.ProduceAndWait); replays and redrives, which produce many records
// at once, through ProduceSync, which sends them without lingering.
type Producer interface {
	kafka.Producer
	ProduceSync(ctx context.Context, rs ...*kgo.Record) kgo.ProduceResults
}

var _ Producer = (*kgo.Client)(nil)

// Config is the API's share of ingest's configuration.
type Config struct {
	// AdminToken is the management routes' bearer token; PreviousAdminToken
	// is accepted too during a rotation (empty for none).
	AdminToken         string
	PreviousAdminToken string
	// TrustedProxies are the load balancers (IPs, CIDRs) whose
	// X-Forwarded-For gives the client address logged; none by default.
	TrustedProxies []string
	MaxBodyBytes   int64
	// MaxInflightBytes bounds the bytes request bodies hold in memory at
	// once (RELAY_INGEST_MAX_INFLIGHT_BYTES); beyond it a request is
	// answered 503 with Retry-After.
	MaxInflightBytes   int64
	DefaultDedupWindow time.Duration
	RotationGrace      time.Duration
	ProduceTimeout     time.Duration
	// WorkBudget bounds one call of a long walk (POST /secrets/rewrap), as
	// RELAY_REDRIVE_BUDGET bounds a redrive, within the write timeout.
	WorkBudget               time.Duration
	AllowPrivateDestinations bool
	// RequireHTTPS refuses subscription URLs that are not https.
	RequireHTTPS bool
	// PublicURL, when set, makes responses carry absolute ingest URLs.
	PublicURL string
	Names     record.Topics
}

// Deps are the stores and clients the API works with.
type Deps struct {
	Catalog    *catalog.Store
	Events     *eventstore.Store
	Payloads   *payloads.Reader
	Deliveries *delivery.Store
	Counters   *counters.Store
	Dedup      *dedup.Store
	DLQ        *dlq.Manager
	Producer   Producer
	// Pipe carries the per-request bookkeeping (shared pipelines under load).
	Pipe      redisconn.Pipeliner
	Ready     *health.Probe
	Telemetry *telemetry.Telemetry
	Logger    *slog.Logger
}

// API serves ingest's routes.
type API struct {
	cfg        Config
	log        *slog.Logger
	catalog    *catalog.Store
	sources    *catalog.Cache[sourceEntry]
	events     *eventstore.Store
	payloads   *payloads.Reader
	deliveries *delivery.Store
	counters   *counters.Store
	dedup      *dedup.Store
	dlq        *dlq.Manager
	producer   Producer
	pipe       redisconn.Pipeliner
	ready      *health.Probe
	tel        *telemetry.Telemetry
	m          *metrics
	engine     *gin.Engine
	now        func() time.Time
	bodies     *bodyBudget
}

// New builds the API and its routes.
func New(cfg Config, d Deps) *API {
	a := &API{
		cfg: cfg, log: d.Logger, catalog: d.Catalog, events: d.Events, payloads: d.Payloads, deliveries: d.Deliveries,
		counters: d.Counters, dedup: d.Dedup, dlq: d.DLQ, producer: d.Producer, pipe: d.Pipe, ready: d.Ready,
		tel: d.Telemetry, m: newMetrics(d.Telemetry.Registry), now: time.Now,
		bodies: &bodyBudget{limit: cfg.MaxInflightBytes},
	}
	d.Telemetry.Registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "relay_ingest_body_bytes", Help: "Bytes inbound request bodies hold in memory now (bounded by RELAY_INGEST_MAX_INFLIGHT_BYTES).",
	}, func() float64 { return float64(a.bodies.held.Load()) }))
	a.sources = catalog.NewCache[sourceEntry](catalog.CacheConfig{TTL: 2 * time.Second, Stale: 10 * time.Minute, Outage: redisconn.IsUnavailable})
	a.engine = a.routes()
	return a
}

// Handler returns the API wrapped in OpenTelemetry HTTP instrumentation, or
// bare when tracing is off (OTEL_SDK_DISABLED=true): its per-request cost
// then buys nothing.
func (a *API) Handler() http.Handler {
	if !a.tel.Tracing {
		return a.engine
	}
	return otelhttp.NewHandler(a.engine, "ingest",
		otelhttp.WithTracerProvider(a.tel.TracerProvider),
		// Request counts and durations are the observe middleware's
		// Prometheus metrics; otelhttp's own would go to no exporter.
		otelhttp.WithMeterProvider(metricnoop.NewMeterProvider()),
		otelhttp.WithPropagators(propagation.TraceContext{}),
		// Inbound webhooks come from the internet: a sender's traceparent is
		// not ours to continue, so each starts its own trace (linked to the
		// sender's). Management calls continue their caller's trace.
		otelhttp.WithPublicEndpointFn(func(r *http.Request) bool { return strings.HasPrefix(r.URL.Path, "/in/") }),
	)
}

// Routes lists the registered routes, for the OpenAPI conformance test.
func (a *API) Routes() gin.RoutesInfo { return a.engine.Routes() }

func (a *API) routes() *gin.Engine {
	gin.SetMode(gin.ReleaseMode)
	r := gin.New()
	r.HandleMethodNotAllowed = true
	// X-Forwarded-For names the client only when it comes from a load
	// balancer the operator named: then it is the address a source's
	// allowed_ips is checked against, and the one logged. Config validation
	// has checked the list, so this cannot fail.
	_ = r.SetTrustedProxies(a.cfg.TrustedProxies)
	r.Use(a.recoverer(), a.observe())
	r.NoRoute(func(c *gin.Context) {
		fail(c, http.StatusNotFound, "route_not_found", "no such route: "+c.Request.Method+" "+c.Request.URL.Path)
	})
	r.NoMethod(func(c *gin.Context) {
		fail(c, http.StatusMethodNotAllowed, "method_not_allowed", c.Request.Method+" is not allowed on "+c.Request.URL.Path)
	})

	r.GET("/healthz", gin.WrapF(health.LiveHandler))
	// The public port says a word; each check's result is on the admin
	// port (RELAY_ADMIN_ADDR) and in the log.
	r.GET("/readyz", gin.WrapF(a.ready.StatusHandler()))
	r.GET("/metrics", gin.WrapH(telemetry.MetricsHandler(a.tel.Registry)))
	r.POST("/in/:source_id", a.ingest)

	m := r.Group("/", a.auth(), knownQuery)
	m.POST("/sources", a.createSource)
	m.GET("/sources", a.listSources)
	m.GET("/sources/:source_id", a.getSource)
	m.PATCH("/sources/:source_id", a.updateSource)
	m.DELETE("/sources/:source_id", a.deleteSource)
	m.POST("/sources/:source_id/rotate-secret", a.rotateSourceSecret)
	m.GET("/sources/:source_id/events", a.listEvents)
	m.GET("/sources/:source_id/events/:event_id", a.getEvent)
	m.GET("/sources/:source_id/events/:event_id/deliveries", a.listDeliveries)
	m.POST("/sources/:source_id/events/:event_id/replay", a.replay)
	m.POST("/sources/:source_id/replay", a.replayRange)
	m.GET("/sources/:source_id/metrics", a.sourceMetrics)
	m.POST("/sources/:source_id/subscriptions", a.createSubscription)
	m.GET("/sources/:source_id/subscriptions", a.listSubscriptions)
	m.GET("/sources/:source_id/subscriptions/:sub_id", a.getSubscription)
	m.PATCH("/sources/:source_id/subscriptions/:sub_id", a.updateSubscription)
	m.DELETE("/sources/:source_id/subscriptions/:sub_id", a.deleteSubscription)
	m.POST("/sources/:source_id/subscriptions/:sub_id/rotate-secret", a.rotateSubscriptionSecret)
	m.GET("/dlq", a.listDLQ)
	m.POST("/replay/dlq", a.redriveDLQ)
	m.POST("/secrets/rewrap", a.rewrapSecrets)
	return r
}

// queryParams are the query parameters each management route takes
// (docs/openapi.yaml documents the same, which a test checks). Any other is
// refused: a typo such as ?subscription=… on POST /replay/dlq would
// otherwise redrive every parked delivery instead of one subscription's.
var queryParams = map[string][]string{
	"GET /sources":                                     {"limit", "cursor"},
	"GET /sources/:source_id/events":                   {"limit", "cursor"},
	"GET /sources/:source_id/metrics":                  {"from", "to"},
	"GET /sources/:source_id/subscriptions":            {"limit", "cursor"},
	"POST /sources/:source_id/events/:event_id/replay": {"subscription_id", "force"},
	"POST /sources/:source_id/replay":                  {"from", "to", "subscription_id", "force", "cursor"},
	"GET /dlq":                                         {"subscription_id", "source_id", "limit", "cursor"},
	"POST /replay/dlq":                                 {"subscription_id", "source_id"},
	"POST /secrets/rewrap":                             {"cursor"},
}

// knownQuery answers 400 for a query parameter its route does not take.
func knownQuery(c *gin.Context) {
	if c.Request.URL.RawQuery == "" {
		return
	}
	takes := queryParams[c.Request.Method+" "+c.FullPath()]
	for name := range c.Request.URL.Query() {
		if !slices.Contains(takes, name) {
			what := "takes none"
			if len(takes) > 0 {
				what = "takes " + strings.Join(takes, ", ")
			}
			fail(c, http.StatusBadRequest, "unknown_parameter", fmt.Sprintf("unknown query parameter %q; this route %s", name, what))
			return
		}
	}
}

// errorBody is every error response: {"error": {"code", "message"}}.
type errorBody struct {
	Error errorDetail `json:"error"`
}

type errorDetail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// fail answers with a JSON error and stops the handler chain. The observe
// middleware logs it.
func fail(c *gin.Context, status int, code, msg string) {
	c.Set("error_code", code)
	c.Set("error_message", msg)
	c.AbortWithStatusJSON(status, errorBody{Error: errorDetail{Code: code, Message: msg}})
}

// unavailable answers 503 with Retry-After.
func unavailable(c *gin.Context, code, msg string, retryAfter time.Duration) {
	c.Header("Retry-After", strconv.Itoa(int(retryAfter.Seconds())))
	fail(c, http.StatusServiceUnavailable, code, msg)
}

// internal answers 500 without leaking the cause, which is logged.
func (a *API) internal(c *gin.Context, what string, err error) {
	a.log.ErrorContext(c.Request.Context(), what, "error", err)
	fail(c, http.StatusInternalServerError, "internal", "internal error while "+what+"; see the service log")
}

func (a *API) recoverer() gin.HandlerFunc {
	return func(c *gin.Context) {
		defer func() {
			if p := recover(); p != nil {
				if p == http.ErrAbortHandler {
					panic(p)
				}
				a.log.ErrorContext(c.Request.Context(), "handler panicked", "panic", fmt.Sprint(p), "route", c.FullPath())
				fail(c, http.StatusInternalServerError, "internal", "internal error; see the service log")
			}
		}()
		c.Next()
	}
}

// observe names the request's span after its route, counts the request and
// logs every error response.
func (a *API) observe() gin.HandlerFunc {
	return func(c *gin.Context) {
		start := time.Now()
		c.Next()
		route := c.FullPath()
		if route == "" {
			route = "unmatched"
		}
		span := trace.SpanFromContext(c.Request.Context())
		span.SetName(c.Request.Method + " " + route)
		span.SetAttributes(attribute.String("http.route", route))
		status := c.Writer.Status()
		a.m.requests.WithLabelValues(route, c.Request.Method, strconv.Itoa(status)).Inc()
		a.m.duration.WithLabelValues(route, c.Request.Method).Observe(time.Since(start).Seconds())
		if status >= 400 {
			lvl := slog.LevelInfo
			if status >= 500 {
				lvl = slog.LevelError
			}
			attrs := []any{"method", c.Request.Method, "route", route, "status", status,
				"code", c.GetString("error_code"), "message", c.GetString("error_message"),
				"remote", c.ClientIP(), "duration_ms", time.Since(start).Milliseconds()}
			if id := c.Param("source_id"); id != "" {
				// Which source fails (a sender with a stale secret) is what
				// an operator looks for; an id from the URL, so bounded.
				attrs = append(attrs, "source_id", strings.ToValidUTF8(id[:min(len(id), 64)], "?"))
			}
			a.log.Log(c.Request.Context(), lvl, "request failed", attrs...)
		}
	}
}

// auth requires the admin bearer token, compared in constant time.
func (a *API) auth() gin.HandlerFunc {
	want := []byte("Bearer " + a.cfg.AdminToken)
	var previous []byte
	if a.cfg.PreviousAdminToken != "" {
		previous = []byte("Bearer " + a.cfg.PreviousAdminToken)
	}
	return func(c *gin.Context) {
		got := []byte(c.GetHeader("Authorization"))
		// Both compared every time, so the answer's timing says nothing of which.
		ok := subtle.ConstantTimeCompare(got, want)
		if previous != nil {
			ok |= subtle.ConstantTimeCompare(got, previous)
		}
		if a.cfg.AdminToken == "" || ok != 1 {
			c.Header("WWW-Authenticate", `Bearer realm="relay"`)
			fail(c, http.StatusUnauthorized, "unauthorized", "missing or wrong Authorization: Bearer token (RELAY_ADMIN_TOKEN)")
			return
		}
		c.Next()
	}
}

// bindJSON decodes a management request body strictly: invalid UTF-8,
// unknown fields, wrong types and trailing data are 400s that name the
// field. An empty body decodes to the zero value when allowEmpty.
func bindJSON(c *gin.Context, dst any, allowEmpty bool) bool {
	raw, err := io.ReadAll(http.MaxBytesReader(c.Writer, c.Request.Body, 64<<10))
	if err != nil {
		fail(c, http.StatusBadRequest, "invalid_json", describeJSONError(err))
		return false
	}
	if len(bytes.TrimSpace(raw)) == 0 && allowEmpty {
		return true
	}
	// encoding/json would silently turn invalid UTF-8 into U+FFFD.
	if !utf8.Valid(raw) {
		fail(c, http.StatusBadRequest, "invalid_json", "request body is not valid UTF-8")
		return false
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	err = dec.Decode(dst)
	if err == nil && dec.More() {
		err = errors.New("trailing data after the JSON object")
	}
	if err != nil {
		fail(c, http.StatusBadRequest, "invalid_json", describeJSONError(err))
		return false
	}
	return true
}

func describeJSONError(err error) string {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	var big *http.MaxBytesError
	switch {
	case errors.Is(err, io.EOF):
		return "request body is empty; send a JSON object"
	case errors.As(err, &syn):
		return fmt.Sprintf("malformed JSON at byte %d", syn.Offset)
	case errors.As(err, &typ):
		if typ.Field != "" {
			return fmt.Sprintf("field %q must be %s", typ.Field, jsonExpected(typ.Type))
		}
		return "request body must be a JSON object"
	case errors.As(err, &big):
		return "request body is larger than 64 KiB"
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		return "unknown field " + strings.TrimPrefix(err.Error(), "json: unknown field ")
	case errors.Is(err, io.ErrUnexpectedEOF):
		return "malformed JSON: unexpected end of input"
	}
	return "malformed JSON: " + err.Error()
}

// expecter is a request field type that decodes more than one JSON kind
// and so says itself what it accepts.
type expecter interface{ expects() string }

// jsonExpected says what a field of type t accepts.
func jsonExpected(t reflect.Type) string {
	if e, ok := reflect.Zero(t).Interface().(expecter); ok {
		return e.expects()
	}
	return jsonKind(t.Kind().String())
}

func jsonKind(k string) string {
	switch k {
	case "string":
		return "a string"
	case "bool":
		return "a boolean"
	case "slice":
		return "an array"
	case "struct", "map", "ptr":
		return "an object"
	}
	return "a number"
}

// invalid answers 400 for a field that parsed but is not acceptable.
func invalid(c *gin.Context, field, msg string) {
	fail(c, http.StatusBadRequest, "invalid_field", field+": "+msg)
}

// secretFor returns the secret an operator supplied when scheme accepts it,
// a fresh one in the scheme's format when none was supplied, and otherwise
// answers 400 naming field.
func secretFor(c *gin.Context, scheme signature.Scheme, given, field string) (string, bool) {
	if given == "" {
		return scheme.NewSecret(), true
	}
	if err := scheme.CheckSecret(given); err != nil {
		invalid(c, field, err.Error())
		return "", false
	}
	return given, true
}

// pageParams reads limit (1..500, default 50) and cursor.
func pageParams(c *gin.Context) (int, string, bool) {
	limit := 50
	if v := c.Query("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 500 {
			invalid(c, "limit", "must be an integer from 1 to 500")
			return 0, "", false
		}
		limit = n
	}
	return limit, c.Query("cursor"), true
}

// idPageParams is pageParams for a listing whose cursor is the last id (of
// kind prefix) of the page before: anything else is refused rather than
// read as a place in the listing, as the other listings' cursors are.
func idPageParams(c *gin.Context, prefix string) (int, string, bool) {
	limit, cursor, ok := pageParams(c)
	if ok && cursor != "" && !ids.Valid(prefix, cursor) {
		invalid(c, "cursor", "is not a cursor returned by this listing")
		return 0, "", false
	}
	return limit, cursor, ok
}

// list is the envelope of every listing.
type list[T any] struct {
	Data       []T    `json:"data"`
	NextCursor string `json:"next_cursor,omitempty"`
}

// durationField parses an optional duration field ("30s", "5m", "72h"),
// answering 400 naming the field when it does not parse. Empty means zero.
func durationField(c *gin.Context, field, v string) (time.Duration, bool) {
	if v == "" {
		return 0, true
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		invalid(c, field, fmt.Sprintf("%q is not a duration (examples: 30s, 5m, 72h)", v))
		return 0, false
	}
	return d, true
}

func formatDuration(d time.Duration) string { return record.FormatDelay(d) }

type metrics struct {
	requests        *prometheus.CounterVec
	duration        *prometheus.HistogramVec
	verifyFailures  *prometheus.CounterVec
	events          *prometheus.CounterVec
	dedupFailOpen   prometheus.Counter
	produceDuration prometheus.Histogram
	produceFailures prometheus.Counter
	storeFailures   prometheus.Counter
	busy            prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "relay_http_requests_total", Help: "HTTP requests by route, method and status.",
		}, []string{"route", "method", "status"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "relay_http_request_duration_seconds", Help: "HTTP request latency by route.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"route", "method"}),
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
		storeFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "relay_ingest_event_store_failures_total", Help: "Accepted events that could not be written to the events API store (Redis).",
		}),
		busy: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "relay_ingest_busy_total", Help: "Inbound requests answered 503 because request bodies held their limit of memory (RELAY_INGEST_MAX_INFLIGHT_BYTES).",
		}),
	}
	reg.MustRegister(m.requests, m.duration, m.verifyFailures, m.events, m.dedupFailOpen, m.produceDuration, m.produceFailures, m.storeFailures, m.busy)
	for _, r := range []string{"accepted", "duplicate", "handshake"} {
		m.events.WithLabelValues(r)
	}
	return m
}
