package cli

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"golang.org/x/sync/errgroup"

	"github.com/relayhq/relay/pkg/envconfig"
	"github.com/relayhq/relay/pkg/lifecycle"
	"github.com/relayhq/relay/pkg/logging"
	"github.com/relayhq/relay/pkg/redisconn"
	"github.com/relayhq/relay/pkg/secretbox"
	"github.com/relayhq/relay/services/relay/internal/devenv"
	"github.com/relayhq/relay/services/relay/internal/receiver"
	"github.com/relayhq/relay/services/relay/internal/stack"
)

// devCredentials are generated once per data directory, so a restart with
// RELAY_DATA_DIR keeps decrypting the secrets it stored.
type devCredentials struct {
	AdminToken string `json:"admin_token"`
	SecretKey  string `json:"secret_key"`
}

func loadCredentials(dataDir string) (devCredentials, error) {
	var c devCredentials
	if dataDir != "" {
		b, err := os.ReadFile(filepath.Join(dataDir, "dev-credentials.json"))
		if err == nil {
			if err := json.Unmarshal(b, &c); err != nil {
				return c, fmt.Errorf("%s/dev-credentials.json: %w", dataDir, err)
			}
			return c, nil
		}
		if !errors.Is(err, os.ErrNotExist) {
			return c, err
		}
	}
	tok := make([]byte, 16)
	_, _ = rand.Read(tok)
	c = devCredentials{AdminToken: "dev_" + hex.EncodeToString(tok), SecretKey: secretbox.GenerateKey()}
	if dataDir != "" {
		b, _ := json.MarshalIndent(c, "", "  ")
		if err := os.WriteFile(filepath.Join(dataDir, "dev-credentials.json"), b, 0o600); err != nil {
			return c, fmt.Errorf("save dev credentials: %w", err)
		}
	}
	return c, nil
}

// devFlags is relay dev, which runs the whole system in one process on embedded stand-ins.
func (a *app) devFlags(cmd *cobra.Command) runFunc {
	fs := cmd.Flags()
	dataDir := fs.String("data-dir", a.getenv("RELAY_DATA_DIR"), "keep state here across restarts (RELAY_DATA_DIR); in memory when empty")
	kafkaPort := fs.Int("kafka-port", 9092, "port of the embedded Kafka broker")
	s3Addr := fs.String("s3-addr", "127.0.0.1:9000", "address of the embedded S3 server")
	receiverAddr := fs.String("receiver-addr", envOr(a, "RELAY_RECEIVER_ADDR", "127.0.0.1:8081"), "address of the demo receiver (RELAY_RECEIVER_ADDR)")
	return func(ctx context.Context, args []string) error {
		if *dataDir != "" {
			if err := os.MkdirAll(*dataDir, 0o755); err != nil {
				return fmt.Errorf("--data-dir: %w", err)
			}
		}
		creds, err := loadCredentials(*dataDir)
		if err != nil {
			return err
		}
		// Same variables as the services; text by default, for a terminal.
		logEnv := envconfig.New(func(k string) (string, bool) {
			if v := a.getenv(k); v != "" {
				return v, true
			}
			return "text", k == "RELAY_LOG_FORMAT"
		})
		lc := logging.LoadConfig(logEnv)
		if err := logEnv.Err(); err != nil {
			return fmt.Errorf("configuration: %w", err)
		}
		log := slog.New(logging.NewHandler(a.errOut, lc))
		redisconn.RouteLogs(log)

		sub := func(name string) string {
			if *dataDir == "" {
				return ""
			}
			return filepath.Join(*dataDir, name)
		}
		kafka, err := devenv.StartKafka(*kafkaPort, sub("kafka"))
		if err != nil {
			return fmt.Errorf("%w (is another relay dev or Kafka using port %d? try --kafka-port)", err, *kafkaPort)
		}
		defer kafka.Close()
		rdb, err := devenv.StartRedis(ctx, *dataDir, log)
		if err != nil {
			return err
		}
		defer rdb.Close()
		s3, err := devenv.StartS3(*s3Addr, sub("s3"))
		if err != nil {
			return err
		}
		defer s3.Close()

		httpAddr := envOr(a, "RELAY_HTTP_ADDR", "127.0.0.1:8080")
		if host, port, err := net.SplitHostPort(httpAddr); err == nil && port == "0" {
			// Pick the port now, so RELAY_PUBLIC_URL and the banner name it.
			p, err := lifecycle.FreePort()
			if err != nil {
				return err
			}
			httpAddr = net.JoinHostPort(host, strconv.Itoa(p))
		}
		token := envOr(a, "RELAY_ADMIN_TOKEN", creds.AdminToken)
		// Dev owns the addresses of its stand-ins; everything else can be
		// overridden with the services' own RELAY_* variables.
		owned := map[string]string{
			"RELAY_KAFKA_BROKERS": kafka.Addr,
			"RELAY_REDIS_ADDRS":   rdb.Addr,
			"RELAY_S3_ENDPOINT":   s3.Endpoint,
		}
		defaults := map[string]string{
			"RELAY_HTTP_ADDR":                  httpAddr,
			"RELAY_PUBLIC_URL":                 "http://" + httpAddr,
			"RELAY_ADMIN_TOKEN":                token,
			"RELAY_SECRET_KEY":                 creds.SecretKey,
			"RELAY_ALLOW_PRIVATE_DESTINATIONS": "true",
			"RELAY_KAFKA_PARTITIONS":           "3",
			"RELAY_S3_BUCKET":                  "relay-archive",
			"RELAY_S3_REGION":                  "us-east-1",
			"RELAY_S3_PATH_STYLE":              "true",
			"RELAY_ARCHIVE_MAX_WAIT":           "5s",
			"RELAY_S3_ACCESS_KEY_ID":           "relay-dev",
			"RELAY_S3_SECRET_ACCESS_KEY":       "relay-dev",
		}
		adminPorts := map[string]string{"ingest": "127.0.0.1:9190", "deliver": "127.0.0.1:9191", "archive": "127.0.0.1:9192", "count": "127.0.0.1:9193"}
		env := func(service string) envconfig.LookupFunc {
			return func(k string) (string, bool) {
				if v, ok := owned[k]; ok {
					return v, true
				}
				if k == "RELAY_ADMIN_ADDR" {
					if v := a.getenv("RELAY_" + strings.ToUpper(service) + "_ADMIN_ADDR"); v != "" {
						return v, true
					}
					return adminPorts[service], true
				}
				if v := a.getenv(k); v != "" {
					return v, true
				}
				v, ok := defaults[k]
				return v, ok
			}
		}
		st, err := stack.New(ctx, stack.Options{Env: env, Logger: log, Deliver: true, Archive: true, Count: true})
		if err != nil {
			return err
		}
		recv, err := lifecycle.NewHTTPServer("receiver", *receiverAddr, receiver.New(log.With("service", "receiver")), lifecycle.DefaultHTTPTimeouts(), log)
		if err != nil {
			return fmt.Errorf("%w (set RELAY_RECEIVER_ADDR or --receiver-addr)", err)
		}
		a.banner(devBanner{
			API: "http://" + st.Ingest.Addr(), Token: token, Receiver: "http://" + recv.Addr(), Kafka: kafka.Addr,
			Redis: rdb.Addr, RedisPersistent: rdb.Persistent, S3: s3.Endpoint, DataDir: *dataDir,
			Tiers: envOr(a, "RELAY_RETRY_TIERS", "5s,30s,2m,10m,1h,6h"), Admin: adminPorts,
		})
		g, gctx := errgroup.WithContext(ctx)
		g.Go(func() error { return st.Run(gctx) })
		g.Go(func() error { return recv.Run(gctx) })
		err = g.Wait()
		fmt.Fprintln(a.errOut, "relay dev stopped")
		return err
	}
}

type devBanner struct {
	API, Token, Receiver, Kafka, Redis, S3, DataDir, Tiers string
	RedisPersistent                                        bool
	Admin                                                  map[string]string
}

func (a *app) banner(b devBanner) {
	redis := b.Redis + " (in memory)"
	state := "in memory: it is gone when relay dev stops (set RELAY_DATA_DIR to keep it)"
	if b.DataDir != "" {
		state = "kept in " + b.DataDir
		if b.RedisPersistent {
			redis = b.Redis + " (redis-server, AOF in " + filepath.Join(b.DataDir, "redis") + ")"
		} else {
			redis = b.Redis + " (in memory: install redis-server to persist it)"
		}
	}
	w := a.out
	fmt.Fprintf(w, `
Relay dev is running. State is %s.

  API        %s   admin token: %s
  Console    %s/console   sign in with the admin token, or a key from relay keys create
  Receiver   %s/?mode=ok|fail|flaky
  Kafka      %s   kcat -b %s -C -t relay.events -f '%%k %%h %%s\n'
  Redis      %s
  S3         %s   bucket relay-archive
  Metrics    %s/metrics, http://%s/metrics (deliver), http://%s/metrics (archive), http://%s/metrics (count)
  Retries    tiers %s (set RELAY_RETRY_TIERS=1s,2s,4s for a fast demo)

Next, in another terminal:

  export RELAY_API=%s RELAY_ADMIN_TOKEN=%s
  ./bin/relay sources create --name demo                  # prints SOURCE_ID and its secret
  ./bin/relay subs create --source SOURCE_ID --url '%s/?mode=flaky'
  ./bin/relay send --source SOURCE_ID --secret SECRET --type payment.succeeded

`, state, b.API, b.Token, b.API, b.Receiver, b.Kafka, b.Kafka, redis, b.S3,
		b.API, b.Admin["deliver"], b.Admin["archive"], b.Admin["count"], b.Tiers,
		b.API, b.Token, b.Receiver)
}
