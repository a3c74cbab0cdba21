// Package archive is Relay's archive service: consumer group relay-archive
// on relay.events, writing every event once to S3 (any S3-compatible store)
// as gzip NDJSON, independent of delivery. See package archiver for how a
// crash never duplicates a line.
package archive

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/relayhq/relay/pkg/archivefile"
	"github.com/relayhq/relay/pkg/envconfig"
	"github.com/relayhq/relay/pkg/health"
	"github.com/relayhq/relay/pkg/kafka"
	"github.com/relayhq/relay/pkg/lifecycle"
	"github.com/relayhq/relay/pkg/record"
	"github.com/relayhq/relay/services/archive/internal/archiver"
)

// Config is the archive service's configuration.
type Config struct {
	AdminAddr string
	Limits    archiver.Limits
	S3        archivefile.Config
	Kafka     kafka.Config
}

// LoadConfig reads the configuration from r and validates it.
func LoadConfig(r *envconfig.Reader) (Config, error) {
	s3cfg := archivefile.LoadConfig(r)
	c := Config{
		// RELAY_ADMIN_ADDR: where /healthz, /readyz and /metrics are served.
		AdminAddr: r.String("RELAY_ADMIN_ADDR", ":9091"),
		Limits: archiver.Limits{
			// RELAY_ARCHIVE_MAX_EVENTS: events per batch (per partition) at most.
			MaxEvents: r.Int("RELAY_ARCHIVE_MAX_EVENTS", 10000),
			// RELAY_ARCHIVE_MAX_BYTES: body bytes per batch at most (before compression).
			MaxBytes: r.Int("RELAY_ARCHIVE_MAX_BYTES", 32<<20),
			// RELAY_ARCHIVE_MAX_WAIT: how long a batch collects before it is written.
			MaxWait:     r.Duration("RELAY_ARCHIVE_MAX_WAIT", time.Minute),
			CallTimeout: s3cfg.Timeout,
		},
		S3:    s3cfg,
		Kafka: kafka.LoadConfig(r),
	}
	if err := r.Err(); err != nil {
		return c, err
	}
	return c, c.Validate()
}

// Validate reports every problem, naming its variable.
func (c Config) Validate() error {
	var errs []error
	if c.Limits.MaxEvents < 1 {
		errs = append(errs, errors.New("RELAY_ARCHIVE_MAX_EVENTS: must be at least 1"))
	}
	if c.Limits.MaxBytes < 1 {
		errs = append(errs, errors.New("RELAY_ARCHIVE_MAX_BYTES: must be at least 1"))
	}
	if c.Limits.MaxWait < 10*time.Millisecond {
		errs = append(errs, errors.New("RELAY_ARCHIVE_MAX_WAIT: must be at least 10ms"))
	}
	errs = append(errs, c.S3.Validate(), c.Kafka.Validate())
	return errors.Join(errs...)
}

// Service is a running archive replica.
type Service struct {
	log      *slog.Logger
	closers  *lifecycle.Closers
	archiver *archiver.Archiver
	admin    *lifecycle.HTTPServer
}

// New connects to Kafka and S3, creates the topics and the bucket.
func New(ctx context.Context, cfg Config, d lifecycle.Deps) (*Service, error) {
	return newService(ctx, cfg, d, nil)
}

// newService is New with a hook to wrap the S3 client (fault injection in tests).
func newService(ctx context.Context, cfg Config, d lifecycle.Deps, wrap func(*s3.Client) archiver.ObjectStore) (*Service, error) {
	names, err := cfg.Kafka.Names()
	if err != nil {
		return nil, err
	}
	client, err := archivefile.NewClient(ctx, cfg.S3)
	if err != nil {
		return nil, err
	}
	if err := ensureBucket(ctx, client, cfg.S3, d.Logger); err != nil {
		return nil, err
	}
	var store archiver.ObjectStore = client
	if wrap != nil {
		store = wrap(client)
	}
	reg := d.Telemetry.Registry
	a := archiver.New(store, cfg.S3.Bucket, names.Events, cfg.Limits, d.Logger, reg)
	in := kafka.Instrumentation{Logger: d.Logger, TracerProvider: d.Telemetry.ActiveTracerProvider(), Propagator: d.Telemetry.Propagator, Registerer: reg}
	group := names.Group(record.GroupArchive)
	opts := append(kafka.ConsumerOptions(cfg.Kafka, group, names.Events), a.Options()...)
	cl, err := kafka.NewClient(cfg.Kafka, "relay-archive", in, in.Tracer("relay-archive", group, false), opts...)
	if err != nil {
		return nil, err
	}
	a.SetClient(cl)
	closers := lifecycle.NewClosers(d.Logger)
	closers.Add("kafka consumer", func() error { a.Close(); return nil })
	if err := kafka.EnsureTopicsRetrying(ctx, cl, cfg.Kafka, names, d.Logger); err != nil {
		return nil, closers.Fail(err)
	}
	checks := health.Checks{
		"kafka": func(ctx context.Context) error { return cl.Ping(ctx) },
		"s3":    func(context.Context) error { return a.Healthy() },
	}
	admin, err := lifecycle.NewHTTPServer("archive-admin", cfg.AdminAddr, health.Mux(reg, health.NewProbe(checks, d.Logger)), lifecycle.DefaultHTTPTimeouts(), d.Logger)
	if err != nil {
		return nil, closers.Fail(err)
	}
	closers.Add("archive-admin listener", admin.Close)
	return &Service{log: d.Logger, closers: closers, archiver: a, admin: admin}, nil
}

// ensureBucket creates the bucket when it is missing and creation is allowed.
func ensureBucket(ctx context.Context, c *s3.Client, cfg archivefile.Config, log *slog.Logger) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	for {
		_, err := c.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: aws.String(cfg.Bucket)})
		if err == nil {
			return nil
		}
		var nf *s3types.NotFound
		if errors.As(err, &nf) {
			if !cfg.CreateBucket {
				return fmt.Errorf("bucket %s does not exist and RELAY_S3_CREATE_BUCKET=false", cfg.Bucket)
			}
			_, cerr := c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(cfg.Bucket)})
			var owned *s3types.BucketAlreadyOwnedByYou
			if cerr == nil || errors.As(cerr, &owned) {
				log.Info("archive bucket created", "bucket", cfg.Bucket)
				return nil
			}
			err = cerr
		}
		if ctx.Err() != nil {
			return fmt.Errorf("archive bucket %s: %w", cfg.Bucket, err)
		}
		log.Warn("archive bucket not reachable yet, retrying", "bucket", cfg.Bucket, "error", err)
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}

// AdminAddr is where /healthz, /readyz and /metrics are served.
func (s *Service) AdminAddr() string { return s.admin.Addr() }

// Run archives until ctx is cancelled.
func (s *Service) Run(ctx context.Context) error {
	defer s.Close()
	return lifecycle.Run(ctx, s.log, []lifecycle.Worker{s.archiver}, []lifecycle.Worker{s.admin})
}

// Close releases what New opened; Run does it when it returns.
func (s *Service) Close() { s.closers.Close() }
