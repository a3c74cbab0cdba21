// Package ingest is Relay's front door: it verifies each inbound webhook's
// signature, drops sender retries, produces the event to Kafka with acks=all
// and answers 2xx only once the broker has it. It also serves the management
// API. Replicas are stateless and run behind a load balancer.
package ingest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/relayhq/relay/pkg/archivefile"
	"github.com/relayhq/relay/pkg/catalog"
	"github.com/relayhq/relay/pkg/counters"
	"github.com/relayhq/relay/pkg/delivery"
	"github.com/relayhq/relay/pkg/envconfig"
	"github.com/relayhq/relay/pkg/health"
	"github.com/relayhq/relay/pkg/kafka"
	"github.com/relayhq/relay/pkg/lanes"
	"github.com/relayhq/relay/pkg/lifecycle"
	"github.com/relayhq/relay/pkg/payloads"
	"github.com/relayhq/relay/pkg/redisconn"
	"github.com/relayhq/relay/pkg/secretbox"
	"github.com/relayhq/relay/pkg/signature"
	"github.com/relayhq/relay/pkg/throttle"
	"github.com/relayhq/relay/services/ingest/internal/api"
	"github.com/relayhq/relay/services/ingest/internal/console"
	"github.com/relayhq/relay/services/ingest/internal/dedup"
	"github.com/relayhq/relay/services/ingest/internal/dlq"
	"github.com/relayhq/relay/services/ingest/internal/eventstore"
	"github.com/relayhq/relay/services/ingest/internal/inbound"
	"github.com/relayhq/relay/services/ingest/internal/keys"
	"github.com/relayhq/relay/services/ingest/internal/manage"
)

// Config is ingest's configuration. LoadConfig documents each variable.
type Config struct {
	HTTPAddr                 string
	AdminAddr                string
	PublicURL                string
	AdminToken               string
	PreviousAdminToken       string
	TrustedProxies           []string
	SecretKey                []byte
	PreviousSecretKey        []byte
	MaxInflightBytes         int64
	MaxInflightRequests      int
	DedupWindow              time.Duration
	DedupWait                time.Duration
	EventRetention           time.Duration
	StateRetention           time.Duration
	ProduceTimeout           time.Duration
	RotationGrace            time.Duration
	RedriveBudget            time.Duration
	AllowPrivateDestinations bool
	RequireHTTPS             bool
	Console                  ConsoleConfig
	HTTP                     lifecycle.HTTPTimeouts
	// Archive is where events are read from once Kafka has deleted them
	// (the RELAY_S3_* variables the archive service writes with); without
	// RELAY_S3_BUCKET there is no such fallback.
	Archive archivefile.Config
	Kafka   kafka.Config
	Redis   redisconn.Config
}

// ConsoleConfig is where and how the web console is served.
type ConsoleConfig struct {
	Enabled bool
	// Addr serves the console on a listener of its own instead of the
	// API's; empty for the API's.
	Addr          string
	SessionTTL    time.Duration
	SecureCookies bool
}

// LoadConfig reads ingest's configuration from r and validates it.
func LoadConfig(r *envconfig.Reader) (Config, error) {
	t := lifecycle.DefaultHTTPTimeouts()
	c := Config{
		// RELAY_HTTP_ADDR: where the API listens.
		HTTPAddr: r.String("RELAY_HTTP_ADDR", ":8080"),
		// RELAY_ADMIN_ADDR: where /healthz, /readyz with each check's result, and /metrics
		// are served apart from the API; empty (the default) serves none.
		AdminAddr: r.String("RELAY_ADMIN_ADDR", ""),
		// RELAY_PUBLIC_URL: the base URL senders use, for absolute ingest URLs in responses.
		PublicURL: r.String("RELAY_PUBLIC_URL", ""),
		// RELAY_TRUSTED_PROXIES: load balancers (IPs or CIDRs) whose X-Forwarded-For names the client.
		TrustedProxies: r.List("RELAY_TRUSTED_PROXIES", nil),
		// RELAY_ADMIN_TOKEN: the bearer token of the management routes. Required.
		AdminToken: r.String("RELAY_ADMIN_TOKEN", ""),
		// RELAY_ADMIN_TOKEN_PREVIOUS: a token still accepted while clients move to a new one.
		PreviousAdminToken: r.String("RELAY_ADMIN_TOKEN_PREVIOUS", ""),
		// RELAY_INGEST_MAX_INFLIGHT_BYTES: the bytes request bodies may hold in memory at
		// once; beyond it a request is answered 503 with Retry-After.
		MaxInflightBytes: r.Int64("RELAY_INGEST_MAX_INFLIGHT_BYTES", 128<<20),
		// RELAY_INGEST_MAX_INFLIGHT_REQUESTS: inbound webhooks worked on at once; beyond it a
		// request is answered 503 with Retry-After at once rather than queued.
		MaxInflightRequests: r.Int("RELAY_INGEST_MAX_INFLIGHT_REQUESTS", 1024),
		// RELAY_DEDUP_WINDOW: how long a dedup key is remembered, unless a source sets its own.
		DedupWindow: r.Duration("RELAY_DEDUP_WINDOW", 72*time.Hour),
		// RELAY_DEDUP_WAIT: how long a concurrent duplicate waits for the first request's outcome.
		DedupWait: r.Duration("RELAY_DEDUP_WAIT", 2*time.Second),
		// RELAY_EVENT_RETENTION: how long the events API lists an event (its index entry).
		EventRetention: r.Duration("RELAY_EVENT_RETENTION", 7*24*time.Hour),
		// RELAY_DELIVERY_STATE_RETENTION: how long a delivery's state is kept after its last change.
		StateRetention: r.Duration("RELAY_DELIVERY_STATE_RETENTION", delivery.DefaultRetention),
		// RELAY_PRODUCE_TIMEOUT: how long ingest waits for the broker's acknowledgement before answering 503.
		ProduceTimeout: r.Duration("RELAY_PRODUCE_TIMEOUT", 10*time.Second),
		// RELAY_ROTATION_GRACE: how long a rotated-out secret still verifies, by default.
		RotationGrace: r.Duration("RELAY_ROTATION_GRACE", 24*time.Hour),
		// RELAY_REDRIVE_BUDGET: how long one POST /replay/dlq call works before returning complete=false.
		RedriveBudget: r.Duration("RELAY_REDRIVE_BUDGET", 20*time.Second),
		// RELAY_ALLOW_PRIVATE_DESTINATIONS: allow subscription URLs on private addresses (development only).
		AllowPrivateDestinations: r.Bool("RELAY_ALLOW_PRIVATE_DESTINATIONS", false),
		// RELAY_REQUIRE_HTTPS: refuse subscription URLs that are not https.
		RequireHTTPS: r.Bool("RELAY_REQUIRE_HTTPS", false),
		Console: ConsoleConfig{
			// RELAY_CONSOLE: serve the web console under /console.
			Enabled: r.Bool("RELAY_CONSOLE", true),
			// RELAY_CONSOLE_ADDR: serve the console on its own address (e.g. one only an
			// internal network reaches) instead of the API's; empty (the default) for the API's.
			Addr: r.String("RELAY_CONSOLE_ADDR", ""),
			// RELAY_CONSOLE_SESSION_TTL: how long a console sign-in lasts.
			SessionTTL: r.Duration("RELAY_CONSOLE_SESSION_TTL", 12*time.Hour),
			// RELAY_CONSOLE_SECURE_COOKIES: mark the session cookie Secure even on plain-HTTP
			// requests (TLS ended by a proxy that sends no X-Forwarded-Proto). It is Secure
			// anyway on HTTPS and behind X-Forwarded-Proto: https.
			SecureCookies: r.Bool("RELAY_CONSOLE_SECURE_COOKIES", false),
		},
		// RELAY_HTTP_*: the server's timeouts, and RELAY_HTTP_DRAIN_DELAY, how
		// long it keeps serving, unready, after SIGTERM.
		HTTP: lifecycle.HTTPTimeouts{
			ReadHeader:     r.Duration("RELAY_HTTP_READ_HEADER_TIMEOUT", t.ReadHeader),
			Read:           r.Duration("RELAY_HTTP_READ_TIMEOUT", t.Read),
			Write:          r.Duration("RELAY_HTTP_WRITE_TIMEOUT", t.Write),
			Idle:           r.Duration("RELAY_HTTP_IDLE_TIMEOUT", t.Idle),
			Shutdown:       r.Duration("RELAY_HTTP_SHUTDOWN_TIMEOUT", t.Shutdown),
			DrainDelay:     r.Duration("RELAY_HTTP_DRAIN_DELAY", 0),
			MaxHeaderBytes: r.Int("RELAY_HTTP_MAX_HEADER_BYTES", t.MaxHeaderBytes),
		},
		Archive: archivefile.LoadConfig(r),
		Kafka:   kafka.LoadConfig(r),
		Redis:   redisconn.LoadConfig(r),
	}
	c.SecretKey, c.PreviousSecretKey = secretbox.LoadKeys(r)
	if err := r.Err(); err != nil {
		return c, err
	}
	return c, c.Validate()
}

// Validate reports every problem, naming its variable.
func (c Config) Validate() error {
	var errs []error
	if c.AdminToken == "" {
		errs = append(errs, errors.New("RELAY_ADMIN_TOKEN: required (the management API must not be open)"))
	} else if len(c.AdminToken) < 16 {
		errs = append(errs, errors.New("RELAY_ADMIN_TOKEN: use at least 16 characters"))
	}
	if c.PreviousAdminToken != "" && len(c.PreviousAdminToken) < 16 {
		errs = append(errs, errors.New("RELAY_ADMIN_TOKEN_PREVIOUS: use at least 16 characters"))
	}
	if len(c.SecretKey) != secretbox.KeySize {
		errs = append(errs, errors.New("RELAY_SECRET_KEY: required, 32 bytes in base64 (make one with: openssl rand -base64 32)"))
	}
	if c.MaxInflightRequests < 1 {
		errs = append(errs, fmt.Errorf("RELAY_INGEST_MAX_INFLIGHT_REQUESTS: %d is below 1", c.MaxInflightRequests))
	}
	if c.MaxInflightBytes < c.Kafka.MaxBodyBytes {
		errs = append(errs, fmt.Errorf("RELAY_INGEST_MAX_INFLIGHT_BYTES: %d is below RELAY_MAX_BODY_BYTES (%d): the largest body could never be read", c.MaxInflightBytes, c.Kafka.MaxBodyBytes))
	}
	if c.DedupWindow < signature.DefaultTolerance {
		// The window of every source that does not set its own: a source
		// of a timestamped scheme must remember a key at least as long as
		// it accepts the request, which is 5m unless it sets its own.
		errs = append(errs, fmt.Errorf("RELAY_DEDUP_WINDOW: must be at least %s, the default signature tolerance", signature.DefaultTolerance))
	}
	if c.DedupWait < 0 || c.DedupWait > 30*time.Second {
		errs = append(errs, errors.New("RELAY_DEDUP_WAIT: must be from 0s to 30s"))
	}
	if c.EventRetention < time.Minute {
		errs = append(errs, errors.New("RELAY_EVENT_RETENTION: must be at least 1m"))
	}
	if c.StateRetention < time.Minute {
		errs = append(errs, errors.New("RELAY_DELIVERY_STATE_RETENTION: must be at least 1m"))
	}
	if c.ProduceTimeout < 100*time.Millisecond {
		errs = append(errs, errors.New("RELAY_PRODUCE_TIMEOUT: must be at least 100ms"))
	}
	if c.HTTP.Write <= c.ProduceTimeout+c.DedupWait || c.HTTP.Write <= c.RedriveBudget {
		errs = append(errs, errors.New("RELAY_HTTP_WRITE_TIMEOUT: must exceed RELAY_PRODUCE_TIMEOUT + RELAY_DEDUP_WAIT and RELAY_REDRIVE_BUDGET, or answers are cut off"))
	}
	if c.HTTP.ReadHeader <= 0 || c.HTTP.Read <= 0 || c.HTTP.Idle <= 0 || c.HTTP.Shutdown <= 0 {
		errs = append(errs, errors.New("RELAY_HTTP_*_TIMEOUT: timeouts must be positive"))
	}
	for _, p := range c.TrustedProxies {
		if _, err := netip.ParsePrefix(p); err != nil {
			if _, err := netip.ParseAddr(p); err != nil {
				errs = append(errs, fmt.Errorf("RELAY_TRUSTED_PROXIES: %q is neither an IP address nor a CIDR", p))
			}
		}
	}
	if c.HTTP.DrainDelay < 0 || c.HTTP.DrainDelay > 5*time.Minute {
		errs = append(errs, errors.New("RELAY_HTTP_DRAIN_DELAY: must be from 0s to 5m"))
	}
	if c.Archive.Bucket != "" {
		if err := c.Archive.Validate(); err != nil {
			errs = append(errs, err)
		}
	}
	if err := c.Kafka.Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := c.Redis.Validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// Service is a running ingest replica.
type Service struct {
	log    *slog.Logger
	server *lifecycle.HTTPServer
	// admin serves the detailed probes and metrics (RELAY_ADMIN_ADDR); nil without one.
	admin *lifecycle.HTTPServer
	// console serves the web console on its own address (RELAY_CONSOLE_ADDR);
	// nil when it is on the API's, or off.
	console   *lifecycle.HTTPServer
	consoleOn bool
	closers   *lifecycle.Closers
}

// New connects to Kafka and Redis, creates the topics and starts listening.
func New(ctx context.Context, cfg Config, d lifecycle.Deps) (*Service, error) {
	names, err := cfg.Kafka.Names()
	if err != nil {
		return nil, err
	}
	log := d.Logger
	in := kafka.Instrumentation{Logger: log, TracerProvider: d.Telemetry.ActiveTracerProvider(), Propagator: d.Telemetry.Propagator, Registerer: d.Telemetry.Registry}
	producer, err := kafka.NewClient(cfg.Kafka, "relay-ingest", in, in.Tracer("relay-ingest", "", false),
		append(kafka.ProducerOptions(cfg.Kafka),
			// A record never sent fails at RELAY_PRODUCE_TIMEOUT; one sent
			// is never cancelled, so that its outcome is always known and
			// the dedup claim of a request answered 503 meanwhile can be
			// settled by it (inbound.settleLate).
			kgo.RecordDeliveryTimeout(cfg.ProduceTimeout),
			// Larger batches of events, fewer of them: see kafka.StickyFor.
			kgo.RecordPartitioner(kafka.StickyFor(cfg.Kafka.Linger, names.Events)),
		)...)
	if err != nil {
		return nil, err
	}
	closers := lifecycle.NewClosers(log)
	closers.Add("kafka producer", func() error { return kafka.FlushAndClose(producer) })
	if err := kafka.EnsureTopicsRetrying(ctx, producer, cfg.Kafka, names, log); err != nil {
		return nil, closers.Fail(err)
	}
	kafka.WarmProducer(ctx, producer, log)
	box, err := secretbox.New(cfg.SecretKey, cfg.PreviousSecretKey)
	if err != nil {
		return nil, closers.Fail(fmt.Errorf("RELAY_SECRET_KEY: %w", err))
	}
	rdb := redisconn.New(cfg.Redis)
	closers.Add("redis", rdb.Close)
	// RELAY_REDIS_PIPELINES pipelines in flight, each carrying up to 128 requests' commands.
	pipe := redisconn.NewBatcher(rdb, cfg.Redis.Pipelines, 128, cfg.Redis.ReadTimeout+cfg.Redis.WriteTimeout)
	closers.Add("redis pipelines", func() error { pipe.Close(); return nil })
	deliveries := delivery.New(rdb, cfg.StateRetention)
	// Without Redis ingest still accepts (without dedup): report it, stay ready.
	ready := health.NewProbe(health.Checks{
		"kafka": func(ctx context.Context) error { return producer.Ping(ctx) },
		"redis": func(ctx context.Context) error { return redisconn.Writable(ctx, rdb, health.Timeout) },
	}, log, "redis")
	var arc payloads.Archive
	if cfg.Archive.Bucket != "" {
		s3c, err := archivefile.NewClient(ctx, cfg.Archive)
		if err != nil {
			return nil, closers.Fail(fmt.Errorf("archive: %w", err))
		}
		arc = archivefile.Reader{S3: s3c, Bucket: cfg.Archive.Bucket}
	}
	cat := catalog.New(rdb, box)
	keyStore := keys.New(rdb)
	reader := payloads.New(producer, names.Events, cfg.Kafka.MaxMessageBytes(), arc, log)
	a := api.New(api.Config{
		AdminToken: cfg.AdminToken, PreviousAdminToken: cfg.PreviousAdminToken, TrustedProxies: cfg.TrustedProxies,
		Inbound: inbound.Config{
			MaxBodyBytes: cfg.Kafka.MaxBodyBytes, MaxInflightBytes: cfg.MaxInflightBytes, MaxInflightRequests: cfg.MaxInflightRequests, DefaultDedupWindow: cfg.DedupWindow,
			ProduceTimeout: cfg.ProduceTimeout, Names: names,
		},
		Manage: manage.Config{
			DefaultDedupWindow: cfg.DedupWindow, RotationGrace: cfg.RotationGrace, WorkBudget: cfg.RedriveBudget,
			AllowPrivateDestinations: cfg.AllowPrivateDestinations, RequireHTTPS: cfg.RequireHTTPS, PublicURL: cfg.PublicURL, Names: names,
		},
	}, api.Deps{
		Catalog:  cat,
		Events:   eventstore.New(rdb, cfg.EventRetention),
		Payloads: reader,
		// Skipping a blocked key reads its next event back, as deliver does.
		Lanes: &lanes.Advancer{
			Store: lanes.New(rdb), Reader: reader, Producer: producer,
			Topic: names.Deliveries, Events: names.Events, Log: log,
		},
		Deliveries: deliveries,
		Counters:   counters.New(rdb),
		Throttle:   throttle.New(rdb, throttle.Config{}),
		Dedup:      dedup.New(rdb, pipe, cfg.ProduceTimeout+10*time.Second, cfg.DedupWait),
		DLQ: &dlq.Manager{
			Kafka: cfg.Kafka, Names: names, Producer: producer, Redis: rdb,
			Deliveries: deliveries, Subscriptions: cat, Log: log, Budget: cfg.RedriveBudget,
		},
		Keys:     keyStore,
		Lag:      kafka.NewLagCollector(producer, names),
		Producer: producer, Pipe: pipe, Ready: ready, Telemetry: d.Telemetry, Logger: log,
	})
	var con *console.Console
	if cfg.Console.Enabled {
		con, err = console.New(console.Config{
			AdminToken: cfg.AdminToken, PreviousAdminToken: cfg.PreviousAdminToken,
			SessionTTL: cfg.Console.SessionTTL, SecureCookies: cfg.Console.SecureCookies,
		}, console.Deps{API: a.Manage(), Keys: keyStore, Redis: rdb, Logger: log})
		if err != nil {
			return nil, closers.Fail(err)
		}
		if cfg.Console.Addr == "" {
			a.Mount(con)
		}
	}
	server, err := lifecycle.NewHTTPServer("ingest-http", cfg.HTTPAddr, a.Handler(), cfg.HTTP, log)
	if err != nil {
		return nil, closers.Fail(err)
	}
	closers.Add("ingest-http listener", server.Close)
	var consoleServer *lifecycle.HTTPServer
	if con != nil && cfg.Console.Addr != "" {
		if consoleServer, err = lifecycle.NewHTTPServer("ingest-console", cfg.Console.Addr, con, cfg.HTTP, log); err != nil {
			return nil, closers.Fail(err)
		}
		closers.Add("ingest-console listener", consoleServer.Close)
	}
	// Unready from SIGTERM on, while RELAY_HTTP_DRAIN_DELAY keeps serving.
	ready.AddLive("shutdown", server.Draining)
	s := &Service{log: log, server: server, console: consoleServer, consoleOn: con != nil, closers: closers}
	if cfg.AdminAddr != "" {
		// It serves while the API drains, to say so.
		at := lifecycle.DefaultHTTPTimeouts()
		at.DrainDelay = cfg.HTTP.DrainDelay
		if s.admin, err = lifecycle.NewHTTPServer("ingest-admin", cfg.AdminAddr, health.Mux(d.Telemetry.Registry, ready), at, log); err != nil {
			return nil, closers.Fail(err)
		}
		closers.Add("ingest-admin listener", s.admin.Close)
	}
	return s, nil
}

// Addr is the address the API listens on.
func (s *Service) Addr() string { return s.server.Addr() }

// ConsoleAddr is where the console is served: the API's address, or its
// own (RELAY_CONSOLE_ADDR); "" when it is off.
func (s *Service) ConsoleAddr() string {
	switch {
	case s.console != nil:
		return s.console.Addr()
	case s.consoleOn:
		return s.server.Addr()
	}
	return ""
}

// AdminAddr is where the detailed probes and metrics are served, "" when
// RELAY_ADMIN_ADDR is not set.
func (s *Service) AdminAddr() string {
	if s.admin == nil {
		return ""
	}
	return s.admin.Addr()
}

// Run serves until ctx is cancelled, then stops accepting requests, drains
// in-flight ones, flushes the producer and closes Redis.
func (s *Service) Run(ctx context.Context) error {
	workers := []lifecycle.Worker{s.server}
	if s.admin != nil {
		workers = append(workers, s.admin)
	}
	if s.console != nil {
		workers = append(workers, s.console)
	}
	defer s.Close()
	return lifecycle.Run(ctx, s.log, workers)
}

// Close releases what New opened; Run does it when it returns.
func (s *Service) Close() { s.closers.Close() }
