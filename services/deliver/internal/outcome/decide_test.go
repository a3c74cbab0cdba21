package outcome

import (
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/relayhq/relay/pkg/delivery"
	"github.com/relayhq/relay/pkg/record"
)

var (
	now    = time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	ladder = []record.Tier{
		{Topic: "relay.retry.5s", Delay: 5 * time.Second},
		{Topic: "relay.retry.1m", Delay: time.Minute},
		{Topic: "relay.retry.10m", Delay: 10 * time.Minute},
	}
)

// situation is a first attempt (from relay.events) that may proceed.
func situation(mod func(*Situation)) Situation {
	s := Situation{
		Record: record.Delivery{Event: record.Event{ID: "evt_1", SourceID: "src_1"}, SubscriptionID: "sub_1", Attempt: 1, Tier: 0},
		Begun:  delivery.Proceed, Enabled: true, Tiers: ladder, DLQ: "relay.dlq", Now: now,
	}
	if mod != nil {
		mod(&s)
	}
	return s
}

func answered(status int, h http.Header) func(*Situation) {
	return func(s *Situation) { s.Answer = &Answer{Status: status, Header: h, Latency: 12 * time.Millisecond} }
}

func header(k, v string) http.Header { return http.Header{k: {v}} }

// want is a Step with only what a case checks.
type want struct {
	action     Action
	outcome    string
	topic      string
	attempt    int // of the forwarded record
	tier       int // of the forwarded record
	status     string
	deadReason string
	disable    bool
	notBefore  time.Duration // of the forwarded record, after now
}

func TestDecide(t *testing.T) {
	onTier := func(tier, attempt int) func(*Situation) {
		return func(s *Situation) {
			s.Record.Tier, s.Record.Attempt, s.Record.Origin = tier, attempt, record.OriginRetry
		}
	}
	both := func(fs ...func(*Situation)) func(*Situation) {
		return func(s *Situation) {
			for _, f := range fs {
				f(s)
			}
		}
	}
	retry1 := want{action: Settle, outcome: "retrying", topic: "relay.retry.5s", attempt: 2, tier: 1, status: delivery.StatusRetrying, notBefore: 5 * time.Second}
	for _, c := range []struct {
		name string
		mod  func(*Situation)
		want want
	}{
		// Before the attempt: what the stored state and the subscription say.
		{"proceed: make the attempt", nil, want{action: Attempt}},
		{"lease held by another worker: wait", func(s *Situation) { s.Begun = delivery.Busy }, want{action: Wait}},
		{"already delivered: never POSTed again", func(s *Situation) { s.Begun = delivery.AlreadyDelivered }, want{action: Skip, outcome: "skipped_delivered"}},
		{"a replay racing the first delivery, which won", both(func(s *Situation) { s.Record.Origin = record.OriginReplay }, func(s *Situation) { s.Begun = delivery.AlreadyDelivered }),
			want{action: Skip, outcome: "skipped_delivered"}},
		{"stale attempt number: its outcome is recorded already", both(onTier(1, 2), func(s *Situation) { s.Begun = delivery.Stale }), want{action: Skip, outcome: "skipped_stale"}},
		{"forced resend of a delivered pair, reopened: attempted", func(s *Situation) { s.Record.Attempt, s.Record.Origin = 3, record.OriginReplay }, want{action: Attempt}},
		{"disabled subscription: parked without spending the attempt", both(onTier(2, 3), func(s *Situation) { s.Enabled = false }),
			want{action: Park, outcome: "parked", topic: "relay.dlq", attempt: 2, tier: 2, deadReason: record.DeadSubscriptionDisabled}},
		{"disabled but already delivered: skipped, not parked", both(func(s *Situation) { s.Enabled = false }, func(s *Situation) { s.Begun = delivery.AlreadyDelivered }),
			want{action: Skip, outcome: "skipped_delivered"}},

		// After the attempt: every status class.
		{"200", answered(200, nil), want{action: Settle, outcome: "delivered", status: delivery.StatusDelivered}},
		{"204", answered(204, nil), want{action: Settle, outcome: "delivered", status: delivery.StatusDelivered}},
		{"101 is not a delivery", answered(101, nil), retry1},
		{"302: redirects are not followed", answered(302, header("Location", "https://elsewhere.example")), retry1},
		{"network error", func(s *Situation) { s.Answer = &Answer{Err: errors.New("connection refused")} }, retry1},
		{"timeout", func(s *Situation) { s.Answer = &Answer{Err: errors.New("context deadline exceeded")} }, retry1},
		{"408", answered(408, nil), retry1},
		{"425", answered(425, nil), retry1},
		{"429", answered(429, nil), retry1},
		{"500", answered(500, nil), retry1},
		{"503", answered(503, nil), retry1},
		{"400: dead at once", answered(400, nil),
			want{action: Settle, outcome: "dead", topic: "relay.dlq", attempt: 1, status: delivery.StatusDead, deadReason: record.DeadNonRetryableStatus}},
		{"404: dead at once", answered(404, nil),
			want{action: Settle, outcome: "dead", topic: "relay.dlq", attempt: 1, status: delivery.StatusDead, deadReason: record.DeadNonRetryableStatus}},
		{"410: dead, and the subscription disabled", answered(410, nil),
			want{action: Settle, outcome: "dead", topic: "relay.dlq", attempt: 1, status: delivery.StatusDead, deadReason: record.DeadGone, disable: true}},

		// The ladder.
		{"second tier after the first", both(onTier(1, 2), answered(500, nil)),
			want{action: Settle, outcome: "retrying", topic: "relay.retry.1m", attempt: 3, tier: 2, status: delivery.StatusRetrying, notBefore: time.Minute}},
		{"last tier: dead, retries exhausted", both(onTier(3, 4), answered(500, nil)),
			want{action: Settle, outcome: "dead", topic: "relay.dlq", attempt: 4, tier: 3, status: delivery.StatusDead, deadReason: record.DeadRetriesExhausted}},
		{"last tier, 429 with Retry-After: still dead", both(onTier(3, 4), answered(429, header("Retry-After", "1"))),
			want{action: Settle, outcome: "dead", topic: "relay.dlq", attempt: 4, tier: 3, status: delivery.StatusDead, deadReason: record.DeadRetriesExhausted}},
		{"a redriven delivery (no tier) starts the ladder again", both(func(s *Situation) { s.Record.Attempt, s.Record.Origin = 5, record.OriginRedrive }, answered(500, nil)),
			want{action: Settle, outcome: "retrying", topic: "relay.retry.5s", attempt: 6, tier: 1, status: delivery.StatusRetrying, notBefore: 5 * time.Second}},

		// A subscription's own cap on attempts: a prefix of the ladder.
		{"max_attempts 1: dead after the first", both(func(s *Situation) { s.MaxAttempts = 1 }, answered(500, nil)),
			want{action: Settle, outcome: "dead", topic: "relay.dlq", attempt: 1, status: delivery.StatusDead, deadReason: record.DeadRetriesExhausted}},
		{"max_attempts 2: the first tier", both(func(s *Situation) { s.MaxAttempts = 2 }, answered(500, nil)), retry1},
		{"max_attempts 2: dead after the second", both(func(s *Situation) { s.MaxAttempts = 2 }, onTier(1, 2), answered(500, nil)),
			want{action: Settle, outcome: "dead", topic: "relay.dlq", attempt: 2, tier: 1, status: delivery.StatusDead, deadReason: record.DeadRetriesExhausted}},
		{"max_attempts 3, Retry-After past its ladder: its last tier", both(func(s *Situation) { s.MaxAttempts = 3 }, answered(429, header("Retry-After", "3600"))),
			want{action: Settle, outcome: "retrying", topic: "relay.retry.1m", attempt: 2, tier: 2, status: delivery.StatusRetrying, notBefore: time.Minute}},
		{"max_attempts past the ladder: the whole ladder", both(func(s *Situation) { s.MaxAttempts = 10 }, onTier(2, 3), answered(500, nil)),
			want{action: Settle, outcome: "retrying", topic: "relay.retry.10m", attempt: 4, tier: 3, status: delivery.StatusRetrying, notBefore: 10 * time.Minute}},

		// Retry-After forms.
		{"Retry-After seconds picks the first tier that long", answered(429, header("Retry-After", "30")),
			want{action: Settle, outcome: "retrying", topic: "relay.retry.1m", attempt: 2, tier: 2, status: delivery.StatusRetrying, notBefore: time.Minute}},
		{"Retry-After HTTP date", answered(503, header("Retry-After", now.Add(3*time.Minute).Format(http.TimeFormat))),
			want{action: Settle, outcome: "retrying", topic: "relay.retry.10m", attempt: 2, tier: 3, status: delivery.StatusRetrying, notBefore: 10 * time.Minute}},
		{"Retry-After longer than every tier: the last", answered(503, header("Retry-After", "86400")),
			want{action: Settle, outcome: "retrying", topic: "relay.retry.10m", attempt: 2, tier: 3, status: delivery.StatusRetrying, notBefore: 10 * time.Minute}},
		{"Retry-After shorter than the next tier: the next", answered(429, header("Retry-After", "1")), retry1},
		{"Retry-After unreadable: ignored", answered(503, header("Retry-After", "soon")), retry1},
		{"Retry-After in the past: the next tier", answered(503, header("Retry-After", now.Add(-time.Hour).Format(http.TimeFormat))), retry1},
		{"Retry-After on a 500 at tier 1 never goes back down the ladder", both(onTier(2, 3), answered(500, header("Retry-After", "1"))),
			want{action: Settle, outcome: "retrying", topic: "relay.retry.10m", attempt: 4, tier: 3, status: delivery.StatusRetrying, notBefore: 10 * time.Minute}},

		// Shutdown.
		{"cancelled mid-attempt: the lease goes back, nothing settled", func(s *Situation) { s.Answer = &Answer{Err: errors.New("context canceled"), Cancelled: true} },
			want{action: Abandon}},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := Decide(situation(c.mod))
			w := c.want
			if got.Action != w.action || got.Outcome != w.outcome || got.Topic != w.topic || got.Result.Status != w.status ||
				got.DeadReason != w.deadReason || got.Disable != w.disable {
				t.Fatalf("Decide = action %d outcome %q topic %q status %q dead %q disable %v; want %+v",
					got.Action, got.Outcome, got.Topic, got.Result.Status, got.DeadReason, got.Disable, w)
			}
			if w.topic == "" {
				return
			}
			f := got.Forward
			if f.Attempt != w.attempt || f.Tier != w.tier || f.ID != "evt_1" || f.SubscriptionID != "sub_1" || f.DeadReason != w.deadReason {
				t.Fatalf("forwarded %+v; want attempt %d tier %d dead %q", f, w.attempt, w.tier, w.deadReason)
			}
			if nb := f.NotBefore.Sub(now); nb != w.notBefore {
				t.Fatalf("forwarded due in %v, want %v", nb, w.notBefore)
			}
		})
	}
}

// What an attempt records: its number, time, status, latency, response, and
// an error saying why it was not a delivery.
func TestDecideRecordsTheAttempt(t *testing.T) {
	s := situation(func(s *Situation) {
		s.Record.Attempt, s.Record.Tier = 2, 1
		s.Answer = &Answer{Status: 302, Header: header("Location", "https://new.example/hook"), Body: []byte("moved"), Latency: 40 * time.Millisecond}
	})
	got := Decide(s)
	a := got.Result.Attempt
	if a.Attempt != 2 || !a.At.Equal(now) || a.StatusCode != 302 || a.LatencyMS != 40 || a.Response != "moved" {
		t.Fatalf("attempt recorded as %+v", a)
	}
	if want := "HTTP 302 Found to https://new.example/hook (redirects are not followed: update the subscription's url)"; a.Error != want || got.Forward.LastError != want || got.Forward.LastStatus != 302 {
		t.Fatalf("error %q, forwarded %q/%d; want %q", a.Error, got.Forward.LastError, got.Forward.LastStatus, want)
	}
	if !got.Result.NextAttemptAt.Equal(got.Forward.NotBefore) {
		t.Fatalf("next attempt at %v, but the record is due %v", got.Result.NextAttemptAt, got.Forward.NotBefore)
	}
	ok := Decide(situation(answered(200, nil)))
	if ok.Result.Attempt.Error != "" || !ok.Result.NextAttemptAt.IsZero() {
		t.Fatalf("a delivery recorded error %q, next %v", ok.Result.Attempt.Error, ok.Result.NextAttemptAt)
	}
	netErr := Decide(situation(func(s *Situation) { s.Answer = &Answer{Err: errors.New("dial tcp: connection refused")} }))
	if netErr.Result.Attempt.Error != "dial tcp: connection refused" || netErr.Result.Attempt.StatusCode != 0 {
		t.Fatalf("a network error recorded as %+v", netErr.Result.Attempt)
	}
}

// An ordered head keeps the time it became its key's head on every record
// it travels on, up to the DLQ entry, which says how long it held its key.
func TestDecideCarriesTheHeadsSince(t *testing.T) {
	since := now.Add(-time.Hour)
	head := func(mod func(*Situation)) func(*Situation) {
		return func(s *Situation) { s.Record.HeadSince = since; mod(s) }
	}
	for name, s := range map[string]Situation{
		"retry":    situation(head(answered(503, nil))),
		"dead":     situation(head(answered(400, nil))),
		"disabled": situation(head(func(s *Situation) { s.Enabled = false })),
	} {
		if got := Decide(s); !got.Forward.HeadSince.Equal(since) {
			t.Errorf("%s: forwarded head since %v, want %v", name, got.Forward.HeadSince, since)
		}
	}
}
