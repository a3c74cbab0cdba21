package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/relayhq/relay/pkg/lifecycle"
	"github.com/relayhq/relay/pkg/logging"
	"github.com/relayhq/relay/services/relay/internal/bench"
)

type repeated []string

func (r *repeated) String() string     { return strings.Join(*r, ",") }
func (r *repeated) Set(v string) error { *r = append(*r, v); return nil }

// runBench runs every benchmark scenario (make bench) against the broker,
// Redis and S3 that scripts/testenv.sh provides.
func runBench(ctx context.Context, a *app, args []string) error {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(a.errOut)
	binDir := fs.String("bin-dir", "bin", "directory of relay-ingest, relay-deliver, relay-archive, relay-count")
	step := fs.Duration("step", 4*time.Second, "length of each load step")
	prefill := fs.Int("prefill", 60000, "events pre-filled for the archive and count scenarios")
	warmUp := fs.Duration("warm-up", 20*time.Second, "how long each system under test gets the warm-up rate before it is measured")
	warmUpRate := fs.Float64("warm-up-rate", 1000, "requests/s (deliveries/s in fan-out) of the warm-up; with a long --warm-up, a steady load to profile under")
	out := fs.String("out", "", "also write the markdown report here")
	only := fs.String("only", "", "comma-separated scenarios to run: ingest, e2e, fanout, consumers (default all)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *warmUpRate <= 0 || *warmUp < 0 {
		return errors.New("--warm-up-rate must be positive and --warm-up not negative")
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	cfg := bench.Config{
		Self: self, BinDir: *binDir, Brokers: a.getenv("RELAY_TEST_KAFKA_BROKERS"), Redis: a.getenv("RELAY_TEST_REDIS_ADDR"),
		S3Endpoint: a.getenv("RELAY_TEST_S3_ENDPOINT"), Step: *step, WarmUp: *warmUp, WarmUpRate: *warmUpRate, Prefill: *prefill, Log: a.errOut,
	}
	if *only != "" {
		cfg.Only = strings.Split(*only, ",")
	}
	cfg.KafkaPID, _ = strconv.Atoi(a.getenv("RELAY_TEST_KAFKA_PID"))
	cfg.RedisPID, _ = strconv.Atoi(a.getenv("RELAY_TEST_REDIS_PID"))
	if cfg.Brokers == "" || cfg.Redis == "" || cfg.S3Endpoint == "" {
		return errors.New("run it through make bench (scripts/testenv.sh provides RELAY_TEST_KAFKA_BROKERS, RELAY_TEST_REDIS_ADDR, RELAY_TEST_S3_ENDPOINT)")
	}
	report, err := bench.New(cfg).Run(ctx)
	if err != nil {
		return err
	}
	versions := fmt.Sprintf("Kafka %s (%s), Redis at %s", a.getenv("RELAY_TEST_KAFKA_VERSION"), a.getenv("RELAY_TEST_KAFKA_KIND"), cfg.Redis)
	report.Markdown(a.out, "make bench", versions)
	if *out != "" {
		if err := os.MkdirAll(filepath.Dir(*out), 0o755); err != nil {
			return err
		}
		f, err := os.Create(*out)
		if err != nil {
			return err
		}
		defer f.Close()
		report.Markdown(f, "make bench", versions)
		fmt.Fprintf(a.errOut, "bench: report written to %s\n", *out)
	}
	return nil
}

// runBenchServer runs one baseline server of the benchmarks as its own process.
func runBenchServer(ctx context.Context, a *app, args []string) error {
	if len(args) == 0 {
		return errors.New("want hmac or proxy")
	}
	fs := flag.NewFlagSet("bench-server", flag.ContinueOnError)
	fs.SetOutput(a.errOut)
	addr := fs.String("addr", "127.0.0.1:0", "listen address")
	secret := fs.String("secret", "", "HMAC secret")
	var forward repeated
	fs.Var(&forward, "forward", "proxy: an endpoint to forward to (repeat for fan-out)")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	var h http.Handler
	switch args[0] {
	case "hmac":
		h = bench.BaselineHandler(*secret)
	case "proxy":
		h = bench.ProxyHandler(*secret, forward)
	default:
		return fmt.Errorf("unknown baseline %q", args[0])
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) })
	mux.Handle("/", h)
	srv, err := lifecycle.NewHTTPServer("bench-"+args[0], *addr, mux, lifecycle.DefaultHTTPTimeouts(), logging.Discard())
	if err != nil {
		return err
	}
	return srv.Run(ctx)
}
