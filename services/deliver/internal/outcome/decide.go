package outcome

import (
	"net/http"
	"time"

	"github.com/relayhq/relay/pkg/delivery"
	"github.com/relayhq/relay/pkg/record"
)

// Situation is everything the next step of one delivery depends on.
type Situation struct {
	// Record is the delivery as its record carries it: the attempt it asks
	// for, how far up the ladder it is (Tier, 0 for none), its origin.
	Record record.Delivery
	// Begun is what the stored state said of the attempt (delivery.Begin):
	// delivery.Proceed, AlreadyDelivered, Stale or Busy.
	Begun string
	// Enabled is the subscription's switch.
	Enabled bool
	// Answer is the endpoint's answer to the attempt; nil before it is made.
	Answer *Answer
	// Tiers is the retry ladder and DLQ the dead letter topic.
	Tiers []record.Tier
	// MaxAttempts is the subscription's cap on attempts (0: none): its
	// ladder is the first MaxAttempts-1 tiers of Tiers.
	DLQ         string
	MaxAttempts int
	// Now is when the attempt was made (or is decided, before one).
	Now time.Time
}

// Answer is what came of an attempt.
type Answer struct {
	Status  int
	Header  http.Header
	Body    []byte
	Latency time.Duration
	// Err is a network error or timeout (Status is 0 then).
	Err error
	// Cancelled means the worker's own context ended during the attempt
	// (shutdown, a revoked partition): nothing is known of the endpoint.
	Cancelled bool
}

// Overloaded reports whether an answer asks Relay to send the endpoint
// less: 429 or 503, or no answer in time or no connection (not Relay's own
// cancellation).
func Overloaded(a Answer) bool {
	return a.Status == http.StatusTooManyRequests || a.Status == http.StatusServiceUnavailable || a.Err != nil && !a.Cancelled
}

// Action is what the engine does next.
type Action int

const (
	// Wait: another worker holds this attempt's lease; ask again later.
	Wait Action = iota + 1
	// Skip: the delivery is settled already; drop the record.
	Skip
	// Attempt: POST to the endpoint, then decide again with its answer.
	Attempt
	// Park: the subscription is disabled; produce Forward to the DLQ
	// without spending an attempt, then record the delivery parked.
	Park
	// Settle: produce Forward (to Topic, when set) and wait for the
	// broker's acknowledgement, then record Result.
	Settle
	// Abandon: give the lease back and leave the record to be redone.
	Abandon
)

// Step is Decide's answer.
type Step struct {
	Action Action
	// Outcome names the step in relay_deliver_outcomes_total.
	Outcome string
	// Forward is the record produced before the state is recorded, on
	// Topic: the next tier or the DLQ. Topic is empty when nothing is.
	Forward record.Delivery
	Topic   string
	// Result is what Settle records.
	Result delivery.Result
	// DeadReason is set when the delivery goes to the DLQ.
	DeadReason string
	// Disable: the endpoint answered 410 Gone; turn its subscription off.
	Disable bool
}

// Ladder is the retry ladder of a subscription that caps its attempts at
// maxAttempts (0 for no cap): the first maxAttempts-1 tiers.
func Ladder(tiers []record.Tier, maxAttempts int) []record.Tier {
	if maxAttempts > 0 && maxAttempts-1 < len(tiers) {
		return tiers[:maxAttempts-1]
	}
	return tiers
}

// Decide is the delivery engine's whole judgement, without its effects:
// given a delivery's record, what the stored state said of its attempt, the
// subscription, and the endpoint's answer (once there is one), it returns
// what to do next. A delivered pair is never attempted again; a failed
// attempt goes to the tier after the record's (or the first one at least as
// long as the endpoint's Retry-After), and to the DLQ past the last tier or
// on an answer no retry can change.
func Decide(s Situation) Step {
	d := s.Record
	if s.Answer == nil {
		switch s.Begun {
		case delivery.Busy:
			return Step{Action: Wait}
		case delivery.AlreadyDelivered:
			return Step{Action: Skip, Outcome: "skipped_delivered"}
		case delivery.Stale:
			return Step{Action: Skip, Outcome: "skipped_stale"}
		}
		if !s.Enabled {
			// Parked with the attempts made so far: the one this record
			// asks for is not spent, so a redrive after re-enabling makes it.
			return Step{
				Action: Park, Outcome: "parked", Topic: s.DLQ, DeadReason: record.DeadSubscriptionDisabled,
				Forward: record.Delivery{
					Event: d.Event, SubscriptionID: d.SubscriptionID, Attempt: d.Attempt - 1, NotBefore: s.Now,
					LastError: "subscription disabled", DeadReason: record.DeadSubscriptionDisabled, Origin: d.Origin, Tier: d.Tier,
					HeadSince: d.HeadSince,
				},
			}
		}
		return Step{Action: Attempt}
	}

	a := s.Answer
	if a.Cancelled {
		return Step{Action: Abandon}
	}
	v := Classify(a.Status, a.Err, a.Header, s.Now)
	att := delivery.Attempt{Attempt: d.Attempt, At: s.Now, StatusCode: a.Status, LatencyMS: a.Latency.Milliseconds(), Response: string(a.Body)}
	switch {
	case a.Err != nil:
		att.Error = a.Err.Error()
	case v.Kind != Delivered:
		att.Error = Describe(a.Status, a.Header)
	}
	step := Step{Action: Settle, Result: delivery.Result{Attempt: att}}
	next := record.Delivery{Event: d.Event, SubscriptionID: d.SubscriptionID, LastStatus: a.Status, LastError: att.Error, HeadSince: d.HeadSince}
	switch v.Kind {
	case Delivered:
		step.Outcome, step.Result.Status = delivery.StatusDelivered, delivery.StatusDelivered
		return step
	case Retry:
		if t, ok := NextTier(Ladder(s.Tiers, s.MaxAttempts), d.Tier-1, v.RetryAfter); ok {
			tr := s.Tiers[t]
			next.Attempt, next.NotBefore, next.Origin, next.Tier = d.Attempt+1, s.Now.Add(tr.Delay), record.OriginRetry, t+1
			step.Outcome, step.Result.Status, step.Result.NextAttemptAt = delivery.StatusRetrying, delivery.StatusRetrying, next.NotBefore
			step.Forward, step.Topic = next, tr.Topic
			return step
		}
		v.DeadReason = record.DeadRetriesExhausted
	}
	next.Attempt, next.NotBefore, next.DeadReason, next.Origin, next.Tier = d.Attempt, s.Now, v.DeadReason, d.Origin, d.Tier
	step.Outcome, step.Result.Status = delivery.StatusDead, delivery.StatusDead
	step.Forward, step.Topic, step.DeadReason, step.Disable = next, s.DLQ, v.DeadReason, v.Gone
	return step
}
