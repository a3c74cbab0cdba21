// Package stack composes Relay's services in one process: `relay dev` runs
// it on embedded stand-ins, and the end-to-end tests run it on the real
// broker and Redis. Each service keeps its own configuration (read through
// the same RELAY_* variables), registry and lifecycle.
package stack

import (
	"context"
	"fmt"
	"log/slog"

	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/sync/errgroup"

	"github.com/relayhq/relay/pkg/envconfig"
	"github.com/relayhq/relay/pkg/lifecycle"
	"github.com/relayhq/relay/pkg/telemetry"
	"github.com/relayhq/relay/services/archive"
	"github.com/relayhq/relay/services/count"
	"github.com/relayhq/relay/services/deliver"
	"github.com/relayhq/relay/services/ingest"
)

// Options say what to run.
type Options struct {
	// Env returns where a service ("ingest", "deliver", "archive", "count")
	// reads its RELAY_* configuration.
	Env func(service string) envconfig.LookupFunc
	// Logger receives every service's logs, each tagged with its service.
	Logger *slog.Logger
	// TracerProvider traces every service; nil means no tracing.
	TracerProvider trace.TracerProvider
	// Deliver, Archive and Count add those services; ingest always runs.
	Deliver, Archive, Count bool
}

// Stack is a set of running services.
type Stack struct {
	Ingest   *ingest.Service
	Deliver  *deliver.Service
	Archive  *archive.Service
	Count    *count.Service
	services []service
}

// deps are one service's logger and telemetry: the stack's tracer, and a
// registry of the service's own, as if it ran as its own process.
func (o Options) deps(service string) lifecycle.Deps {
	tp := o.TracerProvider
	if tp == nil {
		tp = trace.NewNoopTracerProvider()
	}
	return lifecycle.Deps{Logger: o.Logger.With("service", service), Telemetry: &telemetry.Telemetry{
		TracerProvider: tp,
		Tracing:        o.TracerProvider != nil,
		Propagator:     propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}),
		Registry:       telemetry.NewRegistry(),
	}}
}

// New builds every service. Nothing runs until Run. When one cannot be
// built, those built before it are closed.
func New(ctx context.Context, o Options) (st *Stack, err error) {
	s := &Stack{}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	icfg, err := ingest.LoadConfig(envconfig.New(o.Env("ingest")))
	if err != nil {
		return nil, fmt.Errorf("ingest configuration: %w", err)
	}
	if s.Ingest, err = ingest.New(ctx, icfg, o.deps("ingest")); err != nil {
		return nil, fmt.Errorf("ingest: %w", err)
	}
	s.add(s.Ingest)
	if o.Deliver {
		if s.Deliver, err = NewDeliver(ctx, o); err != nil {
			return nil, err
		}
		s.add(s.Deliver)
	}
	if o.Archive {
		acfg, err := archive.LoadConfig(envconfig.New(o.Env("archive")))
		if err != nil {
			return nil, fmt.Errorf("archive configuration: %w", err)
		}
		if s.Archive, err = archive.New(ctx, acfg, o.deps("archive")); err != nil {
			return nil, fmt.Errorf("archive: %w", err)
		}
		s.add(s.Archive)
	}
	if o.Count {
		ccfg, err := count.LoadConfig(envconfig.New(o.Env("count")))
		if err != nil {
			return nil, fmt.Errorf("count configuration: %w", err)
		}
		if s.Count, err = count.New(ctx, ccfg, o.deps("count")); err != nil {
			return nil, fmt.Errorf("count: %w", err)
		}
		s.add(s.Count)
	}
	return s, nil
}

// service is what the stack runs and closes of each service.
type service interface {
	Run(ctx context.Context) error
	Close()
}

func (s *Stack) add(svc service) { s.services = append(s.services, svc) }

// Close releases every service built and never run.
func (s *Stack) Close() {
	for _, svc := range s.services {
		svc.Close()
	}
}

// NewDeliver builds one more deliver replica with the stack's options.
func NewDeliver(ctx context.Context, o Options) (*deliver.Service, error) {
	dcfg, err := deliver.LoadConfig(envconfig.New(o.Env("deliver")))
	if err != nil {
		return nil, fmt.Errorf("deliver configuration: %w", err)
	}
	d, err := deliver.New(ctx, dcfg, o.deps("deliver"))
	if err != nil {
		return nil, fmt.Errorf("deliver: %w", err)
	}
	return d, nil
}

// Run runs every service until ctx is cancelled or one fails.
func (s *Stack) Run(ctx context.Context) error {
	g, gctx := errgroup.WithContext(ctx)
	for _, svc := range s.services {
		g.Go(func() error { return svc.Run(gctx) })
	}
	return g.Wait()
}
