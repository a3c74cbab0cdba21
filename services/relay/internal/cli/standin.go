package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/relayhq/relay/pkg/kafka"
	"github.com/relayhq/relay/pkg/lifecycle"
	"github.com/relayhq/relay/pkg/logging"
	"github.com/relayhq/relay/pkg/telemetry"
	"github.com/relayhq/relay/services/relay/internal/devenv"
)

// runStandin runs one embedded stand-in as its own process, for the test
// harness: the S3 server tests use, and the Kafka fallback when Java or
// Maven is missing outside CI. It prints "ready ADDR" and runs until signalled.
func runStandin(ctx context.Context, a *app, args []string) error {
	if len(args) == 0 {
		return errors.New("want kafka, redis or s3")
	}
	fs := flag.NewFlagSet("standin "+args[0], flag.ContinueOnError)
	fs.SetOutput(a.errOut)
	addr := fs.String("addr", "127.0.0.1:0", "listen address (kafka: 127.0.0.1:PORT)")
	dataDir := fs.String("data-dir", "", "persist here")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	switch args[0] {
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
		return fmt.Errorf("unknown stand-in %q: want kafka, redis or s3", args[0])
	}
	<-ctx.Done()
	return nil
}

// runBrokerVersion waits until a broker answers metadata and prints its
// version, so a test run shows which broker it ran against.
func runBrokerVersion(ctx context.Context, a *app, args []string) error {
	fs := flag.NewFlagSet("broker-version", flag.ContinueOnError)
	fs.SetOutput(a.errOut)
	brokers := fs.String("brokers", a.getenv("RELAY_KAFKA_BROKERS"), "seed brokers")
	wait := fs.Duration("wait", 90*time.Second, "how long to wait for the broker")
	if err := fs.Parse(args); err != nil {
		return err
	}
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

func runVersion(_ context.Context, a *app, _ []string) error {
	fmt.Fprintf(a.out, "relay %s\n", telemetry.Version)
	return nil
}

func runFreePort(_ context.Context, a *app, _ []string) error {
	p, err := lifecycle.FreePort()
	if err != nil {
		return err
	}
	fmt.Fprintln(a.out, p)
	return nil
}

func runProbe(ctx context.Context, _ *app, args []string) error {
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
