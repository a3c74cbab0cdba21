package cli

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/relayhq/relay/pkg/kafka"
	"github.com/relayhq/relay/pkg/lifecycle"
	"github.com/relayhq/relay/pkg/logging"
	"github.com/relayhq/relay/pkg/telemetry"
	"github.com/relayhq/relay/services/relay/internal/devenv"
	"github.com/relayhq/relay/services/relay/internal/k8sschema"
)

// standinFlags is relay standin, which runs one embedded stand-in as its own
// process, for the test harness: the S3 server tests use, and the Kafka
// fallback when Java or Maven is missing outside CI. It prints "ready ADDR"
// and runs until signalled.
func (a *app) standinFlags(cmd *cobra.Command) verbFunc {
	fs := cmd.Flags()
	addr := fs.String("addr", "127.0.0.1:0", "listen address (kafka: 127.0.0.1:PORT)")
	dataDir := fs.String("data-dir", "", "persist here")
	return func(ctx context.Context, verb string, pos []string) error {
		switch verb {
		case "kafka":
			_, portStr, err := net.SplitHostPort(*addr)
			if err != nil {
				return fmt.Errorf("--addr: %w", err)
			}
			port, _ := strconv.Atoi(portStr)
			k, err := devenv.StartKafka(port, *dataDir)
			if err != nil {
				return err
			}
			defer k.Close()
			fmt.Fprintf(a.out, "ready %s\n", k.Addr)
		case "redis":
			r, err := devenv.StartRedis(ctx, *dataDir, logging.Discard())
			if err != nil {
				return err
			}
			defer r.Close()
			fmt.Fprintf(a.out, "ready %s\n", r.Addr)
		case "s3":
			s, err := devenv.StartS3(*addr, *dataDir)
			if err != nil {
				return err
			}
			defer s.Close()
			fmt.Fprintf(a.out, "ready %s\n", s.Endpoint)
		default:
			return fmt.Errorf("unknown stand-in %q: want kafka, redis or s3", verb)
		}
		<-ctx.Done()
		return nil
	}
}

// brokerVersionFlags is relay broker-version, which waits until a broker
// answers metadata and prints its version, so a test run shows which broker
// it ran against.
func (a *app) brokerVersionFlags(cmd *cobra.Command) runFunc {
	fs := cmd.Flags()
	brokers := fs.String("brokers", a.getenv("RELAY_KAFKA_BROKERS"), "seed brokers")
	wait := fs.Duration("wait", 90*time.Second, "how long to wait for the broker")
	nodes := fs.Int("nodes", 1, "wait until the cluster has this many brokers, and its internal topics can be created")
	return func(ctx context.Context, args []string) error {
		if *brokers == "" {
			return errors.New("--brokers is required")
		}
		cl, err := kgo.NewClient(kgo.SeedBrokers(strings.Split(*brokers, ",")...), kgo.DialTimeout(2*time.Second))
		if err != nil {
			return err
		}
		defer cl.Close()
		deadline := time.Now().Add(*wait)
		for {
			pctx, cancel := context.WithTimeout(ctx, 3*time.Second)
			v, err := kafka.BrokerVersion(pctx, cl)
			if err == nil && *nodes > 1 {
				err = clusterReady(pctx, cl, *nodes)
			}
			cancel()
			if err == nil {
				fmt.Fprintln(a.out, v)
				return nil
			}
			if time.Now().After(deadline) || ctx.Err() != nil {
				return fmt.Errorf("no broker answered at %s within %v: %w", *brokers, *wait, err)
			}
			time.Sleep(250 * time.Millisecond)
		}
	}
}

// clusterReady reports whether a cluster has n brokers, each with a
// controller that has elected a leader.
func clusterReady(ctx context.Context, cl *kgo.Client, n int) error {
	md, err := kadm.NewClient(cl).BrokerMetadata(ctx)
	if err != nil {
		return err
	}
	if len(md.Brokers) < n {
		return fmt.Errorf("%d of %d brokers up", len(md.Brokers), n)
	}
	if md.Controller < 0 {
		return errors.New("no active controller yet")
	}
	return nil
}

func (a *app) versionFlags(*cobra.Command) runFunc {
	return func(context.Context, []string) error {
		fmt.Fprintf(a.out, "relay %s\n", telemetry.Version)
		return nil
	}
}

func (a *app) freePortFlags(*cobra.Command) runFunc {
	return func(context.Context, []string) error {
		p, err := lifecycle.FreePort()
		if err != nil {
			return err
		}
		fmt.Fprintln(a.out, p)
		return nil
	}
}

// k8sSchemasFlags is relay k8s-schemas, which writes the schemas kubeconform
// validates the Helm chart's manifests with (scripts/install-deps.sh helm).
func (a *app) k8sSchemasFlags(cmd *cobra.Command) runFunc {
	fs := cmd.Flags()
	swagger := fs.String("swagger", "", "Kubernetes' api/openapi-spec/swagger.json")
	out := fs.String("out", "", "directory to write <kind>-<group>-<version>.json into")
	return func(context.Context, []string) error {
		if *swagger == "" || *out == "" {
			return usageError{errors.New("--swagger and --out are required")}
		}
		n, err := k8sschema.Write(*swagger, *out, true)
		if err != nil {
			return err
		}
		fmt.Fprintf(a.out, "%d schemas written to %s\n", n, *out)
		return nil
	}
}

func probeFlags(*cobra.Command) runFunc { return probe }

func probe(ctx context.Context, args []string) error {
	if len(args) != 1 {
		return errors.New("usage: relay probe URL")
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, args[0], nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("HTTP %d", resp.StatusCode)
	}
	return nil
}
