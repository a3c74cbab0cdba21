// Package bench measures Relay's throughput and latency on the machine it
// runs on, next to bare-HTTP baselines measured in the same run with the same
// load generator (`make bench`). The generator is open loop: request i is
// due at start + i/rate whatever happened to earlier ones, and its latency
// counts from when it was due, so a slow server cannot hide its queueing
// (no coordinated omission).
package bench

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// Stats summarises one open-loop run.
type Stats struct {
	Offered  float64 // requests per second asked for
	Achieved float64 // successful completions per second
	Sent     int
	OK       int
	Errors   int
	Shed     int // not sent: too many already in flight (counted as errors)
	P50, P99 time.Duration
	Max      time.Duration
}

// Sustained reports whether the system kept up with the offered rate:
// at least 95% of it completed, at most 1% failed, and p99 stayed under
// 250ms (beyond that a queue is building, not being served).
func (s Stats) Sustained() bool {
	return s.Achieved >= 0.95*s.Offered && float64(s.Errors+s.Shed) <= 0.01*float64(s.Sent+s.Shed) && s.P99 <= 250*time.Millisecond
}

func (s Stats) String() string {
	return fmt.Sprintf("offered %.0f/s achieved %.0f/s p50 %v p99 %v errors %d shed %d", s.Offered, s.Achieved, s.P50.Round(10*time.Microsecond), s.P99.Round(10*time.Microsecond), s.Errors, s.Shed)
}

// Recorder collects latencies from any goroutine.
type Recorder struct {
	mu   sync.Mutex
	lats []time.Duration
	errs atomic.Int64
}

// Observe records one successful operation's latency.
func (r *Recorder) Observe(d time.Duration) {
	r.mu.Lock()
	r.lats = append(r.lats, d)
	r.mu.Unlock()
}

// Fail records one failed operation.
func (r *Recorder) Fail() { r.errs.Add(1) }

// Count is how many successes were observed so far.
func (r *Recorder) Count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.lats)
}

// Summarise computes the stats of everything observed over dur at offered.
func (r *Recorder) Summarise(offered float64, sent, shed int, dur time.Duration) Stats {
	r.mu.Lock()
	lats := append([]time.Duration(nil), r.lats...)
	r.mu.Unlock()
	sort.Slice(lats, func(i, j int) bool { return lats[i] < lats[j] })
	s := Stats{Offered: offered, Sent: sent, OK: len(lats), Errors: int(r.errs.Load()), Shed: shed}
	s.Achieved = float64(len(lats)) / dur.Seconds()
	if n := len(lats); n > 0 {
		s.P50 = lats[n/2]
		s.P99 = lats[min(n-1, n*99/100)]
		s.Max = lats[n-1]
	}
	return s
}

// OpenLoop fires fire(i, due) for i in [0, rate×dur) at due = start + i/rate,
// at most maxInFlight at once (beyond that a request is shed, which counts
// against the run rather than slowing the schedule). It waits for the fired
// requests (up to grace after the schedule ends) and returns how many were
// sent and shed.
func OpenLoop(ctx context.Context, rate float64, dur time.Duration, maxInFlight int, fire func(ctx context.Context, i int, due time.Time)) (sent, shed int) {
	total := int(rate * dur.Seconds())
	sem := make(chan struct{}, maxInFlight)
	var wg sync.WaitGroup
	start := time.Now().Add(5 * time.Millisecond)
	for i := 0; i < total && ctx.Err() == nil; {
		due := int(time.Since(start).Seconds()*rate) + 1
		for ; i < due && i < total; i++ {
			at := start.Add(time.Duration(float64(i) / rate * float64(time.Second)))
			select {
			case sem <- struct{}{}:
				sent++
				wg.Add(1)
				go func(i int, at time.Time) {
					defer wg.Done()
					defer func() { <-sem }()
					fire(ctx, i, at)
				}(i, at)
			default:
				shed++
			}
		}
		time.Sleep(200 * time.Microsecond)
	}
	wg.Wait()
	return sent, shed
}
