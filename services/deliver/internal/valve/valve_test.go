package valve

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/relayhq/relay/pkg/catalog"
	"github.com/relayhq/relay/pkg/record"
	"github.com/relayhq/relay/pkg/throttle"
	"github.com/relayhq/relay/services/deliver/internal/alert"
	"github.com/relayhq/relay/services/deliver/internal/outcome"
)

var now = time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)

// fakeStore answers Admit with ticket and Failed with breaker, and counts
// the calls.
type fakeStore struct {
	ticket  throttle.Ticket
	breaker throttle.Breaker
	closed  bool
	calls   map[string]int
	paused  time.Time
}

func (f *fakeStore) Admit(context.Context, string, throttle.Limit, time.Time) (throttle.Ticket, error) {
	f.calls["admit"]++
	return f.ticket, nil
}

func (f *fakeStore) Pause(_ context.Context, _ string, until, _ time.Time) error {
	f.calls["pause"]++
	f.paused = until
	return nil
}

func (f *fakeStore) Failed(context.Context, string, time.Time) (throttle.Breaker, error) {
	f.calls["failed"]++
	return f.breaker, nil
}

func (f *fakeStore) Succeeded(context.Context, string) (bool, error) {
	f.calls["succeeded"]++
	return f.closed, nil
}

type fakeDisabler struct{ reasons map[string]string }

func (f *fakeDisabler) Disable(_ context.Context, id, reason string) error {
	f.reasons[id] = reason
	return nil
}

type fakeAlerts struct{ got []alert.Disabled }

func (f *fakeAlerts) NotifyDisabled(d alert.Disabled) { f.got = append(f.got, d) }

func newValve(st *fakeStore) (*Valve, *fakeDisabler, *fakeAlerts) {
	st.calls = map[string]int{}
	dis, al := &fakeDisabler{reasons: map[string]string{}}, &fakeAlerts{}
	v := New(Config{DisableAfter: time.Hour}, Deps{Store: st, Disabler: dis, Alerts: al, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Reg: prometheus.NewRegistry()})
	return v, dis, al
}

var (
	plain   = catalog.Subscription{ID: "sub_plain", Enabled: true}
	limited = catalog.Subscription{ID: "sub_limited", Enabled: true, RateLimit: &catalog.RateLimit{Rate: 5, Period: time.Second, Burst: 1}}
)

func TestWhen(t *testing.T) {
	ahead := now.Add(time.Minute)
	for _, c := range []struct {
		name   string
		sub    catalog.Subscription
		d      record.Delivery
		ticket throttle.Ticket
		want   Slot
		admits int
	}{
		{"no limit: now, without asking Redis", plain, record.Delivery{}, throttle.Ticket{}, Slot{At: now}, 0},
		{"a limit: its reserved slot", limited, record.Delivery{}, throttle.Ticket{Verdict: throttle.Go, At: ahead}, Slot{At: ahead, Reserved: true}, 1},
		{"a limit, free now: reserved now", limited, record.Delivery{}, throttle.Ticket{Verdict: throttle.Go, At: now}, Slot{At: now, Reserved: true}, 1},
		{"back with its slot: kept", limited, record.Delivery{Slot: now.Add(time.Second), Origin: record.OriginThrottled}, throttle.Ticket{}, Slot{At: now.Add(time.Second), Reserved: true}, 0},
		{"back a little late: kept", limited, record.Delivery{Slot: now.Add(-outcome.Late), Origin: record.OriginThrottled}, throttle.Ticket{}, Slot{At: now.Add(-outcome.Late), Reserved: true}, 0},
		{"back too late: a new slot", limited, record.Delivery{Slot: now.Add(-time.Second), Origin: record.OriginThrottled}, throttle.Ticket{Verdict: throttle.Go, At: ahead}, Slot{At: ahead, Reserved: true}, 1},
		{"back from a pause, no limit: asks again", plain, record.Delivery{Origin: record.OriginThrottled}, throttle.Ticket{Verdict: throttle.Go, At: now}, Slot{At: now}, 1},
		{"paused, no limit: the pause's end, not reserved", plain, record.Delivery{Origin: record.OriginThrottled}, throttle.Ticket{Verdict: throttle.Go, At: ahead}, Slot{At: ahead}, 1},
		{"open: the cool-down's end, not reserved", limited, record.Delivery{}, throttle.Ticket{Verdict: throttle.Open, At: ahead}, Slot{At: ahead}, 1},
		{"probing: after the probe, not reserved", limited, record.Delivery{}, throttle.Ticket{Verdict: throttle.Probing, At: ahead}, Slot{At: ahead}, 1},
		{"the probe: now", limited, record.Delivery{}, throttle.Ticket{Verdict: throttle.Probe, At: now}, Slot{At: now}, 1},
	} {
		t.Run(c.name, func(t *testing.T) {
			st := &fakeStore{ticket: c.ticket}
			v, _, _ := newValve(st)
			got, err := v.When(context.Background(), c.d, c.sub, now)
			if err != nil {
				t.Fatal(err)
			}
			if !got.At.Equal(c.want.At) || got.Reserved != c.want.Reserved || st.calls["admit"] != c.admits {
				t.Fatalf("When = %+v after %d admits; want %+v after %d", got, st.calls["admit"], c.want, c.admits)
			}
		})
	}
}

// Once a replica has seen a subscription open or paused, its deliveries ask
// Redis even without a limit, until a success.
func TestWatchedUntilASuccess(t *testing.T) {
	st := &fakeStore{ticket: throttle.Ticket{Verdict: throttle.Go, At: now}, breaker: throttle.Breaker{Fails: 10, Opened: true, OpenUntil: now.Add(30 * time.Second), OpenedAt: now}}
	v, _, _ := newValve(st)
	ctx := context.Background()
	v.Observe(ctx, plain, &outcome.Answer{Status: 503}, now)
	if got := testutil.ToFloat64(v.transitions.WithLabelValues("open")); got != 1 {
		t.Fatalf("openings %v", got)
	}
	if _, _ = v.When(ctx, record.Delivery{}, plain, now); st.calls["admit"] != 1 {
		t.Fatal("a delivery of a subscription seen open did not ask Redis")
	}
	st.closed = true
	v.Observe(ctx, plain, &outcome.Answer{Status: 200}, now.Add(time.Minute))
	if got := testutil.ToFloat64(v.transitions.WithLabelValues("closed")); got != 1 || st.calls["succeeded"] != 1 {
		t.Fatalf("closings %v, successes written %d", got, st.calls["succeeded"])
	}
	if _, _ = v.When(ctx, record.Delivery{}, plain, now.Add(time.Minute)); st.calls["admit"] != 1 {
		t.Fatal("a closed subscription without a limit still asks Redis")
	}
}

// Successes of a healthy subscription are written once per ResetEvery, not
// once per delivery; a failure makes the next success write at once.
func TestSuccessesAreWrittenSparingly(t *testing.T) {
	st := &fakeStore{}
	v, _, _ := newValve(st)
	ctx := context.Background()
	for i := range 100 {
		v.Observe(ctx, plain, &outcome.Answer{Status: 200}, now.Add(time.Duration(i)*10*time.Millisecond))
	}
	if st.calls["succeeded"] != 1 {
		t.Fatalf("%d successes written in a second", st.calls["succeeded"])
	}
	v.Observe(ctx, plain, &outcome.Answer{Status: 500}, now.Add(time.Second))
	v.Observe(ctx, plain, &outcome.Answer{Status: 200}, now.Add(time.Second))
	if st.calls["failed"] != 1 || st.calls["succeeded"] != 2 {
		t.Fatalf("after a failure: %v", st.calls)
	}
	v.Observe(ctx, plain, &outcome.Answer{Status: 404}, now.Add(time.Second))
	v.Observe(ctx, plain, &outcome.Answer{Status: 429, Header: http.Header{"Retry-After": {"30"}}}, now.Add(time.Second))
	if st.calls["failed"] != 1 || st.calls["pause"] != 1 || !st.paused.Equal(now.Add(31*time.Second)) {
		t.Fatalf("a 404 and a 429: %v, paused until %v", st.calls, st.paused)
	}
}

// A circuit open past DisableAfter disables its subscription and alerts.
func TestLongOpenCircuitDisables(t *testing.T) {
	st := &fakeStore{breaker: throttle.Breaker{Fails: 40, Opened: true, OpenUntil: now.Add(10 * time.Minute), OpenedAt: now.Add(-59 * time.Minute)}}
	v, dis, al := newValve(st)
	ctx := context.Background()
	v.Observe(ctx, plain, &outcome.Answer{Status: 503}, now)
	if len(dis.reasons) != 0 {
		t.Fatal("disabled before DisableAfter")
	}
	st.breaker.OpenedAt = now.Add(-time.Hour)
	v.Observe(ctx, plain, &outcome.Answer{Status: 503}, now)
	if r := dis.reasons[plain.ID]; r == "" || len(al.got) != 1 || al.got[0].Reason != "circuit_open" || !al.got[0].OpenSince.Equal(now.Add(-time.Hour)) {
		t.Fatalf("disabled %v, alerts %+v", dis.reasons, al.got)
	}
	if got := testutil.ToFloat64(v.disabled); got != 1 {
		t.Fatalf("auto-disabled %v", got)
	}
}
