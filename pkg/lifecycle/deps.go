package lifecycle

import (
	"log/slog"

	"github.com/relayhq/relay/pkg/telemetry"
)

// Deps are what the process gives each service: its logger and its
// telemetry (tracer, meter and the Prometheus registry /metrics serves).
// boot builds them for a service binary; relay dev builds one per service.
type Deps struct {
	Logger    *slog.Logger
	Telemetry *telemetry.Telemetry
}
