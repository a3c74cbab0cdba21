package dispatch

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestPerKeyCapAndFairness(t *testing.T) {
	d := New(4, 1, 100, time.Second)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = d.Run(ctx); close(done) }()

	// "slow" blocks its jobs; "fast" must still run all of its own meanwhile.
	release := make(chan struct{})
	var slowRunning, slowMax atomic.Int32
	var fastDone sync.WaitGroup
	for i := 0; i < 5; i++ {
		d.Submit("slow", func(ctx context.Context) {
			if ctx.Err() != nil {
				return
			}
			n := slowRunning.Add(1)
			for {
				m := slowMax.Load()
				if n <= m || slowMax.CompareAndSwap(m, n) {
					break
				}
			}
			<-release
			slowRunning.Add(-1)
		})
	}
	for i := 0; i < 50; i++ {
		fastDone.Add(1)
		if !d.Submit("fast", func(context.Context) { fastDone.Done() }) {
			t.Fatal("Submit refused below the queue cap")
		}
	}
	fastDone.Wait() // would hang if the slow key held every worker
	if m := slowMax.Load(); m != 1 {
		t.Fatalf("slow key ran %d jobs at once, cap is 1", m)
	}
	close(release)
	cancel()
	<-done
}

func TestQueueCap(t *testing.T) {
	d := New(1, 1, 2, time.Second)
	// No Run yet: nothing drains, so the third job is refused.
	for i := 0; i < 2; i++ {
		if !d.Submit("k", func(context.Context) {}) {
			t.Fatal("Submit refused below the cap")
		}
	}
	if d.Submit("k", func(context.Context) {}) {
		t.Fatal("Submit accepted above the cap")
	}
	if !d.Submit("other", func(context.Context) {}) {
		t.Fatal("one key's full queue refused another key")
	}
}

func TestShutdownCancelsQueuedAndWaitsForRunning(t *testing.T) {
	d := New(1, 1, 10, 5*time.Second)
	ctx, cancel := context.WithCancel(context.Background())
	started := make(chan struct{})
	var finished, abandoned atomic.Int32
	d.Submit("k", func(ctx context.Context) {
		close(started)
		time.Sleep(50 * time.Millisecond)
		if ctx.Err() == nil {
			finished.Add(1)
		}
	})
	for i := 0; i < 3; i++ {
		d.Submit("k", func(ctx context.Context) {
			if ctx.Err() != nil {
				abandoned.Add(1)
			}
		})
	}
	done := make(chan struct{})
	go func() { _ = d.Run(ctx); close(done) }()
	<-started
	cancel()
	<-done
	if finished.Load() != 1 {
		t.Fatal("the running job did not get to finish within the grace period")
	}
	if abandoned.Load() != 3 {
		t.Fatalf("%d queued jobs were told to abandon, want 3", abandoned.Load())
	}
	if d.Submit("k", func(context.Context) {}) {
		t.Fatal("Submit accepted after shutdown")
	}
}
