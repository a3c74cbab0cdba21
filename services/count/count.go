// Package count is Relay's count service: consumer group relay-count on
// relay.events, keeping per-source counts by UTC day and event type in Redis,
// exactly once. Each polled batch of a partition is applied per source with
// one Redis script that also records the last offset counted (package
// counters), so a redelivered record never counts twice; offsets are
// committed after the scripts ran.
package count

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/relayhq/relay/pkg/counters"
	"github.com/relayhq/relay/pkg/envconfig"
	"github.com/relayhq/relay/pkg/health"
	"github.com/relayhq/relay/pkg/kafka"
	"github.com/relayhq/relay/pkg/lifecycle"
	"github.com/relayhq/relay/pkg/record"
	"github.com/relayhq/relay/pkg/redisconn"
)

// Config is the count service's configuration.
type Config struct {
	AdminAddr string
	Kafka     kafka.Config
	Redis     redisconn.Config
}

// LoadConfig reads the configuration from r and validates it.
func LoadConfig(r *envconfig.Reader) (Config, error) {
	c := Config{
		// RELAY_ADMIN_ADDR: where /healthz, /readyz and /metrics are served.
		AdminAddr: r.String("RELAY_ADMIN_ADDR", ":9091"),
		Kafka:     kafka.LoadConfig(r),
		Redis:     redisconn.LoadConfig(r),
	}
	if err := r.Err(); err != nil {
		return c, err
	}
	return c, errors.Join(c.Kafka.Validate(), c.Redis.Validate())
}

// Service is a running count replica.
type Service struct {
	log     *slog.Logger
	closers *lifecycle.Closers
	counter *Counter
	admin   *lifecycle.HTTPServer
}

// New connects to Kafka and Redis and creates the topics.
func New(ctx context.Context, cfg Config, d lifecycle.Deps) (*Service, error) {
	names, err := cfg.Kafka.Names()
	if err != nil {
		return nil, err
	}
	reg := d.Telemetry.Registry
	closers := lifecycle.NewClosers(d.Logger)
	rdb := redisconn.New(cfg.Redis)
	closers.Add("redis", rdb.Close)
	c := &Counter{store: counters.New(rdb), log: d.Logger, now: time.Now,
		counted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "relay_count_events_total", Help: "Events counted (each exactly once).",
		}),
		failures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "relay_count_redis_failures_total", Help: "Failed counter scripts (retried).",
		}),
	}
	// Commit by hand, after the counting scripts ran; the offsets in Redis
	// make even a second count of a batch harmless.
	c.batches = &kafka.Batches{Topic: names.Events, MaxRecords: 2000, Handle: c.handle, Log: d.Logger}
	reg.MustRegister(c.counted, c.failures)
	in := kafka.Instrumentation{Logger: d.Logger, TracerProvider: d.Telemetry.ActiveTracerProvider(), Propagator: d.Telemetry.Propagator, Registerer: reg}
	group := names.Group(record.GroupCount)
	opts := append(kafka.ConsumerOptions(cfg.Kafka, group, names.Events), c.batches.Options()...)
	cl, err := kafka.NewClient(cfg.Kafka, "relay-count", in, in.Tracer("relay-count", group, false), opts...)
	if err != nil {
		return nil, closers.Fail(err)
	}
	c.batches.SetClient(cl)
	closers.Add("kafka consumer", func() error { c.batches.Close(); return nil })
	if err := kafka.EnsureTopicsRetrying(ctx, cl, cfg.Kafka, names, d.Logger); err != nil {
		return nil, closers.Fail(err)
	}
	checks := health.Checks{
		"kafka": func(ctx context.Context) error { return cl.Ping(ctx) },
		"redis": func(ctx context.Context) error { return redisconn.Writable(ctx, rdb, health.Timeout) },
	}
	admin, err := lifecycle.NewHTTPServer("count-admin", cfg.AdminAddr, health.Mux(reg, health.NewProbe(checks, d.Logger)), lifecycle.DefaultHTTPTimeouts(), d.Logger)
	if err != nil {
		return nil, closers.Fail(err)
	}
	closers.Add("count-admin listener", admin.Close)
	return &Service{log: d.Logger, closers: closers, counter: c, admin: admin}, nil
}

// AdminAddr is where /healthz, /readyz and /metrics are served.
func (s *Service) AdminAddr() string { return s.admin.Addr() }

// Run counts until ctx is cancelled.
func (s *Service) Run(ctx context.Context) error {
	defer s.Close()
	return lifecycle.Run(ctx, s.log, []lifecycle.Worker{s.counter}, []lifecycle.Worker{s.admin})
}

// Close releases what New opened; Run does it when it returns.
func (s *Service) Close() { s.closers.Close() }
