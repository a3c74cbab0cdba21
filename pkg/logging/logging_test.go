package logging

import (
	"bytes"
	"context"
	"encoding/json"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

func TestTraceIDsAreStamped(t *testing.T) {
	var buf bytes.Buffer
	log := New(&buf, Config{Format: "json"}, "ingest")
	tp := sdktrace.NewTracerProvider()
	ctx, span := tp.Tracer("t").Start(context.Background(), "op")
	log.InfoContext(ctx, "event accepted", "event_id", "evt_1")
	span.End()

	var line map[string]any
	if err := json.Unmarshal(buf.Bytes(), &line); err != nil {
		t.Fatalf("log line is not JSON: %v: %s", err, buf.Bytes())
	}
	if line["trace_id"] != span.SpanContext().TraceID().String() || line["span_id"] != span.SpanContext().SpanID().String() {
		t.Fatalf("trace ids missing or wrong: %v", line)
	}
	if line["service"] != "ingest" || line["event_id"] != "evt_1" {
		t.Fatalf("attributes lost: %v", line)
	}

	buf.Reset()
	log.Info("no span")
	if bytes.Contains(buf.Bytes(), []byte("trace_id")) {
		t.Fatalf("trace_id written without a span: %s", buf.Bytes())
	}
}
