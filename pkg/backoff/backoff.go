// Package backoff retries an operation with exponentially growing waits.
//
// It is Relay's one retry loop: deliver's Redis and Kafka calls, count's
// Redis writes and archive's S3 uploads all go through it, each with its own
// hook for what a failure means to it (a log line every so often, a health
// gate, a metric, giving up for a rebalance).
package backoff

import (
	"context"
	"time"
)

// Policy says how long to wait between tries and what a failure means.
type Policy struct {
	// Initial is the first wait; each failure doubles it, up to Max.
	Initial, Max time.Duration
	// Failed, when set, hears each failure; failures counts them from 1.
	// Returning false gives up: Retry returns that error at once.
	Failed func(err error, failures int) bool
}

// Retry runs fn until it returns nil, ctx ends (it returns ctx's error) or
// Failed gives up (it returns fn's error). It returns how many tries failed
// before the one that succeeded.
func (p Policy) Retry(ctx context.Context, fn func(ctx context.Context) error) (int, error) {
	wait := p.Initial
	for failures := 0; ; {
		err := fn(ctx)
		if err == nil {
			return failures, nil
		}
		if ctx.Err() != nil {
			return failures, ctx.Err()
		}
		failures++
		if p.Failed != nil && !p.Failed(err, failures) {
			return failures, err
		}
		if !Sleep(ctx, wait) {
			return failures, ctx.Err()
		}
		wait = min(wait*2, p.Max)
	}
}

// Every reports whether the failures-th failure is one to log: the first
// and every nth after it, so that a long outage is neither silent nor a
// flood.
func Every(failures, n int) bool { return failures == 1 || (failures-1)%n == 0 }

// Sleep waits for d or until ctx ends, reporting whether d passed.
func Sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
