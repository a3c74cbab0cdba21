package api

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/gin-gonic/gin"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/relayhq/relay/pkg/ids"
	"github.com/relayhq/relay/pkg/logging"
	"github.com/relayhq/relay/pkg/telemetry"
)

// The hand-written ingest answer must be byte for byte what encoding/json
// would have written.
func TestAnswerMatchesEncodingJSON(t *testing.T) {
	gin.SetMode(gin.ReleaseMode)
	for _, r := range []ingestResponse{
		{EventID: ids.New(ids.Event)},
		{EventID: ids.New(ids.Event), Duplicate: true},
		{EventID: `not "an" id`, Duplicate: true},
	} {
		w := httptest.NewRecorder()
		c, _ := gin.CreateTestContext(w)
		answer(c, http.StatusAccepted, r)
		want, _ := json.Marshal(r)
		if w.Body.String() != string(want) || w.Code != http.StatusAccepted || w.Header().Get("Content-Type") != "application/json; charset=utf-8" {
			t.Fatalf("answer wrote %d %q %q, encoding/json gives %q", w.Code, w.Header().Get("Content-Type"), w.Body.String(), want)
		}
	}
}

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
