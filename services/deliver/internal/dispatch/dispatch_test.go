package dispatch

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

var bg = context.Background()

// noop is a job that makes no request.
func noop(context.Context) Answer { return Answer{} }

// jobOf is f as a job that makes no request.
func jobOf(f func(context.Context)) Job {
	return func(ctx context.Context) Answer { f(ctx); return Answer{} }
}

func TestPerKeyCapAndFairness(t *testing.T) {
	d := New(4, 1, 100, 0, time.Second)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = d.Run(ctx); close(done) }()

	// "slow" blocks its jobs; "fast" must still run all of its own meanwhile.
	release := make(chan struct{})
	var slowRunning, slowMax atomic.Int32
	var fastDone sync.WaitGroup
	for i := 0; i < 5; i++ {
		d.Submit(bg, "slow", jobOf(func(ctx context.Context) {
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
		}))
	}
	for i := 0; i < 50; i++ {
		fastDone.Add(1)
		if !d.Submit(bg, "fast", jobOf(func(context.Context) { fastDone.Done() })) {
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
	d := New(1, 1, 2, 0, time.Second)
	// No Run yet: nothing drains, so the third job is refused.
	for i := 0; i < 2; i++ {
		if !d.Submit(bg, "k", noop) {
			t.Fatal("Submit refused below the cap")
		}
	}
	if d.Submit(bg, "k", noop) {
		t.Fatal("Submit accepted above the cap")
	}
	if !d.Submit(bg, "other", noop) {
		t.Fatal("one key's full queue refused another key")
	}
}

func TestShutdownCancelsQueuedAndWaitsForRunning(t *testing.T) {
	d := New(1, 1, 10, 0, 5*time.Second)
	ctx, cancel := context.WithCancel(context.Background())
	started := make(chan struct{})
	var finished, abandoned atomic.Int32
	d.Submit(bg, "k", jobOf(func(ctx context.Context) {
		close(started)
		time.Sleep(50 * time.Millisecond)
		if ctx.Err() == nil {
			finished.Add(1)
		}
	}))
	for i := 0; i < 3; i++ {
		d.Submit(bg, "k", jobOf(func(ctx context.Context) {
			if ctx.Err() != nil {
				abandoned.Add(1)
			}
		}))
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
	if d.Submit(bg, "k", noop) {
		t.Fatal("Submit accepted after shutdown")
	}
}

// submitAsync submits job under key from a goroutine and returns Submit's answer.
func submitAsync(ctx context.Context, d *Dispatcher, key string, job Job) <-chan bool {
	out := make(chan bool, 1)
	go func() { out <- d.Submit(ctx, key, job) }()
	return out
}

// waitersOn waits until n submitters wait on key.
func waitersOn(t *testing.T, d *Dispatcher, n int) {
	t.Helper()
	for i := 0; d.Waiting() != n; i++ {
		if i > 5000 {
			t.Fatalf("%d submitters waiting, want %d", d.Waiting(), n)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestFullQueueWaitsForRoomWhenItDrainsFast(t *testing.T) {
	d := New(1, 1, 2, time.Minute, time.Second)
	var ran atomic.Int32
	job := jobOf(func(ctx context.Context) {
		if ctx.Err() == nil {
			ran.Add(1)
		}
	})
	for i := 0; i < 2; i++ {
		if !d.Submit(bg, "k", job) {
			t.Fatal("Submit refused below the cap")
		}
	}
	// Full, and nothing of "k" has run yet: the next two wait rather than
	// being refused (deferred).
	third := submitAsync(bg, d, "k", job)
	waitersOn(t, d, 1)
	fourth := submitAsync(bg, d, "k", job)
	waitersOn(t, d, 2)

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = d.Run(ctx); close(done) }()
	if !<-third || !<-fourth {
		t.Fatal("a submitter waiting for room was refused although the queue drained")
	}
	for i := 0; ran.Load() != 4; i++ {
		if i > 5000 {
			t.Fatalf("%d jobs ran, want 4", ran.Load())
		}
		time.Sleep(time.Millisecond)
	}
	if d.Waiting() != 0 {
		t.Fatalf("%d submitters still waiting", d.Waiting())
	}
	cancel()
	<-done
}

func TestStartsWithin(t *testing.T) {
	d := New(256, 32, 1000, 5*time.Second, time.Second)
	for _, tc := range []struct {
		name    string
		queued  int
		waiting int
		took    time.Duration
		want    bool
	}{
		{"nothing finished yet", 1000, 0, 0, true},
		// A 5 s endpoint: 1,000 queued, 32 at a time (its limit), is 156 s away.
		{"slow endpoint", 1000, 0, 5 * time.Second, false},
		// Behind, not slow: 1,000 queued at 60 ms each, 32 at a time, is 1.9 s.
		{"busy process", 1000, 0, 60 * time.Millisecond, true},
		{"busy process, many waiting", 1000, 2000, 60 * time.Millisecond, false},
		{"exactly the limit", 159, 0, time.Second, true},
		{"just over the limit", 160, 0, time.Second, false},
	} {
		q := &queue{jobs: make([]Job, tc.queued), waiting: tc.waiting, took: tc.took, limit: &limit{value: 32, max: 32}}
		if got := d.startsWithin(q, 5*time.Second); got != tc.want {
			t.Errorf("%s: startsWithin = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestSlowKeyIsRefusedAtOnce(t *testing.T) {
	d := New(1, 1, 1, time.Hour, time.Second)
	d.keys["k"] = &queue{key: "k", jobs: []Job{noop}, took: 2 * time.Hour, limit: newLimit(1)}
	d.keys["k"].space = sync.NewCond(&d.mu)
	// Nothing runs: a submitter that waited would wait an hour.
	if d.Submit(bg, "k", noop) {
		t.Fatal("a full queue whose jobs take hours took another job")
	}
	if d.Waiting() != 0 {
		t.Fatal("the refused submitter is still counted as waiting")
	}
}

func TestWaitForRoomEnds(t *testing.T) {
	full := func(maxWait time.Duration) *Dispatcher {
		d := New(1, 1, 1, maxWait, time.Second)
		if !d.Submit(bg, "k", noop) {
			t.Fatal("Submit refused below the cap")
		}
		return d
	}
	t.Run("after maxWait", func(t *testing.T) {
		d := full(20 * time.Millisecond)
		if d.Submit(bg, "k", noop) {
			t.Fatal("Submit accepted a job into a queue that never drained")
		}
	})
	t.Run("when the caller's context ends", func(t *testing.T) {
		d := full(time.Hour)
		ctx, cancel := context.WithCancel(context.Background())
		res := submitAsync(ctx, d, "k", noop)
		waitersOn(t, d, 1)
		cancel()
		if <-res {
			t.Fatal("Submit accepted a job after its context ended")
		}
	})
	t.Run("when the dispatcher stops", func(t *testing.T) {
		d := New(1, 1, 1, time.Hour, time.Second)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { _ = d.Run(ctx); close(done) }()
		// One job holds the only worker, one fills the queue.
		running, release := make(chan struct{}), make(chan struct{})
		d.Submit(bg, "k", jobOf(func(context.Context) { close(running); <-release }))
		<-running
		if !d.Submit(bg, "k", noop) {
			t.Fatal("Submit refused below the cap")
		}
		res := submitAsync(bg, d, "k", noop)
		res2 := submitAsync(bg, d, "k", noop)
		waitersOn(t, d, 2)
		cancel()
		if <-res || <-res2 {
			t.Fatal("Submit accepted a job while the dispatcher stopped")
		}
		close(release)
		<-done
	})
}

func TestWaitersGoInOrder(t *testing.T) {
	d := New(1, 1, 1, time.Minute, time.Second)
	var mu sync.Mutex
	var order []string
	job := func(name string) Job {
		return jobOf(func(context.Context) { mu.Lock(); order = append(order, name); mu.Unlock() })
	}
	if !d.Submit(bg, "k", job("queued")) {
		t.Fatal("Submit refused below the cap")
	}
	var res []<-chan bool
	for i, name := range []string{"first", "second", "third"} {
		res = append(res, submitAsync(bg, d, "k", job(name)))
		waitersOn(t, d, i+1)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = d.Run(ctx); close(done) }()
	for _, r := range res {
		if !<-r {
			t.Fatal("a waiter was refused although the queue drained")
		}
	}
	for i := 0; ; i++ {
		mu.Lock()
		n := len(order)
		mu.Unlock()
		if n == 4 {
			break
		}
		if i > 5000 {
			t.Fatalf("%d jobs ran, want 4", n)
		}
		time.Sleep(time.Millisecond)
	}
	cancel()
	<-done
	if got := strings.Join(order, ","); got != "queued,first,second,third" {
		t.Fatalf("jobs ran in the order %s", got)
	}
}

// A submitter that comes while others wait for room queues behind them,
// even when it finds room that a wake-up made for the first of them.
func TestNewcomerQueuesBehindWaiters(t *testing.T) {
	d := New(1, 1, 1, time.Minute, time.Second)
	if !d.Submit(bg, "k", noop) {
		t.Fatal("Submit refused below the cap")
	}
	first := submitAsync(bg, d, "k", noop)
	waitersOn(t, d, 1)
	// Room for one, as a worker leaves it just before the waiter it
	// signals gets the lock; wake is the signal.
	q := d.keys["k"]
	makeRoom := func() {
		d.mu.Lock()
		q.jobs = q.jobs[1:]
		d.queued--
		d.mu.Unlock()
	}
	wake := func() {
		d.mu.Lock()
		q.space.Signal()
		d.mu.Unlock()
	}
	makeRoom()
	newcomer := submitAsync(bg, d, "k", noop)
	waitersOn(t, d, 2) // it waits although there is room
	wake()             // the room goes to the first waiter
	if !<-first {
		t.Fatal("the first waiter was refused")
	}
	select {
	case <-newcomer:
		t.Fatal("the newcomer got in although the queue was full again")
	default:
	}
	makeRoom()
	wake()
	if !<-newcomer {
		t.Fatal("the newcomer was refused although room came")
	}
}

// How slow a key is is its endpoint's answer time, as jobs report it, not
// the time a job takes in all: a process short of CPU makes every job
// long, and deferring its deliveries would only add work. Here a job that
// takes long reporting a 1 ms answer leaves the key fast (a full queue
// waits for room), while a job reporting a 10 s answer makes it slow (a full
// queue refuses at once, to defer), also once its queue has emptied.
func TestEndpointTimeDecidesASlowKey(t *testing.T) {
	for _, tc := range []struct {
		name     string
		answered time.Duration
		slow     bool
	}{
		{"busy process, fast endpoint", time.Millisecond, false},
		{"slow endpoint", 10 * time.Second, true},
		{"no request made", 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := New(1, 1, 1, 5*time.Second, time.Second)
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() { _ = d.Run(ctx); close(done) }()
			defer func() { cancel(); <-done }()

			finished := make(chan struct{})
			d.Submit(bg, "k", func(context.Context) Answer {
				defer close(finished)
				time.Sleep(100 * time.Millisecond) // the whole job, whatever the endpoint took
				return Answer{Took: tc.answered}
			})
			<-finished
			// Fill the queue behind a job that holds the only worker.
			hold := make(chan struct{})
			defer close(hold)
			started := make(chan struct{})
			d.Submit(bg, "k", func(context.Context) Answer { close(started); <-hold; return Answer{} })
			<-started
			if !d.Submit(bg, "k", noop) {
				t.Fatal("Submit refused below the cap")
			}
			res := submitAsync(bg, d, "k", noop)
			if tc.slow {
				if <-res {
					t.Fatal("a full queue of a slow endpoint took another job")
				}
				return
			}
			waitersOn(t, d, 1) // waiting for room rather than refused
			d.mu.Lock()
			took := d.keys["k"].took
			d.mu.Unlock()
			if took != tc.answered {
				t.Fatalf("took %v, want the endpoint's %v", took, tc.answered)
			}
		})
	}
}
