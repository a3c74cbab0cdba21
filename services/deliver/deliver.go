// Package deliver is Relay's delivery engine: at least once per (event,
// subscription), retried through delay-tier topics, parked in the DLQ when
// the ladder is exhausted or the endpoint refuses for good, and never POSTed
// again once recorded delivered. See docs/guarantees.md.
package deliver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"time"

	"github.com/relayhq/relay/pkg/catalog"
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
	"github.com/relayhq/relay/services/deliver/internal/alert"
	"github.com/relayhq/relay/services/deliver/internal/consumer"
	"github.com/relayhq/relay/services/deliver/internal/dispatch"
	"github.com/relayhq/relay/services/deliver/internal/engine"
	"github.com/relayhq/relay/services/deliver/internal/gate"
	"github.com/relayhq/relay/services/deliver/internal/sender"
	"github.com/relayhq/relay/services/deliver/internal/subs"
	"github.com/relayhq/relay/services/deliver/internal/valve"
)

// Config is deliver's configuration. LoadConfig documents each variable.
type Config struct {
	AdminAddr                string
	SecretKey                []byte
	PreviousSecretKey        []byte
	Concurrency              int
	PerSubscription          int
	SubscriptionBacklog      int
	MaxInFlightRecords       int
	MaxInFlightBytes         int64
	DeliveryTimeout          time.Duration
	ConnectTimeout           time.Duration
	RevokeWait               time.Duration
	StateRetention           time.Duration
	SubscriptionCacheTTL     time.Duration
	AllowPrivateDestinations bool
	RequireHTTPS             bool
	// DeliveryProxy is the egress proxy of deliveries and alerts; nil: none.
	DeliveryProxy      *url.URL
	AlertWebhookURL    string
	AlertWebhookSecret string
	// Breaker is the subscriptions' circuit breaker; DisableAfter how long
	// a circuit may stay open before its subscription is disabled (0: never).
	Breaker      throttle.Config
	DisableAfter time.Duration
	Kafka        kafka.Config
	Redis        redisconn.Config
}

// LoadConfig reads deliver's configuration from r and validates it.
func LoadConfig(r *envconfig.Reader) (Config, error) {
	c := Config{
		// RELAY_ADMIN_ADDR: where /healthz, /readyz and /metrics are served.
		AdminAddr: r.String("RELAY_ADMIN_ADDR", ":9091"),
		// RELAY_DELIVER_CONCURRENCY: outbound requests in flight at once, overall.
		Concurrency: r.Int("RELAY_DELIVER_CONCURRENCY", 256),
		// RELAY_DELIVER_PER_SUBSCRIPTION: the most outbound requests in flight at once to one
		// subscription; each subscription's own limit adapts below it to its endpoint's answers.
		PerSubscription: r.Int("RELAY_DELIVER_PER_SUBSCRIPTION", 96),
		// RELAY_DELIVER_SUBSCRIPTION_BACKLOG: deliveries queued in memory per subscription;
		// beyond it, new ones wait for room when they would start within the first retry
		// tier's delay, and are otherwise deferred to that tier without spending an attempt.
		SubscriptionBacklog: r.Int("RELAY_DELIVER_SUBSCRIPTION_BACKLOG", 128),
		// RELAY_DELIVER_MAX_INFLIGHT_RECORDS: records worked on at once per consumer group.
		MaxInFlightRecords: r.Int("RELAY_DELIVER_MAX_INFLIGHT_RECORDS", 1000),
		// RELAY_DELIVER_MAX_INFLIGHT_BYTES: payload bytes of the records worked on at once,
		// both consumer groups together.
		MaxInFlightBytes: r.Int64("RELAY_DELIVER_MAX_INFLIGHT_BYTES", 64<<20),
		// RELAY_DELIVERY_TIMEOUT: the whole of one attempt, connect to last response byte.
		DeliveryTimeout: r.Duration("RELAY_DELIVERY_TIMEOUT", 15*time.Second),
		// RELAY_DELIVERY_CONNECT_TIMEOUT: the TCP connect of one attempt.
		ConnectTimeout: r.Duration("RELAY_DELIVERY_CONNECT_TIMEOUT", 5*time.Second),
		// RELAY_REVOKE_WAIT: how long a revoked partition's in-flight deliveries may finish.
		RevokeWait: r.Duration("RELAY_REVOKE_WAIT", 10*time.Second),
		// RELAY_DELIVERY_STATE_RETENTION: how long a delivery's state is kept after its last change.
		StateRetention: r.Duration("RELAY_DELIVERY_STATE_RETENTION", delivery.DefaultRetention),
		// RELAY_SUBSCRIPTION_CACHE_TTL: how soon a subscription change made through the API is seen.
		SubscriptionCacheTTL: r.Duration("RELAY_SUBSCRIPTION_CACHE_TTL", 2*time.Second),
		// RELAY_ALLOW_PRIVATE_DESTINATIONS: lift the SSRF guard (development and tests only).
		AllowPrivateDestinations: r.Bool("RELAY_ALLOW_PRIVATE_DESTINATIONS", false),
		// RELAY_REQUIRE_HTTPS: deliver only to https:// endpoints.
		RequireHTTPS: r.Bool("RELAY_REQUIRE_HTTPS", false),
		// RELAY_ALERT_WEBHOOK_URL: where relay.delivery.dead alerts are POSTed; empty disables them.
		AlertWebhookURL: r.String("RELAY_ALERT_WEBHOOK_URL", ""),
		// RELAY_ALERT_WEBHOOK_SECRET: whsec_ secret signing the alerts (Standard Webhooks).
		AlertWebhookSecret: r.String("RELAY_ALERT_WEBHOOK_SECRET", ""),
		Breaker: throttle.Config{
			// RELAY_BREAKER_FAILURES: failed attempts in a row (network errors, timeouts, 408,
			// 5xx) that open a subscription's circuit; 0 turns the breaker off.
			Failures: r.Int("RELAY_BREAKER_FAILURES", 10),
			// RELAY_BREAKER_COOLDOWN: how long a circuit stays open before its first probe.
			Cooldown: r.Duration("RELAY_BREAKER_COOLDOWN", 30*time.Second),
			// RELAY_BREAKER_MAX_COOLDOWN: the cool-down doubles with each failed probe, up to this.
			MaxCooldown: r.Duration("RELAY_BREAKER_MAX_COOLDOWN", 10*time.Minute),
		},
		// RELAY_BREAKER_DISABLE_AFTER: a subscription whose circuit stays open this long is
		// disabled, its pending deliveries parked in the DLQ (0: never).
		DisableAfter: r.Duration("RELAY_BREAKER_DISABLE_AFTER", 120*time.Hour),
		Kafka:        kafka.LoadConfig(r),
		Redis:        redisconn.LoadConfig(r),
	}
	c.SecretKey, c.PreviousSecretKey = secretbox.LoadKeys(r)
	// Others wait while a probe is out: as long as it can take.
	c.Breaker.ProbeWindow = c.DeliveryTimeout + 5*time.Second
	// RELAY_DELIVERY_PROXY: an egress proxy (http://, https:// or socks5://,
	// credentials in the URL if it wants them) for every delivery and alert.
	proxy, proxyErr := parseProxy(r.String("RELAY_DELIVERY_PROXY", ""))
	c.DeliveryProxy = proxy
	if err := r.Err(); err != nil {
		return c, err
	}
	if proxyErr != nil {
		return c, proxyErr
	}
	return c, c.Validate()
}

// parseProxy reads RELAY_DELIVERY_PROXY. Its error never quotes the value,
// which may carry the proxy's credentials.
func parseProxy(v string) (*url.URL, error) {
	if v == "" {
		return nil, nil
	}
	u, err := url.Parse(v)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https" && u.Scheme != "socks5") || u.Hostname() == "" {
		return nil, errors.New("RELAY_DELIVERY_PROXY: want an http://, https:// or socks5:// URL with a host (the value is not shown: it may hold credentials)")
	}
	return u, nil
}

// Validate reports every problem, naming its variable.
func (c Config) Validate() error {
	var errs []error
	if len(c.SecretKey) != secretbox.KeySize {
		errs = append(errs, errors.New("RELAY_SECRET_KEY: required, the same 32-byte base64 key ingest uses"))
	}
	positive := map[string]int{
		"RELAY_DELIVER_CONCURRENCY": c.Concurrency, "RELAY_DELIVER_PER_SUBSCRIPTION": c.PerSubscription,
		"RELAY_DELIVER_SUBSCRIPTION_BACKLOG": c.SubscriptionBacklog, "RELAY_DELIVER_MAX_INFLIGHT_RECORDS": c.MaxInFlightRecords,
	}
	for name, v := range positive {
		if v < 1 {
			errs = append(errs, fmt.Errorf("%s: %d is below 1", name, v))
		}
	}
	switch b := c.Breaker; {
	case b.Failures < 0:
		errs = append(errs, fmt.Errorf("RELAY_BREAKER_FAILURES: %d is below 0 (0 turns the breaker off)", b.Failures))
	case b.Failures > 0 && b.Cooldown <= 0:
		errs = append(errs, errors.New("RELAY_BREAKER_COOLDOWN: must be positive while the breaker is on"))
	case b.Failures > 0 && b.MaxCooldown < b.Cooldown:
		errs = append(errs, fmt.Errorf("RELAY_BREAKER_MAX_COOLDOWN: %s is below RELAY_BREAKER_COOLDOWN (%s)", b.MaxCooldown, b.Cooldown))
	}
	if c.DisableAfter < 0 {
		errs = append(errs, errors.New("RELAY_BREAKER_DISABLE_AFTER: must not be negative (0: never)"))
	}
	if c.MaxInFlightBytes < c.Kafka.MaxBodyBytes {
		errs = append(errs, fmt.Errorf("RELAY_DELIVER_MAX_INFLIGHT_BYTES: %d is below RELAY_MAX_BODY_BYTES (%d)", c.MaxInFlightBytes, c.Kafka.MaxBodyBytes))
	}
	if c.DeliveryTimeout < 100*time.Millisecond || c.DeliveryTimeout > 5*time.Minute {
		errs = append(errs, errors.New("RELAY_DELIVERY_TIMEOUT: must be from 100ms to 5m"))
	}
	if c.ConnectTimeout <= 0 || c.ConnectTimeout > c.DeliveryTimeout {
		errs = append(errs, errors.New("RELAY_DELIVERY_CONNECT_TIMEOUT: must be positive and at most RELAY_DELIVERY_TIMEOUT"))
	}
	if c.RevokeWait < 0 {
		errs = append(errs, errors.New("RELAY_REVOKE_WAIT: must not be negative"))
	}
	var ladder time.Duration
	for _, d := range c.Kafka.RetryTiers {
		ladder += d
	}
	if c.StateRetention < max(time.Minute, ladder) {
		// A delivery's state says it was delivered for as long as a record
		// of it can come back: it must outlast the ladder.
		errs = append(errs, fmt.Errorf("RELAY_DELIVERY_STATE_RETENTION: %v is shorter than 1m or the retry ladder (%v in all)", c.StateRetention, ladder))
	}
	if c.SubscriptionCacheTTL < 0 {
		errs = append(errs, errors.New("RELAY_SUBSCRIPTION_CACHE_TTL: must not be negative"))
	}
	if c.AlertWebhookSecret != "" {
		if err := (signature.StandardWebhooks{}).CheckSecret(c.AlertWebhookSecret); err != nil {
			errs = append(errs, fmt.Errorf("RELAY_ALERT_WEBHOOK_SECRET: %w", err))
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

// Service is a running deliver replica.
type Service struct {
	log        *slog.Logger
	closers    *lifecycle.Closers
	admin      *lifecycle.HTTPServer
	events     *consumer.Events
	retries    *consumer.Retries
	dispatcher *dispatch.Dispatcher
	gate       *gate.Gate
	alerts     *alert.Notifier
}

// New connects to Kafka and Redis, creates the topics and builds the consumers.
func New(ctx context.Context, cfg Config, d lifecycle.Deps) (*Service, error) {
	names, err := cfg.Kafka.Names()
	if err != nil {
		return nil, err
	}
	log := d.Logger
	reg := d.Telemetry.Registry
	if held := cfg.SubscriptionBacklog + cfg.PerSubscription; held >= cfg.MaxInFlightRecords {
		// Each record being worked on holds a place until all its
		// deliveries settle: one slow subscription, its queue full, could
		// hold every place and stop delivery to all the others.
		log.Warn("one slow subscription can hold every record deliver works on: keep RELAY_DELIVER_SUBSCRIPTION_BACKLOG + RELAY_DELIVER_PER_SUBSCRIPTION well below RELAY_DELIVER_MAX_INFLIGHT_RECORDS",
			"backlog_plus_concurrency", held, "max_inflight_records", cfg.MaxInFlightRecords)
	}
	in := kafka.Instrumentation{Logger: log, TracerProvider: d.Telemetry.ActiveTracerProvider(), Propagator: d.Telemetry.Propagator, Registerer: reg}
	producer, err := kafka.NewClient(cfg.Kafka, "relay-deliver-producer", in, in.Tracer("relay-deliver-producer", "", false), kafka.ProducerOptions(cfg.Kafka)...)
	if err != nil {
		return nil, err
	}
	s := &Service{log: log, closers: lifecycle.NewClosers(log)}
	s.closers.Add("kafka producer", func() error { return kafka.FlushAndClose(producer) })
	fail := func(err error) (*Service, error) { return nil, s.closers.Fail(err) }
	if err := kafka.EnsureTopicsRetrying(ctx, producer, cfg.Kafka, names, log); err != nil {
		return fail(err)
	}
	kafka.WarmProducer(ctx, producer, log)
	box, err := secretbox.New(cfg.SecretKey, cfg.PreviousSecretKey)
	if err != nil {
		return fail(fmt.Errorf("RELAY_SECRET_KEY: %w", err))
	}
	rdb := redisconn.New(cfg.Redis)
	s.closers.Add("redis", rdb.Close)
	store := catalog.New(rdb, box)
	subscriptions := subs.New(store, cfg.SubscriptionCacheTTL)
	s.gate = gate.New(rdb, log, reg)
	var alerter engine.Alerter
	var disabledAlerts valve.Alerter
	if cfg.AlertWebhookURL != "" {
		s.alerts = alert.New(cfg.AlertWebhookURL, cfg.AlertWebhookSecret, cfg.DeliveryProxy, log, reg)
		alerter, disabledAlerts = s.alerts, s.alerts
	}
	valves := valve.New(valve.Config{DisableAfter: cfg.DisableAfter}, valve.Deps{
		Store: throttle.New(rdb, cfg.Breaker), Disabler: subscriptions, Alerts: disabledAlerts, Logger: log, Reg: reg,
	})
	// Begin and finish scripts of concurrent deliveries share pipelines
	// (RELAY_REDIS_PIPELINES of them in flight).
	pipe := redisconn.NewBatcher(rdb, cfg.Redis.Pipelines, 128, cfg.Redis.ReadTimeout+cfg.Redis.WriteTimeout)
	s.closers.Add("redis pipelines", func() error { pipe.Close(); return nil })
	eng := engine.New(engine.Config{Names: names, LeaseFor: cfg.DeliveryTimeout + 15*time.Second}, engine.Deps{
		States:   delivery.New(rdb, cfg.StateRetention).WithPipeliner(pipe),
		Disabler: subscriptions,
		Sender: sender.New(sender.Config{
			Timeout: cfg.DeliveryTimeout, ConnectTimeout: cfg.ConnectTimeout,
			AllowPrivate: cfg.AllowPrivateDestinations, MaxIdlePerHost: cfg.PerSubscription, Proxy: cfg.DeliveryProxy,
			RequireHTTPS: cfg.RequireHTTPS,
		}, d.Telemetry.ActiveTracerProvider()),
		Producer: producer,
		// The next event of an ordered key is read back from Kafka by
		// its coordinates when its turn comes: Redis holds no payload.
		Lanes: &lanes.Advancer{
			Store:    lanes.New(rdb),
			Reader:   payloads.New(producer, names.Events, cfg.Kafka.MaxMessageBytes(), nil, log),
			Producer: producer, Topic: names.Deliveries, Events: names.Events, Log: log,
		},
		Alerts:   alerter,
		Observer: valves,
		Retrier:  s.gate,
		Metrics:  engine.NewMetrics(reg),
		Logger:   log,
	})
	// A delivery waits for room in its subscription's queue for at most what
	// deferring it would cost: the first tier's delay.
	s.dispatcher = dispatch.New(cfg.Concurrency, cfg.PerSubscription, cfg.SubscriptionBacklog, names.Tiers[0].Delay, cfg.DeliveryTimeout+5*time.Second)
	bytes := consumer.NewBudget(cfg.MaxInFlightBytes)
	cd := consumer.Deps{Engine: eng, Subs: subscriptions, Dispatcher: s.dispatcher, Gate: s.gate, Bytes: bytes, Logger: log,
		Filters: consumer.NewFilters(reg, log), Valve: valves,
		// A tenth of the records and a quarter of the bytes either consumer
		// works on: throttled deliveries never hold most of deliver.
		Waiting: consumer.NewWaitRoom(max(cfg.MaxInFlightRecords/10, 1), int(cfg.MaxInFlightBytes/4)),
	}
	opts := consumer.Options{MaxInFlight: cfg.MaxInFlightRecords, RevokeWait: cfg.RevokeWait}
	if s.events, err = consumer.NewEvents(cfg.Kafka, names, in, cd, opts); err != nil {
		return fail(err)
	}
	s.closers.Add("events consumer", func() error { s.events.Close(); return nil })
	if s.retries, err = consumer.NewRetries(cfg.Kafka, names, in, cd, opts); err != nil {
		return fail(err)
	}
	s.closers.Add("retries consumer", func() error { s.retries.Close(); return nil })
	reg.MustRegister(kafka.NewLagCollector(producer, names))
	reg.MustRegister(dispatchGauges(s.dispatcher)...)
	reg.MustRegister(budgetGauge(bytes))
	checks := health.Checks{
		"kafka": func(ctx context.Context) error { return producer.Ping(ctx) },
		"redis": func(ctx context.Context) error { return redisconn.Writable(ctx, rdb, health.Timeout) },
	}
	if s.admin, err = lifecycle.NewHTTPServer("deliver-admin", cfg.AdminAddr, health.Mux(reg, health.NewProbe(checks, log)), lifecycle.DefaultHTTPTimeouts(), log); err != nil {
		return fail(err)
	}
	s.closers.Add("deliver-admin listener", s.admin.Close)
	return s, nil
}

// AdminAddr is where /healthz, /readyz and /metrics are served.
func (s *Service) AdminAddr() string { return s.admin.Addr() }

// Run delivers until ctx is cancelled, then stops in order: consumers stop
// polling and settle or abandon their in-flight records (committing what is
// settled), the dispatcher drains, and the producer flushes.
func (s *Service) Run(ctx context.Context) error {
	stage3 := []lifecycle.Worker{s.gate, s.admin}
	if s.alerts != nil {
		stage3 = append(stage3, s.alerts)
	}
	defer s.Close()
	return lifecycle.Run(ctx, s.log,
		[]lifecycle.Worker{s.events, s.retries},
		[]lifecycle.Worker{s.dispatcher},
		stage3,
	)
}

// Close releases what New opened; Run does it when it returns.
func (s *Service) Close() { s.closers.Close() }
