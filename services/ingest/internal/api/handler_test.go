package api

import (
	"net/http"
	"net/http/httptest"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/relayhq/relay/pkg/logging"
	"github.com/relayhq/relay/pkg/telemetry"
)

// With tracing off the engine serves requests bare; with it on, otelhttp
// starts a server span for each.
func TestHandlerInstrumentsOnlyWhenTracing(t *testing.T) {
	for _, tracing := range []bool{false, true} {
		rec := tracetest.NewSpanRecorder()
		tel := &telemetry.Telemetry{TracerProvider: sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec)), Tracing: tracing, Registry: telemetry.NewRegistry()}
		h := New(Config{}, Deps{Telemetry: tel, Logger: logging.Discard()}).Handler()
		h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/healthz", nil))
		if got := len(rec.Ended()); (got > 0) != tracing {
			t.Fatalf("tracing %v: %d spans ended", tracing, got)
		}
	}
}
