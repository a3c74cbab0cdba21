// Package logging sets up Relay's structured logs: log/slog, JSON by default,
// lowercase messages with snake_case keys, and the trace_id and span_id of the
// active OpenTelemetry span stamped on every record.
package logging

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"

	"go.opentelemetry.io/otel/trace"

	"github.com/relayhq/relay/pkg/envconfig"
)

// Config selects the log level and format.
type Config struct {
	// Level is debug, info, warn or error (RELAY_LOG_LEVEL, default info).
	Level slog.Level
	// Format is json or text (RELAY_LOG_FORMAT, default json).
	Format string
}

// LoadConfig reads RELAY_LOG_LEVEL and RELAY_LOG_FORMAT.
func LoadConfig(r *envconfig.Reader) Config {
	c := Config{Format: strings.ToLower(r.String("RELAY_LOG_FORMAT", "json"))}
	lvl := r.String("RELAY_LOG_LEVEL", "info")
	if err := c.Level.UnmarshalText([]byte(lvl)); err != nil {
		r.Fail("RELAY_LOG_LEVEL", "%q is not debug, info, warn or error", lvl)
	}
	if c.Format != "json" && c.Format != "text" {
		r.Fail("RELAY_LOG_FORMAT", "%q is not json or text", c.Format)
	}
	return c
}

// New returns a logger writing to w, tagged with the service name.
func New(w io.Writer, c Config, service string) *slog.Logger {
	return slog.New(NewHandler(w, c)).With("service", service)
}

// NewHandler returns the handler of New, for a process that tags each of
// its loggers itself (relay dev runs every service in one process).
func NewHandler(w io.Writer, c Config) slog.Handler {
	opts := &slog.HandlerOptions{Level: c.Level}
	if c.Format == "text" {
		return TraceHandler{slog.NewTextHandler(w, opts)}
	}
	return TraceHandler{slog.NewJSONHandler(w, opts)}
}

// TraceHandler adds trace_id and span_id from the record's context, so a log
// line can be found from a trace in Grafana and the other way round.
type TraceHandler struct{ slog.Handler }

var _ slog.Handler = TraceHandler{}

// Handle implements slog.Handler.
func (h TraceHandler) Handle(ctx context.Context, r slog.Record) error {
	if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
		r.AddAttrs(slog.String("trace_id", sc.TraceID().String()), slog.String("span_id", sc.SpanID().String()))
	}
	if err := h.Handler.Handle(ctx, r); err != nil {
		return fmt.Errorf("log handler: %w", err)
	}
	return nil
}

// WithAttrs implements slog.Handler.
func (h TraceHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return TraceHandler{h.Handler.WithAttrs(attrs)}
}

// WithGroup implements slog.Handler.
func (h TraceHandler) WithGroup(name string) slog.Handler {
	return TraceHandler{h.Handler.WithGroup(name)}
}

// Discard returns a logger that drops everything, for tests.
func Discard() *slog.Logger { return slog.New(slog.DiscardHandler) }
