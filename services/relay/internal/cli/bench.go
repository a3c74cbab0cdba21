package cli

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/relayhq/relay/pkg/lifecycle"
	"github.com/relayhq/relay/pkg/logging"
	"github.com/relayhq/relay/services/relay/internal/bench"
)

type benchOpts struct {
	binDir, out, only  *string
	step, warmUp, soak *time.Duration
	overload           *time.Duration
	kafkaScript        *string
	prefill            *int
	warmUpRate         *float64
}

// bindBenchFlags binds relay bench's flags to fs.
func bindBenchFlags(fs *pflag.FlagSet) benchOpts {
	return benchOpts{
		binDir:      fs.String("bin-dir", "bin", "directory of relay-ingest, relay-deliver, relay-archive, relay-count"),
		step:        fs.Duration("step", 4*time.Second, "length of each load step"),
		prefill:     fs.Int("prefill", 60000, "events pre-filled for the archive and count scenarios"),
		warmUp:      fs.Duration("warm-up", 20*time.Second, "how long each system under test gets the warm-up rate before it is measured"),
		warmUpRate:  fs.Float64("warm-up-rate", 1000, "requests/s (deliveries/s in fan-out) of the warm-up; with a long --warm-up, a steady load to profile under"),
		out:         fs.String("out", "", "also write the markdown report here"),
		only:        fs.String("only", "", "comma-separated scenarios to run: ingest, e2e, fanout, consumers, state, overload, coldstart, policy, ordering, latency (default all)"),
		soak:        fs.Duration("soak", 10*time.Minute, "how long the state scenario's soak with short windows runs"),
		overload:    fs.Duration("overload", time.Minute, "how long the overload scenario offers deliver twice its maximum"),
		kafkaScript: fs.String("kafka-script", "scripts/kafka.sh", "scripts/kafka.sh, to start the cold start's fresh broker with (empty: no cold start)"),
	}
}

// benchFlags is relay bench, which runs every benchmark scenario (make bench)
// against the broker, Redis and S3 that scripts/testenv.sh provides.
func (a *app) benchFlags(cmd *cobra.Command) runFunc {
	fs := cmd.Flags()
	o := bindBenchFlags(fs)
	return func(ctx context.Context, _ []string) error {
		if *o.warmUpRate <= 0 || *o.warmUp < 0 {
			return errors.New("--warm-up-rate must be positive and --warm-up not negative")
		}
		self, err := os.Executable()
		if err != nil {
			return err
		}
		cfg := bench.Config{
			Self: self, BinDir: *o.binDir, Brokers: a.getenv("RELAY_TEST_KAFKA_BROKERS"), Redis: a.getenv("RELAY_TEST_REDIS_ADDR"),
			S3Endpoint: a.getenv("RELAY_TEST_S3_ENDPOINT"), Step: *o.step, WarmUp: *o.warmUp, WarmUpRate: *o.warmUpRate, Prefill: *o.prefill, Soak: *o.soak, Overload: *o.overload, KafkaScript: *o.kafkaScript, Log: a.errOut,
		}
		if *o.only != "" {
			cfg.Only = strings.Split(*o.only, ",")
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
		command := benchCommand(fs)
		report.Markdown(a.out, command, versions)
		if *o.out != "" {
			if err := os.MkdirAll(filepath.Dir(*o.out), 0o755); err != nil {
				return err
			}
			f, err := os.Create(*o.out)
			if err != nil {
				return err
			}
			defer f.Close()
			report.Markdown(f, command, versions)
			fmt.Fprintf(a.errOut, "bench: report written to %s\n", *o.out)
		}
		return nil
	}
}

// benchServerFlags is relay bench-server, which runs one baseline server of
// the benchmarks as its own process.
func (a *app) benchServerFlags(cmd *cobra.Command) verbFunc {
	fs := cmd.Flags()
	addr := fs.String("addr", "127.0.0.1:0", "listen address")
	secret := fs.String("secret", "", "HMAC secret")
	forward := fs.StringArray("forward", nil, "proxy: an endpoint to forward to (repeat for fan-out)")
	return func(ctx context.Context, verb string, pos []string) error {
		var h http.Handler
		switch verb {
		case "hmac":
			h = bench.BaselineHandler(*secret)
		case "proxy":
			h = bench.ProxyHandler(*secret, *forward)
		default:
			return fmt.Errorf("unknown baseline %q", verb)
		}
		mux := http.NewServeMux()
		mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) })
		mux.Handle("/", h)
		srv, err := lifecycle.NewHTTPServer("bench-"+verb, *addr, mux, lifecycle.DefaultHTTPTimeouts(), logging.Discard())
		if err != nil {
			return err
		}
		return srv.Run(ctx)
	}
}

// benchCommand is the command a report names: make bench when the run
// measured what make bench measures, else the flags that changed it.
func benchCommand(fs *pflag.FlagSet) string {
	var set []string
	fs.Visit(func(f *pflag.Flag) {
		if f.Name != "out" && f.Name != "bin-dir" {
			set = append(set, "--"+f.Name+" "+f.Value.String())
		}
	})
	if len(set) == 0 {
		return "make bench"
	}
	return "make build && scripts/testenv.sh ./bin/relay bench " + strings.Join(set, " ")
}
