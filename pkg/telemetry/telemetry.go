// Package telemetry sets up OpenTelemetry tracing from the standard OTEL_*
// variables and a per-service Prometheus registry.
//
// Tracing: when OTEL_EXPORTER_OTLP_ENDPOINT or
// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is set (and OTEL_TRACES_EXPORTER is not
// "none"), spans are exported over OTLP, gRPC or HTTP per
// OTEL_EXPORTER_OTLP_PROTOCOL; the exporters read the remaining OTEL_*
// variables themselves. Without an endpoint, spans are still created, so trace
// context still propagates through Kafka and into logs, but nothing is
// exported. OTEL_SDK_DISABLED=true turns tracing off entirely.
package telemetry

import (
	"context"
	"fmt"
	"net/http"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/relayhq/relay/pkg/envconfig"
)

// Version is Relay's version, stamped into traces, user agents and metrics.
// Release builds set it with -ldflags "-X github.com/relayhq/relay/pkg/telemetry.Version=…".
var Version = "dev"

// Telemetry is a service's tracer provider, propagator and metrics registry.
type Telemetry struct {
	TracerProvider trace.TracerProvider
	// Tracing is false when OTEL_SDK_DISABLED=true: TracerProvider is a
	// no-op, and HTTP and Kafka clients and servers skip their
	// instrumentation (see ActiveTracerProvider).
	Tracing    bool
	Propagator propagation.TextMapPropagator
	Registry   *prometheus.Registry
	shutdown   func(context.Context) error
}

// Options adjusts Setup; tests use them to record spans in memory.
type Options struct {
	// SpanProcessor, when set, receives every span in addition to (or, without
	// an OTLP endpoint, instead of) the exporter.
	SpanProcessor sdktrace.SpanProcessor
}

// Setup builds the telemetry of service from the OTEL_* variables in r.
func Setup(ctx context.Context, r *envconfig.Reader, service string, o Options) (*Telemetry, error) {
	t := &Telemetry{
		Propagator: propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}),
		Registry:   NewRegistry(),
		shutdown:   func(context.Context) error { return nil },
	}
	if r.Bool("OTEL_SDK_DISABLED", false) {
		t.TracerProvider = noop.NewTracerProvider()
		return t, nil
	}
	name := r.String("OTEL_SERVICE_NAME", service)
	res, err := resource.Merge(resource.Default(), resource.NewWithAttributes(semconv.SchemaURL,
		semconv.ServiceName(name), semconv.ServiceVersion(Version), semconv.ServiceNamespace("relay")))
	if err != nil {
		return nil, fmt.Errorf("otel resource: %w", err)
	}
	opts := []sdktrace.TracerProviderOption{sdktrace.WithResource(res)}
	if o.SpanProcessor != nil {
		opts = append(opts, sdktrace.WithSpanProcessor(o.SpanProcessor))
	}
	exporter := strings.ToLower(r.String("OTEL_TRACES_EXPORTER", "otlp"))
	_, hasEndpoint := r.Lookup("OTEL_EXPORTER_OTLP_ENDPOINT")
	_, hasTracesEndpoint := r.Lookup("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
	if exporter == "otlp" && (hasEndpoint || hasTracesEndpoint) {
		proto := r.String("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", r.String("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"))
		var exp sdktrace.SpanExporter
		switch proto {
		case "grpc":
			exp, err = otlptracegrpc.New(ctx)
		case "http/protobuf":
			exp, err = otlptracehttp.New(ctx)
		default:
			return nil, fmt.Errorf("OTEL_EXPORTER_OTLP_PROTOCOL: %q is not grpc or http/protobuf", proto)
		}
		if err != nil {
			return nil, fmt.Errorf("otlp trace exporter: %w", err)
		}
		opts = append(opts, sdktrace.WithBatcher(exp))
	} else if exporter != "otlp" && exporter != "none" {
		return nil, fmt.Errorf("OTEL_TRACES_EXPORTER: %q is not otlp or none", exporter)
	}
	tp := sdktrace.NewTracerProvider(opts...)
	t.TracerProvider = tp
	t.Tracing = true
	t.shutdown = tp.Shutdown
	return t, nil
}

// Shutdown flushes and stops the span exporter.
func (t *Telemetry) Shutdown(ctx context.Context) error {
	if err := t.shutdown(ctx); err != nil {
		return fmt.Errorf("telemetry shutdown: %w", err)
	}
	return nil
}

// ActiveTracerProvider is the provider HTTP servers, HTTP clients and Kafka
// clients are instrumented with: nil when tracing is off, so that they skip
// their instrumentation entirely rather than run it against a no-op.
func (t *Telemetry) ActiveTracerProvider() trace.TracerProvider {
	if !t.Tracing {
		return nil
	}
	return t.TracerProvider
}

// Tracer returns a named tracer of the service.
func (t *Telemetry) Tracer(name string) trace.Tracer { return t.TracerProvider.Tracer(name) }

// NewRegistry returns a Prometheus registry with the Go runtime and process
// collectors. Each service has its own, so `relay dev` can run all four in one
// process without metric name clashes.
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// MetricsHandler serves reg in the Prometheus text format.
func MetricsHandler(reg *prometheus.Registry) http.Handler {
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg, EnableOpenMetrics: true})
}
