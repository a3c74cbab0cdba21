package backoff

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestRetryUntilSuccess(t *testing.T) {
	var waits []int
	calls := 0
	p := Policy{Initial: time.Millisecond, Max: 4 * time.Millisecond, Failed: func(err error, failures int) bool {
		waits = append(waits, failures)
		return true
	}}
	failures, err := p.Retry(context.Background(), func(context.Context) error {
		calls++
		if calls < 4 {
			return errors.New("down")
		}
		return nil
	})
	if err != nil || failures != 3 || calls != 4 {
		t.Fatalf("Retry = %d, %v after %d calls; want 3 failures, nil, 4 calls", failures, err, calls)
	}
	if len(waits) != 3 || waits[0] != 1 || waits[2] != 3 {
		t.Fatalf("Failed heard %v, want 1, 2, 3", waits)
	}
}

func TestRetryGivesUpWhenFailedSaysSo(t *testing.T) {
	boom := errors.New("boom")
	p := Policy{Initial: time.Millisecond, Max: time.Millisecond, Failed: func(err error, failures int) bool { return failures < 2 }}
	failures, err := p.Retry(context.Background(), func(context.Context) error { return boom })
	if !errors.Is(err, boom) || failures != 2 {
		t.Fatalf("Retry = %d, %v; want 2, boom", failures, err)
	}
}

func TestRetryStopsWithTheContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	p := Policy{Initial: time.Hour, Max: time.Hour}
	go func() { time.Sleep(10 * time.Millisecond); cancel() }()
	if _, err := p.Retry(ctx, func(context.Context) error { return errors.New("down") }); !errors.Is(err, context.Canceled) {
		t.Fatalf("Retry = %v, want the context's end", err)
	}
}

func TestWaitsDoubleUpToMax(t *testing.T) {
	// Observed through the gaps between calls: each at least the wait.
	var at []time.Time
	p := Policy{Initial: 2 * time.Millisecond, Max: 8 * time.Millisecond}
	_, _ = p.Retry(context.Background(), func(context.Context) error {
		at = append(at, time.Now())
		if len(at) < 6 {
			return errors.New("down")
		}
		return nil
	})
	want := []time.Duration{2, 4, 8, 8, 8}
	for i, w := range want {
		if gap := at[i+1].Sub(at[i]); gap < w*time.Millisecond {
			t.Fatalf("wait %d was %v, want at least %v", i, gap, w*time.Millisecond)
		}
	}
}

func TestEvery(t *testing.T) {
	for _, c := range []struct {
		failures int
		want     bool
	}{{1, true}, {2, false}, {20, false}, {21, true}, {41, true}, {40, false}} {
		if got := Every(c.failures, 20); got != c.want {
			t.Errorf("Every(%d, 20) = %v, want %v", c.failures, got, c.want)
		}
	}
}
