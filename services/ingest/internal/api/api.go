// Package api is ingest's HTTP API: the inbound webhook endpoint and the
// management routes described in docs/openapi.yaml, served with gin.
package api

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel/attribute"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/relayhq/relay/pkg/catalog"
	"github.com/relayhq/relay/pkg/counters"
	"github.com/relayhq/relay/pkg/delivery"
	"github.com/relayhq/relay/pkg/health"
	"github.com/relayhq/relay/pkg/kafka"
	"github.com/relayhq/relay/pkg/payloads"
	"github.com/relayhq/relay/pkg/redisconn"
	"github.com/relayhq/relay/pkg/telemetry"
	"github.com/relayhq/relay/pkg/throttle"
	"github.com/relayhq/relay/services/ingest/internal/dedup"
	"github.com/relayhq/relay/services/ingest/internal/dlq"
	"github.com/relayhq/relay/services/ingest/internal/eventstore"
	"github.com/relayhq/relay/services/ingest/internal/inbound"
	"github.com/relayhq/relay/services/ingest/internal/keys"
	"github.com/relayhq/relay/services/ingest/internal/manage"
	"github.com/relayhq/relay/services/ingest/internal/rest"
)

// Producer is what the API needs of a Kafka client. Webhooks go through
// Produce, so that concurrent requests share batches
// (kafka.ProduceAndWait); replays and redrives, which produce many records
// at once, through ProduceSync, which sends them without lingering.
type Producer = manage.Producer

// Config is the API's share of ingest's configuration: the admin token and
// the load balancers it trusts, and what the hot path and the management
// routes each take.
type Config struct {
	// AdminToken is the management routes' bearer token; PreviousAdminToken
	// is accepted too during a rotation (empty for none).
	AdminToken         string
	PreviousAdminToken string
	// TrustedProxies are the load balancers (IPs, CIDRs) whose
	// X-Forwarded-For gives the client address logged; none by default.
	TrustedProxies []string
	Inbound        inbound.Config
	Manage         manage.Config
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
	Throttle   *throttle.Store
	Lanes      manage.Lanes
	Keys       *keys.Store
	// Lag computes the consumer groups' lag and the DLQ's depth for GET
	// /status (kafka.LagCollector); nil answers without them.
	Lag      Lag
	Producer Producer
	// Pipe carries the per-request bookkeeping (shared pipelines under load).
	Pipe      redisconn.Pipeliner
	Ready     *health.Probe
	Telemetry *telemetry.Telemetry
	Logger    *slog.Logger
}

// API serves ingest's routes: the inbound hot path (package inbound) and
// the management routes (package manage) behind the admin token, with the
// health and metrics routes and the middleware they share.
type API struct {
	cfg     Config
	log     *slog.Logger
	inbound *inbound.Handler
	manage  *manage.API
	keys    *keys.Store
	lag     Lag
	ready   *health.Probe
	tel     *telemetry.Telemetry
	m       *metrics
	engine  *gin.Engine
	console http.Handler
}

// New builds the API and its routes.
func New(cfg Config, d Deps) *API {
	in := inbound.New(cfg.Inbound, inbound.Deps{
		Catalog: d.Catalog, Events: d.Events, Dedup: d.Dedup, Producer: d.Producer, Pipe: d.Pipe,
		Registry: d.Telemetry.Registry, Logger: d.Logger,
	})
	a := &API{
		cfg: cfg, log: d.Logger, inbound: in, keys: d.Keys, lag: d.Lag, ready: d.Ready, tel: d.Telemetry, m: newMetrics(d.Telemetry.Registry),
		manage: manage.New(cfg.Manage, manage.Deps{
			Catalog: d.Catalog, Sources: in, Events: d.Events, Payloads: d.Payloads, Deliveries: d.Deliveries,
			Counters: d.Counters, DLQ: d.DLQ, Throttle: d.Throttle, Lanes: d.Lanes, Keys: d.Keys, Producer: d.Producer, Logger: d.Logger,
		}),
	}
	a.engine = a.routes()
	return a
}

// Manage is the API's routes alone, uninstrumented: the console calls them
// in-process, inside its own request.
func (a *API) Manage() http.Handler { return a.engine }

// Mount serves h under /console beside the API.
func (a *API) Mount(h http.Handler) { a.console = h }

// Handler returns the API, and the console when mounted.
func (a *API) Handler() http.Handler {
	api := a.instrumented()
	if a.console == nil {
		return api
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/console" || strings.HasPrefix(r.URL.Path, "/console/") {
			a.console.ServeHTTP(w, r)
			return
		}
		api.ServeHTTP(w, r)
	})
}

// instrumented returns the API wrapped in OpenTelemetry HTTP
// instrumentation, or bare when tracing is off (OTEL_SDK_DISABLED=true):
// its per-request cost then buys nothing.
func (a *API) instrumented() http.Handler {
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
		rest.Fail(c, http.StatusNotFound, "route_not_found", "no such route: "+c.Request.Method+" "+c.Request.URL.Path)
	})
	r.NoMethod(func(c *gin.Context) {
		rest.Fail(c, http.StatusMethodNotAllowed, "method_not_allowed", c.Request.Method+" is not allowed on "+c.Request.URL.Path)
	})

	r.GET("/healthz", gin.WrapF(health.LiveHandler))
	// The public port says a word; each check's result is on the admin
	// port (RELAY_ADMIN_ADDR) and in the log.
	r.GET("/readyz", gin.WrapF(a.ready.StatusHandler()))
	r.GET("/metrics", gin.WrapH(telemetry.MetricsHandler(a.tel.Registry)))
	r.POST("/in/:source_id", a.inbound.Serve)
	g := r.Group("/", a.auth(), knownQuery)
	a.manage.Register(g)
	g.GET("/status", a.status)
	return r
}

// Lag computes the lag of Relay's consumer groups (kafka.LagCollector).
type Lag interface {
	Snapshot(ctx context.Context) (kafka.LagSnapshot, error)
}

// statusJSON is GET /status: what the console's health page shows.
type statusJSON struct {
	// Status is ingest's readiness: ok, degraded or unavailable; Checks
	// each check's result by name.
	Status string            `json:"status"`
	Checks map[string]string `json:"checks"`
	kafka.LagSnapshot
	// LagError says why the lag could not be computed, if it could not.
	LagError string `json:"lag_error,omitempty"`
}

// status is GET /status: the readiness checks (the broker, Redis), each
// consumer group's lag per topic and the DLQ's depth. It answers 200
// whatever they say: it reports, it is not a probe.
func (a *API) status(c *gin.Context) {
	ctx, cancel := context.WithTimeout(c.Request.Context(), 5*time.Second)
	defer cancel()
	rep := a.ready.Report(ctx)
	out := statusJSON{Status: rep.Status, Checks: rep.Checks}
	if a.lag == nil {
		out.LagError = "not computed by this ingest"
	} else if snap, err := a.lag.Snapshot(ctx); err != nil {
		out.LagError = "the broker did not answer: " + err.Error()
	} else {
		out.LagSnapshot = snap
	}
	if out.Lag == nil {
		out.Lag = []kafka.Lag{}
	}
	c.JSON(http.StatusOK, out)
}

// queryParams are the query parameters each management route takes
// (docs/openapi.yaml documents the same, which a test checks). Any other is
// refused: a typo such as ?subscription=… on POST /replay/dlq would
// otherwise redrive every parked delivery instead of one subscription's.
var queryParams = map[string][]string{
	"GET /sources":                                             {"limit", "cursor"},
	"GET /sources/:source_id/events":                           {"limit", "cursor", "type", "from", "to"},
	"GET /sources/:source_id/metrics":                          {"from", "to"},
	"GET /sources/:source_id/subscriptions":                    {"limit", "cursor"},
	"POST /sources/:source_id/events/:event_id/replay":         {"subscription_id", "force"},
	"POST /sources/:source_id/replay":                          {"from", "to", "subscription_id", "force", "cursor"},
	"GET /dlq":                                                 {"subscription_id", "source_id", "reason", "limit", "cursor"},
	"GET /keys":                                                {"limit", "cursor"},
	"POST /replay/dlq":                                         {"subscription_id", "source_id", "reason"},
	"POST /secrets/rewrap":                                     {"cursor"},
	"GET /sources/:source_id/subscriptions/:sub_id/lane":       {"ordering_key"},
	"POST /sources/:source_id/subscriptions/:sub_id/lane/skip": {"ordering_key"},
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
			rest.Fail(c, http.StatusBadRequest, "unknown_parameter", fmt.Sprintf("unknown query parameter %q; this route %s", name, what))
			return
		}
	}
}

func (a *API) recoverer() gin.HandlerFunc {
	return func(c *gin.Context) {
		defer func() {
			if p := recover(); p != nil {
				if p == http.ErrAbortHandler {
					panic(p)
				}
				a.log.ErrorContext(c.Request.Context(), "handler panicked", "panic", fmt.Sprint(p), "route", c.FullPath())
				rest.Fail(c, http.StatusInternalServerError, "internal", "internal error; see the service log")
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
		if status >= 400 && c.GetString("error_code") != rest.CodeServerBusy {
			// (server_busy refusals are logged by the hot path, once a
			// second with their count: under overload a line each would
			// cost what refusing saves.)
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

// auth resolves who a management request acts as (the principal the
// console put in its context, or the bearer token: RELAY_ADMIN_TOKEN or an
// API key) and lets it go on only when keys.Decide allows it: 401 for a
// missing or wrong token, 403 naming what the key lacks.
func (a *API) auth() gin.HandlerFunc {
	return func(c *gin.Context) {
		p, ok := keys.FromContext(c.Request.Context())
		if !ok {
			if p, ok = a.authenticate(c); !ok {
				return
			}
			c.Request = c.Request.WithContext(keys.WithPrincipal(c.Request.Context(), p))
		}
		src := c.Param("source_id")
		if src == "" {
			src = c.Query("source_id")
		}
		if v := keys.Decide(p, keys.Request{Method: c.Request.Method, Route: c.FullPath(), SourceID: src}); !v.Allowed() {
			c.Set("key_id", p.KeyID)
			rest.Fail(c, http.StatusForbidden, v.Code, v.Message)
			return
		}
		c.Next()
	}
}

// authenticate reads the bearer token: the admin token (or the previous
// one, during a rotation), compared in constant time, or an API key. It
// answers 401, or 503 when the keys cannot be read, and reports false.
func (a *API) authenticate(c *gin.Context) (keys.Principal, bool) {
	token, _ := strings.CutPrefix(c.GetHeader("Authorization"), "Bearer ")
	if a.isAdminToken(token) {
		return keys.Principal{Scope: keys.Admin}, true
	}
	if _, ok := keys.IDOf(token); ok && a.keys != nil {
		k, err := a.keys.Verify(c.Request.Context(), token)
		if err == nil {
			return k.Principal(), true
		}
		if !errors.Is(err, keys.ErrUnknown) {
			a.log.WarnContext(c.Request.Context(), "api keys unreadable", "error", err)
			rest.Unavailable(c, "redis_unavailable", "the API keys cannot be read now (Redis); retry shortly, or use RELAY_ADMIN_TOKEN", 5*time.Second)
			return keys.Principal{}, false
		}
	}
	c.Header("WWW-Authenticate", `Bearer realm="relay"`)
	rest.Fail(c, http.StatusUnauthorized, "unauthorized", "missing or wrong Authorization: Bearer token (an API key, or RELAY_ADMIN_TOKEN)")
	return keys.Principal{}, false
}

// isAdminToken reports whether token is RELAY_ADMIN_TOKEN or the previous
// one. Both are compared every time, so the timing says nothing of which.
func (a *API) isAdminToken(token string) bool {
	if a.cfg.AdminToken == "" {
		return false
	}
	ok := subtle.ConstantTimeCompare([]byte(token), []byte(a.cfg.AdminToken))
	if a.cfg.PreviousAdminToken != "" {
		ok |= subtle.ConstantTimeCompare([]byte(token), []byte(a.cfg.PreviousAdminToken))
	}
	return ok == 1
}

type metrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
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
	}
	reg.MustRegister(m.requests, m.duration)
	return m
}
