// Package gate pauses deliver's consumers while Redis is down, and retries
// the calls of work in flight until it is back.
package gate

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/relayhq/relay/pkg/backoff"
	"github.com/relayhq/relay/pkg/redisconn"
)

// Gate tracks whether Redis is reachable and accepts writes. While it does
// not, the consumers stop fetching, so no new attempt starts (and no retry
// tier is spent on an outage of Relay's own), and nothing is committed; work
// in flight keeps retrying its Redis calls. A Run loop probes with a write
// until one succeeds.
type Gate struct {
	rdb   redis.UniversalClient
	log   *slog.Logger
	gauge prometheus.Gauge

	mu   sync.Mutex
	down bool
	up   chan struct{} // closed when Redis is back
	kick chan struct{}
}

// New returns a Gate over rdb.
func New(rdb redis.UniversalClient, log *slog.Logger, reg prometheus.Registerer) *Gate {
	h := &Gate{
		rdb: rdb, log: log, kick: make(chan struct{}, 1),
		gauge: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "relay_deliver_paused", Help: "1 while deliver has paused fetching because Redis is unreachable or refuses writes.",
		}),
	}
	reg.MustRegister(h.gauge)
	return h
}

// Name implements lifecycle.Worker.
func (h *Gate) Name() string { return "redis-health" }

// RedisDown reports a failed Redis call that looked like an outage: Redis
// unreachable, or refusing writes.
func (h *Gate) RedisDown(err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.down {
		return
	}
	h.down = true
	h.up = make(chan struct{})
	h.gauge.Set(1)
	h.log.Error("redis unreachable or refusing writes: pausing consumption", "error", err)
	select {
	case h.kick <- struct{}{}:
	default:
	}
}

// WaitUp returns at once while Redis is up; otherwise it reports that, and
// after pause has been called, blocks until Redis is back (then calls
// resume) or ctx ends.
func (h *Gate) WaitUp(ctx context.Context, pause, resume func()) error {
	h.mu.Lock()
	down, up := h.down, h.up
	h.mu.Unlock()
	if !down {
		return nil
	}
	pause()
	defer resume()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-up:
		return nil
	}
}

// Run probes Redis with a write once a second while it is down.
func (h *Gate) Run(ctx context.Context) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-h.kick:
		}
		for {
			if !backoff.Sleep(ctx, time.Second) {
				return nil
			}
			if err := redisconn.Writable(ctx, h.rdb, time.Second); err == nil {
				break
			}
		}
		h.mu.Lock()
		h.down = false
		close(h.up)
		h.gauge.Set(0)
		h.mu.Unlock()
		h.log.Info("redis accepts writes again: resuming consumption")
	}
}

// Retry runs fn until it succeeds or ctx ends, backing off from 100ms to 5s,
// and reports Redis outages (unreachable, or refusing writes) to the gate,
// which pauses fetching: work in flight waits for Redis rather than failing.
// what names the call in the log, once at the first failure, every 20th
// after it, and once when it recovers.
func (h *Gate) Retry(ctx context.Context, what string, fn func() error) error {
	p := backoff.Policy{Initial: 100 * time.Millisecond, Max: 5 * time.Second, Failed: func(err error, failures int) bool {
		if redisconn.IsUnavailable(err) || redisconn.IsWriteRefused(err) {
			h.RedisDown(err)
		}
		if backoff.Every(failures, 20) {
			h.log.WarnContext(ctx, "retrying", "while", what, "error", err, "failures", failures)
		}
		return true
	}}
	failures, err := p.Retry(ctx, func(context.Context) error { return fn() })
	if err == nil && failures > 0 {
		h.log.InfoContext(ctx, "recovered", "while", what, "failures", failures)
	}
	return err
}
