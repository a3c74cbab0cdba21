package gate

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/relayhq/relay/pkg/testenv"
)

// A call that fails because Redis is unreachable closes the gate (the
// consumers pause), is retried until it succeeds, and says so in the log;
// any other failure is retried without closing it.
func TestRetryClosesTheGateOnAnOutage(t *testing.T) {
	rdb, _ := testenv.MiniRedis(t)
	log, logs := testenv.Logger()
	g := New(rdb, log, prometheus.NewRegistry())
	calls := 0
	err := g.Retry(context.Background(), "begin delivery", func() error {
		if calls++; calls < 3 {
			return errors.New("dial tcp 127.0.0.1:6379: connect: connection refused")
		}
		return nil
	})
	if err != nil || calls != 3 {
		t.Fatalf("Retry = %v after %d calls", err, calls)
	}
	if testutil.ToFloat64(g.gauge) != 1 {
		t.Fatal("an outage did not pause consumption")
	}
	paused := false
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	if err := g.WaitUp(ctx, func() { paused = true }, func() {}); err == nil || !paused {
		t.Fatalf("WaitUp = %v (paused %v) while Redis is down", err, paused)
	}
	for _, want := range []string{"redis unreachable", "while=\"begin delivery\"", "recovered"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("log lacks %q: %s", want, logs.String())
		}
	}

	g2 := New(rdb, log, prometheus.NewRegistry())
	calls = 0
	_ = g2.Retry(context.Background(), "x", func() error {
		if calls++; calls < 2 {
			return errors.New("WRONGTYPE Operation against a key holding the wrong kind of value")
		}
		return nil
	})
	if testutil.ToFloat64(g2.gauge) != 0 {
		t.Fatal("a non-outage error paused consumption")
	}
}

// Run probes Redis once it is reported down and opens the gate when a
// write succeeds.
func TestRunReopensWhenRedisIsBack(t *testing.T) {
	rdb, _ := testenv.MiniRedis(t)
	log, _ := testenv.Logger()
	g := New(rdb, log, prometheus.NewRegistry())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = g.Run(ctx) }()
	g.RedisDown(errors.New("connection refused"))
	wctx, wcancel := context.WithTimeout(ctx, 5*time.Second)
	defer wcancel()
	if err := g.WaitUp(wctx, func() {}, func() {}); err != nil {
		t.Fatalf("the gate did not reopen with Redis up: %v", err)
	}
}
