package dispatch

import (
	"math"
	"time"
)

// Answer is what a job reports of its endpoint: how long it took to answer
// (0 when no request was made), and whether the answer asked Relay to send
// less (a 429 or 503, a timeout, a refused connection).
type Answer struct {
	Took     time.Duration
	Overload bool
}

// limit is one endpoint's adaptive concurrency, additive increase and
// multiplicative decrease on its own answers, as TCP's congestion window
// and Netflix's AIMD limiter do: it grows by one for each limit's worth of
// answers that came back in time while the endpoint was using most of it,
// shrinks by a tenth when answers take much longer than the endpoint's
// best, and halves when the endpoint says it is overloaded. It never leaves
// [1, max]: max is the operator's cap (RELAY_DELIVER_PER_SUBSCRIPTION).
type limit struct {
	value float64
	max   float64
	// best is the endpoint's fastest recent answer, the baseline a rise is
	// measured against; it drifts up slowly, so that an endpoint that has
	// become slower for good is not judged by its past for ever.
	best time.Duration
	// backoffAt is when the limit last shrank: it shrinks at most once per
	// best answer time plus a little, since the answers of the jobs already
	// started say nothing new.
	backoffAt time.Time
}

// initialLimit is where an endpoint starts: a few deliveries at once, which
// an endpoint that answers in tens of milliseconds turns into hundreds a
// second before the limit has grown at all.
const initialLimit = 8

// tolerance is how much slower than its best an endpoint may answer before
// the limit shrinks: below it, a longer answer is noise or Relay's own
// scheduling, which fewer concurrent deliveries would not shorten.
const (
	toleranceFactor = 2
	toleranceFloor  = 20 * time.Millisecond
)

func newLimit(max int) *limit {
	return &limit{value: math.Min(initialLimit, float64(max)), max: float64(max)}
}

// allowed is how many jobs may run at once now.
func (l *limit) allowed() int { return int(l.value) }

// observe updates the limit with one answer, running being how many of the
// endpoint's jobs were running when it came (itself included).
func (l *limit) observe(a Answer, running int, now time.Time) {
	if a.Took <= 0 && !a.Overload {
		return // no request made: nothing learnt
	}
	if a.Took > 0 && (l.best == 0 || a.Took < l.best) {
		l.best = a.Took
	} else if a.Took > 0 {
		l.best += (a.Took - l.best) / 256 // the baseline drifts towards what it sees
	}
	slow := a.Took > max(toleranceFactor*l.best, l.best+toleranceFloor)
	switch {
	case a.Overload || slow:
		if now.Sub(l.backoffAt) < l.best+toleranceFloor {
			return
		}
		l.backoffAt = now
		factor := 0.9
		if a.Overload {
			factor = 0.5
		}
		l.value = math.Max(1, l.value*factor)
	case float64(running)*2 >= l.value:
		// Used: grow. An endpoint that uses less than half its limit would
		// learn nothing from a larger one.
		l.value = math.Min(l.max, l.value+1/l.value)
	}
}
