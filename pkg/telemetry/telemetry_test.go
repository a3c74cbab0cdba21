package telemetry

import (
	"context"
	"testing"
	"time"

	"github.com/relayhq/relay/pkg/envconfig"
)

func TestSetup(t *testing.T) {
	for name, env := range map[string]map[string]string{
		"no exporter":  {},
		"otlp http":    {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"},
		"otlp grpc":    {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4317", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
		"disabled":     {"OTEL_SDK_DISABLED": "true"},
		"exporter off": {"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://x:4318"},
	} {
		t.Run(name, func(t *testing.T) {
			tel, err := Setup(context.Background(), envconfig.FromMap(env), "test", Options{})
			if err != nil {
				t.Fatal(err)
			}
			// Instrumentation is installed exactly when tracing is on.
			disabled := env["OTEL_SDK_DISABLED"] == "true"
			if tel.Tracing == disabled || (tel.ActiveTracerProvider() == nil) != disabled {
				t.Fatalf("Tracing = %v, ActiveTracerProvider() = %v with OTEL_SDK_DISABLED=%v", tel.Tracing, tel.ActiveTracerProvider(), disabled)
			}
			_, span := tel.Tracer("t").Start(context.Background(), "op")
			span.End()
			ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
			defer cancel()
			if err := tel.Shutdown(ctx); err != nil {
				t.Logf("shutdown (no collector listening): %v", err)
			}
		})
	}
	if _, err := Setup(context.Background(), envconfig.FromMap(map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://x", "OTEL_EXPORTER_OTLP_PROTOCOL": "carrier"}), "t", Options{}); err == nil {
		t.Fatal("an unknown protocol was accepted")
	}
}
