package outcome

import (
	"net/http"
	"time"

	"github.com/relayhq/relay/pkg/record"
)

// Health is what an attempt says of its endpoint, for the circuit breaker.
type Health int

const (
	// Neutral: nothing either way (a 4xx: the endpoint is up and refused
	// this one; a cancelled attempt).
	Neutral Health = iota
	// Up: a 2xx.
	Up
	// Down: a network error, a timeout, 408 or 5xx.
	Down
)

// Judge says what an answer tells of the endpoint's health, and how long
// it asked every delivery to it to wait (a 429 with Retry-After; 0 for
// none). A 429 is not Down: the endpoint is up and pacing its senders.
func Judge(a *Answer, now time.Time) (Health, time.Duration) {
	switch {
	case a == nil || a.Cancelled:
		return Neutral, 0
	case a.Err != nil || a.Status == 0:
		return Down, 0
	case a.Status >= 200 && a.Status < 300:
		return Up, 0
	case a.Status == http.StatusTooManyRequests:
		wait, _ := RetryAfter(a.Header.Get("Retry-After"), now)
		return Neutral, wait
	case a.Status == http.StatusRequestTimeout || a.Status >= 500:
		return Down, 0
	}
	return Neutral, 0
}

// Nap is the longest a delivery waits in place for its time; a longer
// wait goes back to Kafka, holding nothing.
const Nap = 250 * time.Millisecond

// Late is how far past its reserved time a throttled delivery may still
// use it: a later one asks for a new time, so that deliveries that fell
// behind never go out together above the limit.
const Late = Nap

// Hop is where a delivery that may not be attempted before a given time
// goes meanwhile.
type Hop struct {
	// Now: attempt it now, after Sleep (at most Nap).
	Now   bool
	Sleep time.Duration
	// Otherwise it goes on Tiers[Tier], due at NotBefore, spending no
	// attempt and no rung.
	Tier      int
	NotBefore time.Time
}

// Throttled decides where a delivery that may be attempted at `at` goes
// now, when it may wait in place for up to stay (at least Nap). Far ahead,
// it rides the longest tier that is not longer than the wait, due when that
// tier's delay is up, so that each tier's not-before times stay in the
// order records are written and it holds back nothing behind it; it hops
// again until less than the first tier's delay is left. That last stretch
// it waits in place when it may, else it rides the first tier due at `at`
// itself (no later than any record written after it, but possibly behind
// one due later).
func Throttled(now, at time.Time, tiers []record.Tier, stay time.Duration) Hop {
	wait := at.Sub(now)
	if wait <= max(stay, Nap) {
		return Hop{Now: true, Sleep: max(wait, 0)}
	}
	t := -1
	for i, tr := range tiers {
		if tr.Delay <= wait {
			t = i
		}
	}
	if t < 0 {
		return Hop{Tier: 0, NotBefore: at}
	}
	return Hop{Tier: t, NotBefore: now.Add(tiers[t].Delay)}
}
