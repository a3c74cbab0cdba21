// Package testenv gives integration tests the real Kafka broker, Redis server
// and S3-compatible server that scripts/testenv.sh started, through the
// RELAY_TEST_* variables it exports.
//
// Under `go test -short` integration tests are skipped with a message. Outside
// CI, a test run without the variables skips them too, saying how to run them.
// With CI=true a missing service fails the test: CI never passes by skipping.
package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/relayhq/relay/pkg/kafka"
	"github.com/relayhq/relay/pkg/lifecycle"
	"github.com/relayhq/relay/pkg/logging"
	"github.com/relayhq/relay/pkg/record"
	"github.com/relayhq/relay/pkg/redisconn"
	"github.com/relayhq/relay/pkg/telemetry"
)

// Test processes share go-redis's process-wide logger; keep its dial
// errors (expected in fault-injection tests) out of test output.
var _ = func() bool { redisconn.RouteLogs(slog.New(slog.DiscardHandler)); return true }()

// CI reports whether the run is in CI, where real services are mandatory.
func CI() bool { return os.Getenv("CI") == "true" }

func need(t testing.TB, variable, what string) string {
	t.Helper()
	if testing.Short() {
		t.Skipf("integration test skipped by -short (needs %s)", what)
	}
	v := os.Getenv(variable)
	if v == "" {
		if CI() {
			t.Fatalf("%s is not set: CI requires a real %s (run the tests through `make test`)", variable, what)
		}
		t.Skipf("%s is not set; run `make test` (scripts/testenv.sh) to start a real %s", variable, what)
	}
	return v
}

// KafkaBrokers returns the test broker addresses. In CI the broker must be a
// real Kafka or Redpanda, never the embedded stand-in.
func KafkaBrokers(t testing.TB) []string {
	t.Helper()
	v := need(t, "RELAY_TEST_KAFKA_BROKERS", "Kafka broker")
	if CI() && os.Getenv("RELAY_TEST_KAFKA_KIND") == "kfake" {
		t.Fatal("CI requires a real Kafka broker, but RELAY_TEST_KAFKA_KIND=kfake")
	}
	return strings.Split(v, ",")
}

// RedisAddr returns the test Redis server's address.
func RedisAddr(t testing.TB) string {
	t.Helper()
	return need(t, "RELAY_TEST_REDIS_ADDR", "Redis server")
}

// S3Endpoint returns the test S3-compatible endpoint URL.
func S3Endpoint(t testing.TB) string {
	t.Helper()
	return need(t, "RELAY_TEST_S3_ENDPOINT", "S3-compatible server")
}

// Redis returns a client of the test Redis server, closed when the test ends.
// Tests share the server, so they only touch keys of ids they made.
func Redis(t testing.TB) redis.UniversalClient {
	t.Helper()
	// Several addresses (RELAY_TEST_REDIS_NODES) are a Redis Cluster.
	c := redis.NewUniversalClient(&redis.UniversalOptions{Addrs: strings.Split(RedisAddr(t), ","), ContextTimeoutEnabled: true})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.Ping(ctx).Err(); err != nil {
		t.Fatalf("test redis: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// MiniRedis returns a client of an in-process miniredis, for fast unit tests
// of Redis logic. Integration tests use Redis instead.
func MiniRedis(t testing.TB) (redis.UniversalClient, *miniredis.Miniredis) {
	t.Helper()
	m := miniredis.RunT(t)
	c := redis.NewUniversalClient(&redis.UniversalOptions{Addrs: []string{m.Addr()}})
	t.Cleanup(func() { _ = c.Close() })
	return c, m
}

// RedisBackends runs fn against miniredis and, when available, the real test
// Redis: the conformance pattern for code whose Lua scripts must behave the
// same on both (`relay dev` runs on miniredis).
func RedisBackends(t *testing.T, fn func(t *testing.T, rdb redis.UniversalClient)) {
	t.Run("miniredis", func(t *testing.T) {
		c, _ := MiniRedis(t)
		fn(t, c)
	})
	t.Run("redis-server", func(t *testing.T) {
		fn(t, Redis(t))
	})
}

// UniquePrefix returns a topic prefix no other test uses, so tests sharing a
// broker never read each other's records.
func UniquePrefix() string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return "t" + hex.EncodeToString(b) + "."
}

// KafkaConfig returns a Kafka config for the test broker with a unique topic
// prefix, 3 partitions and the given retry ladder (default: 1s,2s,3s).
func KafkaConfig(t testing.TB, tiers ...time.Duration) kafka.Config {
	t.Helper()
	if len(tiers) == 0 {
		tiers = []time.Duration{time.Second, 2 * time.Second, 3 * time.Second}
	}
	return kafka.Config{
		Brokers:           KafkaBrokers(t),
		Partitions:        3,
		ReplicationFactor: -1,
		EventsRetention:   24 * time.Hour,
		DLQRetention:      24 * time.Hour,
		DialTimeout:       5 * time.Second,
		SessionTimeout:    10 * time.Second,
		TopicPrefix:       UniquePrefix(),
		RetryTiers:        tiers,
		MaxBodyBytes:      kafka.DefaultMaxBodyBytes,
	}
}

// Names returns the topic names of cfg, failing the test on a bad ladder.
func Names(t testing.TB, cfg kafka.Config) record.Topics {
	t.Helper()
	n, err := cfg.Names()
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// Eventually polls cond every 50ms until it holds or d passes.
func Eventually(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		if cond() {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Deps are a service's dependencies for a test: no log output, and a
// registry of its own so metrics of one test never mix with another's.
func Deps() lifecycle.Deps {
	return lifecycle.Deps{Logger: logging.Discard(), Telemetry: &telemetry.Telemetry{Registry: telemetry.NewRegistry()}}
}
