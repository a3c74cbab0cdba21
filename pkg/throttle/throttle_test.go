package throttle

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/relayhq/relay/pkg/ids"
	"github.com/relayhq/relay/pkg/testenv"
)

var t0 = time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)

func newStore(rdb redis.UniversalClient) *Store {
	return New(rdb, Config{Failures: 3, Cooldown: 10 * time.Second, MaxCooldown: 30 * time.Second, ProbeWindow: 40 * time.Second})
}

func admit(t *testing.T, s *Store, sub string, l Limit, now time.Time) Ticket {
	t.Helper()
	tk, err := s.Admit(context.Background(), sub, l, now)
	if err != nil {
		t.Fatal(err)
	}
	return tk
}

// A limit reserves slots one interval apart after its burst, in the order
// asked, and a changed limit spreads what is reserved at its new pace.
func TestAdmitReservesSlots(t *testing.T) {
	testenv.RedisBackends(t, func(t *testing.T, rdb redis.UniversalClient) {
		s, sub := newStore(rdb), ids.New(ids.Subscription)
		fivePerSec := Limit{Interval: 200 * time.Millisecond, Burst: 2}
		var got []time.Duration
		for range 5 {
			tk := admit(t, s, sub, fivePerSec, t0)
			if tk.Verdict != Go {
				t.Fatalf("verdict %s", tk.Verdict)
			}
			got = append(got, tk.At.Sub(t0))
		}
		want := []time.Duration{0, 0, 200 * time.Millisecond, 400 * time.Millisecond, 600 * time.Millisecond}
		for i := range want {
			if got[i] != want[i] {
				t.Fatalf("slots %v, want %v (a burst of 2, then one per 200ms)", got, want)
			}
		}
		// Later, once the schedule has drained, the burst is there again.
		if tk := admit(t, s, sub, fivePerSec, t0.Add(10*time.Second)); !tk.At.Equal(t0.Add(10 * time.Second)) {
			t.Fatalf("after a quiet spell: %v", tk.At.Sub(t0))
		}

		// 100 reserved at 1/s, then the limit raised to 10/s: the next slot is
		// 10 s ahead, not 100.
		other := ids.New(ids.Subscription)
		onePerSec := Limit{Interval: time.Second, Burst: 1}
		for range 100 {
			admit(t, s, other, onePerSec, t0)
		}
		tk := admit(t, s, other, Limit{Interval: 100 * time.Millisecond, Burst: 1}, t0)
		if d := tk.At.Sub(t0); d != 10*time.Second {
			t.Fatalf("after the limit was raised the next slot is %v ahead, want 10s", d)
		}

		// No limit: nothing reserved, free now.
		free := ids.New(ids.Subscription)
		for range 3 {
			if tk := admit(t, s, free, Limit{}, t0); tk.Verdict != Go || !tk.At.Equal(t0) {
				t.Fatalf("no limit: %+v", tk)
			}
		}
	})
}

// Two replicas asking at once share one schedule: no two slots are closer
// than the interval.
func TestAdmitIsSharedAcrossClients(t *testing.T) {
	rdb := testenv.Redis(t)
	a, b := newStore(rdb), newStore(testenv.Redis(t))
	sub := ids.New(ids.Subscription)
	l := Limit{Interval: 10 * time.Millisecond, Burst: 1}
	var mu sync.Mutex
	seen := map[time.Time]bool{}
	var wg sync.WaitGroup
	for _, s := range []*Store{a, b} {
		wg.Go(func() {
			for range 100 {
				tk, err := s.Admit(context.Background(), sub, l, t0)
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				seen[tk.At] = true
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(seen) != 200 {
		t.Fatalf("%d distinct slots for 200 reservations", len(seen))
	}
	for at := range seen {
		if off := at.Sub(t0); off%(10*time.Millisecond) != 0 || off < 0 || off >= 2*time.Second {
			t.Fatalf("slot %v off the 10ms grid", off)
		}
	}
}

// A pause holds every delivery back, with or without a limit, and never
// shortens what is scheduled.
func TestPause(t *testing.T) {
	testenv.RedisBackends(t, func(t *testing.T, rdb redis.UniversalClient) {
		s, sub := newStore(rdb), ids.New(ids.Subscription)
		ctx := context.Background()
		if err := s.Pause(ctx, sub, t0.Add(30*time.Second), t0); err != nil {
			t.Fatal(err)
		}
		if tk := admit(t, s, sub, Limit{}, t0); tk.Verdict != Go || tk.At.Sub(t0) != 30*time.Second {
			t.Fatalf("paused, no limit: %+v", tk)
		}
		if tk := admit(t, s, sub, Limit{Interval: time.Second, Burst: 1}, t0); tk.At.Sub(t0) != 30*time.Second {
			t.Fatalf("paused, limited: %v", tk.At.Sub(t0))
		}
		if err := s.Pause(ctx, sub, t0.Add(time.Second), t0); err != nil {
			t.Fatal(err)
		}
		if tk := admit(t, s, sub, Limit{Interval: time.Second, Burst: 1}, t0); tk.At.Sub(t0) != 31*time.Second {
			t.Fatalf("a shorter pause shortened the schedule: %v", tk.At.Sub(t0))
		}
		st, err := s.Read(ctx, sub, t0)
		if err != nil || st.PausedUntil.Sub(t0) != 32*time.Second {
			t.Fatalf("read %+v, %v", st, err)
		}
	})
}

// The breaker opens at the threshold, lets one probe through after the
// cool-down, opens again for twice as long when it fails, and closes on a
// success.
func TestBreaker(t *testing.T) {
	testenv.RedisBackends(t, func(t *testing.T, rdb redis.UniversalClient) {
		s, sub := newStore(rdb), ids.New(ids.Subscription)
		ctx := context.Background()
		fail := func(at time.Time) Breaker {
			t.Helper()
			b, err := s.Failed(ctx, sub, at)
			if err != nil {
				t.Fatal(err)
			}
			return b
		}
		if b := fail(t0); b.Opened || !b.OpenUntil.IsZero() || b.Fails != 1 {
			t.Fatalf("first failure: %+v", b)
		}
		fail(t0)
		b := fail(t0.Add(time.Second))
		if !b.Opened || !b.OpenUntil.Equal(t0.Add(11*time.Second)) || !b.OpenedAt.Equal(t0.Add(time.Second)) {
			t.Fatalf("third failure: %+v; want open for 10s", b)
		}
		if tk := admit(t, s, sub, Limit{}, t0.Add(5*time.Second)); tk.Verdict != Open || !tk.At.Equal(b.OpenUntil) {
			t.Fatalf("while open: %+v", tk)
		}
		// A straggler failing while open changes nothing.
		if b := fail(t0.Add(6 * time.Second)); b.Opened || !b.OpenUntil.Equal(t0.Add(11*time.Second)) {
			t.Fatalf("straggler: %+v", b)
		}
		after := t0.Add(12 * time.Second)
		if tk := admit(t, s, sub, Limit{}, after); tk.Verdict != Probe {
			t.Fatalf("after the cool-down: %+v; want the probe", tk)
		}
		if tk := admit(t, s, sub, Limit{}, after); tk.Verdict != Probing || !tk.At.Equal(after.Add(40*time.Second)) {
			t.Fatalf("beside the probe: %+v; want to wait for the probe window", tk)
		}
		b = fail(after.Add(time.Second))
		if !b.Opened || !b.OpenUntil.Equal(after.Add(21*time.Second)) || !b.OpenedAt.Equal(t0.Add(time.Second)) {
			t.Fatalf("failed probe: %+v; want open for 20s more, since the first opening", b)
		}
		// Doubling, capped at MaxCooldown: 40s would be past it.
		next := b.OpenUntil
		if tk := admit(t, s, sub, Limit{}, next); tk.Verdict != Probe {
			t.Fatalf("second probe: %+v", tk)
		}
		if b = fail(next); b.OpenUntil.Sub(next) != 30*time.Second {
			t.Fatalf("cool-down after the second failed probe: %v, want the 30s cap", b.OpenUntil.Sub(next))
		}
		st, err := s.Read(ctx, sub, after)
		if err != nil || !st.Breaker.OpenedAt.Equal(t0.Add(time.Second)) || !st.Breaker.OpenUntil.Equal(b.OpenUntil) {
			t.Fatalf("read %+v, %v", st, err)
		}
		if tk := admit(t, s, sub, Limit{}, b.OpenUntil); tk.Verdict != Probe {
			t.Fatalf("last probe: %+v", tk)
		}
		closed, err := s.Succeeded(ctx, sub)
		if err != nil || !closed {
			t.Fatalf("probe success: closed %v, %v", closed, err)
		}
		if tk := admit(t, s, sub, Limit{}, b.OpenUntil); tk.Verdict != Go {
			t.Fatalf("closed: %+v", tk)
		}
		if closed, _ := s.Succeeded(ctx, sub); closed {
			t.Fatal("a success on a closed circuit reported closing it")
		}
		// Failures below the threshold are forgotten on a success.
		fail(t0)
		fail(t0)
		if _, err := s.Succeeded(ctx, sub); err != nil {
			t.Fatal(err)
		}
		if b := fail(t0); b.Opened || b.Fails != 1 {
			t.Fatalf("after a success the count starts again: %+v", b)
		}
	})
}
