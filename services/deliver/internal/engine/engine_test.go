package engine

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/relayhq/relay/pkg/catalog"
	"github.com/relayhq/relay/pkg/delivery"
	"github.com/relayhq/relay/pkg/record"
	"github.com/relayhq/relay/pkg/testenv"
	"github.com/relayhq/relay/services/deliver/internal/outcome"
	"github.com/relayhq/relay/services/deliver/internal/sender"
)

// harness is an Engine over fakes, on a ladder of three tiers.
type harness struct {
	e      *Engine
	states *fakeStates
	prod   *fakeProducer
	ep     *fakeEndpoint
	dis    *fakeDisabler
	alerts *fakeAlerts
	seen   *fakeObserver
	j      *journal
	names  record.Topics
	logs   *testenv.LogBuffer
}

func newHarness(t *testing.T, answer func(int, sender.Request) sender.Response) *harness {
	t.Helper()
	names, err := record.NewTopics("", []time.Duration{5 * time.Second, time.Minute, 10 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	j := &journal{}
	log, logs := testenv.Logger()
	h := &harness{
		states: newFakeStates(j), prod: &fakeProducer{journal: j}, ep: &fakeEndpoint{answer: answer},
		dis: &fakeDisabler{}, alerts: &fakeAlerts{}, seen: &fakeObserver{}, j: j, names: names, logs: logs,
	}
	h.e = New(Config{Names: names, LeaseFor: time.Minute, BusyWait: time.Millisecond, RefusedWait: time.Millisecond}, Deps{
		States: h.states, Disabler: h.dis, Sender: h.ep, Producer: h.prod, Retrier: retryLoop{}, Alerts: h.alerts, Observer: h.seen,
		Metrics: NewMetrics(prometheus.NewRegistry()), Logger: log,
	})
	return h
}

var (
	sub   = catalog.SubscriptionWithSecrets{Subscription: catalog.Subscription{ID: "sub_a", URL: "https://hooks.example/a", Enabled: true}}
	event = record.Event{ID: "evt_a", SourceID: "src_a", Type: "order.paid", Body: []byte(`{"n":1}`), ContentType: "application/json"}
)

// first is an event's first attempt, as the events consumer makes it.
func first() record.Delivery {
	return record.Delivery{Event: event, SubscriptionID: sub.ID, Attempt: 1, NotBefore: time.Now()}
}

func (h *harness) deliver(t *testing.T, d record.Delivery) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := h.e.Deliver(ctx, d, sub); err != nil {
		t.Fatalf("Deliver: %v", err)
	}
}

func (h *harness) outcome(name string) float64 {
	return testutil.ToFloat64(h.e.m.outcomes.WithLabelValues(name))
}

// A pair delivered is never POSTed again: not for its own record delivered
// twice (a commit lost in a rebalance), not for a retry record of it, not
// for a replay racing it.
func TestDeliveredPairIsNeverPostedAgain(t *testing.T) {
	h := newHarness(t, status(200))
	h.deliver(t, first())
	if st := h.states.get(event.ID, sub.ID); st.status != delivery.StatusDelivered || st.attempts != 1 {
		t.Fatalf("state after a 200: %+v", st)
	}
	redelivered := first()
	retry := first()
	retry.Attempt, retry.Tier, retry.Origin = 2, 1, record.OriginRetry
	replay := first()
	replay.Origin = record.OriginReplay
	for _, d := range []record.Delivery{redelivered, retry, replay} {
		h.deliver(t, d)
	}
	if n := h.ep.count(); n != 1 {
		t.Fatalf("the endpoint got %d POSTs, want 1", n)
	}
	if n := h.outcome("skipped_delivered"); n != 3 {
		t.Fatalf("skipped_delivered = %v, want 3", n)
	}
	if len(h.prod.records()) != 0 {
		t.Fatalf("a delivery produced %v", h.prod.records())
	}
	if st := h.states.get(event.ID, sub.ID); st.lease != "" {
		t.Fatalf("a skipped record kept the lease %q", st.lease)
	}
}

// A failing endpoint climbs the ladder one tier per attempt, each forward
// acknowledged before the attempt is recorded, and the last goes to the DLQ
// with an alert.
func TestFailuresClimbTheLadderToTheDLQ(t *testing.T) {
	h := newHarness(t, status(503))
	d := first()
	for i := 0; i < len(h.names.Tiers)+1; i++ {
		h.deliver(t, d)
		recs := h.prod.records()
		if len(recs) != i+1 {
			t.Fatalf("after attempt %d: %d records produced", d.Attempt, len(recs))
		}
		next := recs[i]
		want := h.names.DLQ
		if i < len(h.names.Tiers) {
			want = h.names.Tiers[i].Topic
		}
		if next.topic != want {
			t.Fatalf("attempt %d forwarded to %s, want %s", d.Attempt, next.topic, want)
		}
		d = next.d
	}
	if d.Attempt != 4 || d.DeadReason != record.DeadRetriesExhausted || d.LastStatus != 503 {
		t.Fatalf("dead letter %+v", d)
	}
	if n := h.ep.count(); n != 4 {
		t.Fatalf("%d POSTs, want 4", n)
	}
	st := h.states.get(event.ID, sub.ID)
	if st.status != delivery.StatusDead || st.attempts != 4 {
		t.Fatalf("state %+v", st)
	}
	want := []string{
		"produce relay.retry.5s", "finish retrying", "produce relay.retry.1m", "finish retrying",
		"produce relay.retry.10m", "finish retrying", "produce relay.dlq", "finish dead",
	}
	if got := h.j.all(); !slices.Equal(got, want) {
		t.Fatalf("writes %v, want %v (each forward before its state)", got, want)
	}
	if len(h.alerts.dead) != 1 || h.alerts.dead[0].Reason != record.DeadRetriesExhausted || h.alerts.dead[0].Attempts != 4 {
		t.Fatalf("alerts %+v", h.alerts.dead)
	}
}

// A forward the broker did not take is never settled: the state waits for
// the acknowledgement, and the POST is not made again for it.
func TestOutcomeWaitsForTheForward(t *testing.T) {
	h := newHarness(t, status(500))
	h.prod.fail = 3
	h.deliver(t, first())
	if got := h.j.all(); !slices.Equal(got, []string{"produce relay.retry.5s", "finish retrying"}) {
		t.Fatalf("writes %v", got)
	}
	if n := h.ep.count(); n != 1 {
		t.Fatalf("%d POSTs, want 1", n)
	}
}

// A state write that fails is retried; the POST is not repeated for it.
func TestOutcomeRecordRetried(t *testing.T) {
	h := newHarness(t, status(200))
	h.states.failFinish = 2
	h.deliver(t, first())
	if st := h.states.get(event.ID, sub.ID); st.status != delivery.StatusDelivered {
		t.Fatalf("state %+v", st)
	}
	if n := h.ep.count(); n != 1 {
		t.Fatalf("%d POSTs, want 1", n)
	}
}

// A worker that dies after forwarding but before recording leaves a
// duplicate forward behind; whichever copy comes second is stale, so the
// next attempt is POSTed once.
func TestDuplicateForwardIsStale(t *testing.T) {
	h := newHarness(t, status(500))
	h.states.failFinish = 1 << 30
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	_, err := h.e.Deliver(ctx, first(), sub)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Deliver = %v, want the context's end", err)
	}
	h.states.failFinish = 0
	h.states.take(event.ID, sub.ID, "") // the dead worker's lease lapses
	h.deliver(t, first())               // the record comes back: attempt 1 again
	recs := h.prod.records()
	if len(recs) != 2 || recs[0].d.Attempt != 2 || recs[1].d.Attempt != 2 {
		t.Fatalf("forwards %+v, want two of attempt 2", recs)
	}
	h.ep.answer = status(200)
	h.deliver(t, recs[0].d)
	h.deliver(t, recs[1].d)
	if n := h.ep.count(); n != 3 {
		t.Fatalf("%d POSTs, want 3 (attempt 1 twice: its outcome was never recorded; attempt 2 once)", n)
	}
	if n := h.outcome("skipped_delivered"); n != 1 {
		t.Fatalf("skipped_delivered = %v, want 1", n)
	}
}

// A 410 sends the delivery to the DLQ and disables its subscription; other
// 4xx answers go to the DLQ alone.
func TestGoneDisablesTheSubscription(t *testing.T) {
	h := newHarness(t, status(410))
	h.deliver(t, first())
	recs := h.prod.records()
	if len(recs) != 1 || recs[0].topic != h.names.DLQ || recs[0].d.DeadReason != record.DeadGone {
		t.Fatalf("forwards %+v", recs)
	}
	if h.dis.disabled[sub.ID] == "" {
		t.Fatalf("subscription not disabled")
	}
	h2 := newHarness(t, status(422))
	h2.deliver(t, first())
	if recs := h2.prod.records(); len(recs) != 1 || recs[0].d.DeadReason != record.DeadNonRetryableStatus {
		t.Fatalf("forwards %+v", recs)
	}
	if len(h2.dis.disabled) != 0 {
		t.Fatalf("a 422 disabled %v", h2.dis.disabled)
	}
}

// A disabled subscription's delivery is parked in the DLQ without a POST
// and without spending its attempt.
func TestDisabledSubscriptionParks(t *testing.T) {
	h := newHarness(t, status(200))
	off := sub
	off.Enabled = false
	d := first()
	d.Attempt, d.Tier = 3, 2
	if _, err := h.e.Deliver(context.Background(), d, off); err != nil {
		t.Fatal(err)
	}
	if n := h.ep.count(); n != 0 {
		t.Fatalf("%d POSTs to a disabled subscription", n)
	}
	recs := h.prod.records()
	if len(recs) != 1 || recs[0].topic != h.names.DLQ || recs[0].d.Attempt != 2 || recs[0].d.DeadReason != record.DeadSubscriptionDisabled {
		t.Fatalf("forwards %+v", recs)
	}
	if got := h.j.all(); !slices.Equal(got, []string{"produce relay.dlq", "park"}) {
		t.Fatalf("writes %v", got)
	}
	if st := h.states.get(event.ID, sub.ID); st.parked != "subscription disabled" || st.lease != "" {
		t.Fatalf("state %+v", st)
	}
}

// A worker stopped mid-POST settles nothing and gives the lease back, so
// that the record's next owner starts at once.
func TestCancelledAttemptReleasesTheLease(t *testing.T) {
	h := newHarness(t, nil)
	h.ep.block = true
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		for h.ep.count() == 0 {
			time.Sleep(time.Millisecond)
		}
		cancel()
	}()
	if _, err := h.e.Deliver(ctx, first(), sub); !errors.Is(err, context.Canceled) {
		t.Fatalf("Deliver = %v, want cancelled", err)
	}
	if got := h.j.all(); !slices.Equal(got, []string{"release"}) {
		t.Fatalf("writes %v, want only the release", got)
	}
	if st := h.states.get(event.ID, sub.ID); st.lease != "" || st.status != "" {
		t.Fatalf("state %+v", st)
	}
}

// A worker finding another on the same attempt waits for it, then finds
// the attempt settled and does not POST.
func TestBusyWaitsForTheOtherWorker(t *testing.T) {
	h := newHarness(t, status(200))
	h.states.take(event.ID, sub.ID, "other")
	go func() {
		time.Sleep(20 * time.Millisecond)
		_ = h.states.Finish(context.Background(), event.ID, sub.ID, "other", delivery.Result{Status: delivery.StatusDelivered, Attempt: delivery.Attempt{Attempt: 1}})
	}()
	h.deliver(t, first())
	if n := h.ep.count(); n != 0 {
		t.Fatalf("%d POSTs while another worker delivered it", n)
	}
	if testutil.ToFloat64(h.e.m.leaseWaits) == 0 {
		t.Fatal("no lease wait counted")
	}
}

// A stale record (its attempt finished) is dropped without a POST.
func TestStaleRecordSkipped(t *testing.T) {
	h := newHarness(t, status(500))
	h.deliver(t, first())
	h.deliver(t, first())
	if n := h.ep.count(); n != 1 || h.outcome("skipped_stale") != 1 {
		t.Fatalf("%d POSTs, skipped_stale %v", n, h.outcome("skipped_stale"))
	}
}

// A forced resend (the API reopened the pair and asked for the attempt
// after the last) is POSTed, once.
func TestForcedResendIsPostedOnce(t *testing.T) {
	h := newHarness(t, status(200))
	h.deliver(t, first())
	h.states.mu.Lock()
	h.states.pair(event.ID, sub.ID).status = delivery.StatusRetrying // what Reopen does
	h.states.mu.Unlock()
	resend := first()
	resend.Attempt, resend.Origin = 2, record.OriginReplay
	h.deliver(t, resend)
	h.deliver(t, resend)
	if n := h.ep.count(); n != 2 {
		t.Fatalf("%d POSTs, want the first delivery and one resend", n)
	}
}

// What the endpoint gets: the event's body, id, type and attempt number,
// signed with the subscription's secrets.
func TestRequestCarriesTheEvent(t *testing.T) {
	h := newHarness(t, status(200))
	d := first()
	d.Attempt, d.Tier = 2, 1
	h.deliver(t, d)
	r := h.ep.posts[0]
	if r.URL != sub.URL || string(r.Body) != `{"n":1}` || r.EventID != event.ID || r.EventType != event.Type || r.Attempt != 2 || r.ContentType != "application/json" {
		t.Fatalf("request %+v", r)
	}
}

// Defer spends no attempt and records when the delivery is next due.
func TestDeferSpendsNoAttempt(t *testing.T) {
	h := newHarness(t, status(200))
	d := first()
	if err := h.e.Defer(context.Background(), d, h.names.Tiers[0].Topic, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	recs := h.prod.records()
	if len(recs) != 1 || recs[0].d.Attempt != 1 || recs[0].d.Origin != record.OriginDeferred || recs[0].topic != h.names.Tiers[0].Topic {
		t.Fatalf("forwards %+v", recs)
	}
	if got := h.j.all(); !slices.Equal(got, []string{"produce relay.retry.5s", "schedule"}) {
		t.Fatalf("writes %v", got)
	}
}

// fakeObserver keeps the status of each answer it is told of.
type fakeObserver struct {
	mu       sync.Mutex
	statuses []int
}

func (f *fakeObserver) Observe(_ context.Context, _ catalog.Subscription, a *outcome.Answer, _ time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.statuses = append(f.statuses, a.Status)
}

// A throttled delivery rides the tier it is told to, carrying its slot,
// spends no attempt and no rung, and shows as throttled.
func TestThrottleSpendsNoAttempt(t *testing.T) {
	h := newHarness(t, status(200))
	d := first()
	d.Attempt, d.Tier, d.LastError = 3, 2, "HTTP 500"
	slot := time.Now().Add(90 * time.Second).Truncate(time.Microsecond) // as the header carries it
	hop := outcome.Throttled(time.Now(), slot, h.names.Tiers, 0)
	if err := h.e.Throttle(context.Background(), d, hop, slot, true); err != nil {
		t.Fatal(err)
	}
	recs := h.prod.records()
	if len(recs) != 1 || recs[0].topic != h.names.Tiers[1].Topic {
		t.Fatalf("forwards %+v; want one on the 1m tier", recs)
	}
	f := recs[0].d
	if f.Attempt != 3 || f.Tier != 2 || f.Origin != record.OriginThrottled || !f.Slot.Equal(slot) || f.LastError != "HTTP 500" {
		t.Fatalf("forwarded %+v", f)
	}
	if got := h.j.all(); !slices.Equal(got, []string{"produce relay.retry.1m", "throttle"}) {
		t.Fatalf("writes %v", got)
	}
	if st := h.states.get(d.ID, sub.ID); st.status != delivery.StatusThrottled {
		t.Fatalf("state %+v", st)
	}
	// Held for an open circuit, nothing was reserved: it asks again.
	if err := h.e.Throttle(context.Background(), d, hop, slot, false); err != nil {
		t.Fatal(err)
	}
	if f := h.prod.records()[1].d; !f.Slot.IsZero() {
		t.Fatalf("an unreserved hold carries slot %v", f.Slot)
	}
}

// Every answer is told to the observer (the circuit breaker); an attempt
// that was never made is not.
func TestAnswersAreObserved(t *testing.T) {
	h := newHarness(t, func(n int, _ sender.Request) sender.Response {
		if n == 1 {
			return sender.Response{Status: 503}
		}
		return sender.Response{Status: 200}
	})
	d := first()
	h.deliver(t, d)
	d.Attempt, d.Tier = 2, 1
	h.deliver(t, d)
	h.deliver(t, d) // stale: no attempt
	if !slices.Equal(h.seen.statuses, []int{503, 200}) {
		t.Fatalf("observed %v", h.seen.statuses)
	}
}
