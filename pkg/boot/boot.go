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
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
	"time"

	"github.com/relayhq/relay/pkg/envconfig"
	"github.com/relayhq/relay/pkg/lifecycle"
	"github.com/relayhq/relay/pkg/logging"
	"github.com/relayhq/relay/pkg/redisconn"
	"github.com/relayhq/relay/pkg/telemetry"
)

// Env is what a service's run function gets: its configuration, and the
// logger and telemetry to hand to the service's New.
type Env struct {
	Config *envconfig.Reader
	lifecycle.Deps
}

// Probe says where a service serves /readyz: the variable holding its
// listen address and that variable's default.
type Probe struct {
	AddrVar     string
	DefaultAddr string
}

// Main runs service until SIGINT or SIGTERM and exits the process: 0 after a
// clean shutdown, 1 after an error. Run as `<binary> healthcheck`, it instead
// asks the running service's /readyz and exits 0 when it is ready, so
// images without a shell or curl can have container health checks.
func Main(service string, probe Probe, run func(ctx context.Context, env Env) error) {
	if len(os.Args) > 1 && os.Args[1] == "healthcheck" {
		if err := Healthcheck(envconfig.FromOS().String(probe.AddrVar, probe.DefaultAddr)); err != nil {
			fmt.Fprintf(os.Stderr, "%s: not ready: %v\n", service, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	tuneGC()
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
	var debugSrv *lifecycle.HTTPServer
	if addr, ok := cfg.Lookup("RELAY_DEBUG_ADDR"); ok {
		var err error
		if debugSrv, err = debugServer(addr, log); err != nil {
			return err
		}
		defer debugSrv.Close()
	}
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
	env := Env{Config: cfg, Deps: lifecycle.Deps{Logger: log, Telemetry: tel}}
	if debugSrv == nil {
		return run(ctx, env)
	}
	// The profiler serves for as long as the service runs, its shutdown
	// included, and stops after it.
	var runErr error
	svc := lifecycle.Func(service, func(ctx context.Context) error {
		runErr = run(ctx, env)
		return nil
	})
	if err := lifecycle.Run(ctx, log, []lifecycle.Worker{svc}, []lifecycle.Worker{debugSrv}); err != nil && runErr == nil {
		return err
	}
	return runErr
}

// Healthcheck GETs /readyz of a service listening on addr (":9091" means
// loopback) and fails unless it answers 200 within 3 seconds.
func Healthcheck(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("address %q: %w", addr, err)
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	c := &http.Client{Timeout: 3 * time.Second}
	resp, err := c.Get("http://" + net.JoinHostPort(host, port) + "/readyz")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("HTTP %d: %s", resp.StatusCode, body)
	}
	return nil
}

// debugServer serves net/http/pprof on addr. It is off unless
// RELAY_DEBUG_ADDR is set, and belongs on a loopback or private address:
// profiles reveal internals.
func debugServer(addr string, log *slog.Logger) (*lifecycle.HTTPServer, error) {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	t := lifecycle.DefaultHTTPTimeouts()
	t.Write = 5 * time.Minute // CPU profiles and traces stream for as long as asked
	srv, err := lifecycle.NewHTTPServer("debug", addr, mux, t, log)
	if err != nil {
		return nil, fmt.Errorf("RELAY_DEBUG_ADDR: %w", err)
	}
	log.Info("pprof listening", "addr", srv.Addr())
	return srv, nil
}

// DefaultGOGC is the garbage collector's target unless GOGC is set. The
// services' live heaps are small (tens of MiB) and their garbage is
// per-request, so collecting 4× less often than Go's default of 100 trades
// a few tens of MiB for a share of CPU.
// GOMEMLIMIT, when set, still caps the heap.
const DefaultGOGC = 400

func tuneGC() {
	if _, set := os.LookupEnv("GOGC"); !set {
		debug.SetGCPercent(DefaultGOGC)
	}
}
