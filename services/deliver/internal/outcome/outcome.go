// Package outcome decides what happens to a delivery after an attempt:
// delivered, retried on a later tier, or parked in the DLQ.
package outcome

import (
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/relayhq/relay/pkg/catalog"
	"github.com/relayhq/relay/pkg/delivery"
	"github.com/relayhq/relay/pkg/record"
)

// Kind is the fate of a delivery after one attempt.
type Kind int

const (
	// Delivered: a 2xx answer.
	Delivered Kind = iota
	// Retry: a network error, a timeout, 408, 425, 429, 5xx, 1xx or 3xx.
	Retry
	// Dead: any other 4xx; it goes straight to the DLQ.
	Dead
)

// Verdict is Classify's answer.
type Verdict struct {
	Kind Kind
	// DeadReason is set for Dead.
	DeadReason string
	// Gone means the endpoint answered 410 and its subscription is disabled.
	Gone bool
	// RetryAfter is the endpoint's Retry-After, when it sent one.
	RetryAfter time.Duration
}

// Classify judges one attempt: status is 0 when err is set.
func Classify(status int, err error, h http.Header, now time.Time) Verdict {
	switch {
	case err != nil || status == 0:
		return Verdict{Kind: Retry}
	case status >= 200 && status < 300:
		return Verdict{Kind: Delivered}
	case status == http.StatusGone:
		return Verdict{Kind: Dead, DeadReason: record.DeadGone, Gone: true}
	case status == http.StatusRequestTimeout, status == http.StatusTooEarly, status == http.StatusTooManyRequests, status >= 500:
		v := Verdict{Kind: Retry}
		v.RetryAfter, _ = RetryAfter(h.Get("Retry-After"), now)
		return v
	case status >= 400:
		return Verdict{Kind: Dead, DeadReason: record.DeadNonRetryableStatus}
	default:
		// 1xx and 3xx (redirects are not followed: a redirect could point
		// anywhere, internal addresses included).
		return Verdict{Kind: Retry}
	}
}

// Describe is the error recorded for an answer that is not 2xx: its status,
// and for a redirect where it pointed, since the fix is to point the
// subscription there (redirects are not followed).
func Describe(status int, h http.Header) string {
	msg := "HTTP " + strconv.Itoa(status) + " " + http.StatusText(status)
	if status >= 300 && status < 400 {
		loc := strings.ToValidUTF8(h.Get("Location"), "?")
		if loc == "" {
			return msg + " (a redirect without a Location; redirects are not followed)"
		}
		if len(loc) > maxLocation {
			loc = strings.ToValidUTF8(loc[:maxLocation], "") + "…"
		}
		return msg + " to " + loc + " (redirects are not followed: update the subscription's url)"
	}
	return msg
}

// maxLocation bounds the redirect target quoted in an error.
const maxLocation = 300

// RetryAfter parses a Retry-After header: delay-seconds or an HTTP date.
func RetryAfter(v string, now time.Time) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		if n < 0 {
			return 0, false
		}
		if n > 7*24*3600 {
			n = 7 * 24 * 3600
		}
		return time.Duration(n) * time.Second, true
	}
	if t, err := http.ParseTime(v); err == nil {
		d := t.Sub(now)
		if d < 0 {
			d = 0
		}
		return d, true
	}
	return 0, false
}

// NextTier returns the tier a failed delivery goes to next: the one after
// current (-1 when the attempt came from relay.events or relay.deliveries),
// or, when the endpoint asked for a Retry-After, the first later tier at least
// that long (the last tier when none is). ok is false when the ladder is
// exhausted: the delivery is dead.
func NextTier(tiers []record.Tier, current int, retryAfter time.Duration) (int, bool) {
	next := current + 1
	if next >= len(tiers) {
		return 0, false
	}
	if retryAfter > 0 {
		for i := next; i < len(tiers); i++ {
			if tiers[i].Delay >= retryAfter {
				return i, true
			}
		}
		return len(tiers) - 1, true
	}
	return next, true
}

// StatusClass is a bounded label for metrics: 2xx, 3xx, 4xx, 5xx or network.
func StatusClass(status int) string {
	switch {
	case status >= 200 && status < 600:
		return strconv.Itoa(status/100) + "xx"
	default:
		return "network"
	}
}

// MovesLane reports whether an ordered delivery settled as status lets its
// key's next event proceed: delivered, always; gone to the DLQ, unless its
// subscription blocks the key on failure (until the entry is redriven and
// delivered, or discarded); still retrying, never.
func MovesLane(status, onFailure string) bool {
	switch status {
	case delivery.StatusDelivered:
		return true
	case delivery.StatusDead:
		return onFailure != catalog.OnFailureBlock
	}
	return false
}
