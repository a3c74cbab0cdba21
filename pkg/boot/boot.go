// Package boot is the thin main of every Relay service binary: it wires
// SIGINT/SIGTERM to a context, builds the logger and telemetry from the
// environment, runs the service, and exits 1 on failure. Nothing else in Relay
// reads the process environment.
package boot

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/relayhq/relay/pkg/envconfig"
	"github.com/relayhq/relay/pkg/logging"
	"github.com/relayhq/relay/pkg/redisconn"
	"github.com/relayhq/relay/pkg/telemetry"
)

// Env is what a service's run function gets.
type Env struct {
	Config    *envconfig.Reader
	Logger    *slog.Logger
	Telemetry *telemetry.Telemetry
}

// Main runs service until SIGINT or SIGTERM and exits the process: 0 after a
// clean shutdown, 1 after an error.
func Main(service string, run func(ctx context.Context, env Env) error) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := Run(ctx, service, envconfig.FromOS(), os.Stdout, run)
	stop()
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", service, err)
		os.Exit(1)
	}
}

// Run builds the logger and telemetry from cfg and runs the service.
func Run(ctx context.Context, service string, cfg *envconfig.Reader, logOut io.Writer, run func(ctx context.Context, env Env) error) error {
	lc := logging.LoadConfig(cfg)
	if err := cfg.Err(); err != nil {
		return fmt.Errorf("configuration: %w", err)
	}
	log := logging.New(logOut, lc, service)
	redisconn.RouteLogs(log)
	tel, err := telemetry.Setup(ctx, cfg, service, telemetry.Options{})
	if err != nil {
		return err
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := tel.Shutdown(sctx); err != nil {
			log.Warn("telemetry shutdown", "error", err)
		}
	}()
	return run(ctx, Env{Config: cfg, Logger: log, Telemetry: tel})
}
