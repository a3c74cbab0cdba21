// Package dispatch runs delivery jobs with bounded concurrency, fairly across
// subscriptions: each subscription has its own queue and may run at most
// perKey jobs at once, and workers take subscriptions round-robin. A slow or
// failing endpoint therefore occupies at most perKey workers, and never holds
// back another subscription's deliveries.
package dispatch

import (
	"context"
	"sync"
	"time"
)

// Job is one delivery. It is called with a cancelled context when the
// dispatcher shuts down before running it; it must then return at once
// without doing its work (its record stays uncommitted and comes back).
type Job func(ctx context.Context)

type queue struct {
	key     string
	jobs    []Job
	running int
	ready   bool
}

// Dispatcher is safe for concurrent use.
type Dispatcher struct {
	workers  int
	perKey   int
	queueCap int
	grace    time.Duration

	mu     sync.Mutex
	cond   *sync.Cond
	keys   map[string]*queue
	ready  []*queue
	closed bool
	queued int
}

// New returns a dispatcher with workers concurrent jobs overall, at most
// perKey per key, at most queueCap queued jobs per key, and grace for
// running jobs to finish at shutdown before their context is cancelled.
func New(workers, perKey, queueCap int, grace time.Duration) *Dispatcher {
	d := &Dispatcher{workers: workers, perKey: perKey, queueCap: queueCap, grace: grace, keys: map[string]*queue{}}
	d.cond = sync.NewCond(&d.mu)
	return d
}

// Submit queues job under key. It returns false, without queueing, when the
// key's queue is full or the dispatcher is stopped: the caller then defers
// the delivery elsewhere instead of waiting.
func (d *Dispatcher) Submit(key string, job Job) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return false
	}
	q := d.keys[key]
	if q == nil {
		q = &queue{key: key}
		d.keys[key] = q
	}
	if len(q.jobs) >= d.queueCap {
		return false
	}
	q.jobs = append(q.jobs, job)
	d.queued++
	d.makeReady(q)
	return true
}

// makeReady puts q on the ready list when it has work and spare concurrency.
func (d *Dispatcher) makeReady(q *queue) {
	if !q.ready && len(q.jobs) > 0 && q.running < d.perKey {
		q.ready = true
		d.ready = append(d.ready, q)
		d.cond.Signal()
	}
}

// Name implements lifecycle.Worker.
func (d *Dispatcher) Name() string { return "dispatcher" }

// Queued is the number of jobs waiting to start.
func (d *Dispatcher) Queued() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.queued
}

// Run runs the workers until ctx is cancelled. Running jobs then get the
// grace period to finish; queued jobs are called with a cancelled context.
func (d *Dispatcher) Run(ctx context.Context) error {
	jobCtx, cancelJobs := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelJobs()
	var wg sync.WaitGroup
	for i := 0; i < d.workers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d.work(jobCtx)
		}()
	}
	<-ctx.Done()
	d.mu.Lock()
	d.closed = true
	var dropped []Job
	for _, q := range d.keys {
		dropped = append(dropped, q.jobs...)
		q.jobs = nil
	}
	d.ready, d.queued = nil, 0
	d.cond.Broadcast()
	d.mu.Unlock()

	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	for _, j := range dropped {
		j(cancelled)
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(d.grace):
		cancelJobs()
		<-done
	}
	return nil
}

func (d *Dispatcher) work(ctx context.Context) {
	for {
		d.mu.Lock()
		for len(d.ready) == 0 && !d.closed {
			d.cond.Wait()
		}
		if d.closed {
			d.mu.Unlock()
			return
		}
		q := d.ready[0]
		d.ready[0] = nil
		d.ready = d.ready[1:]
		q.ready = false
		job := q.jobs[0]
		q.jobs[0] = nil
		q.jobs = q.jobs[1:]
		d.queued--
		q.running++
		d.makeReady(q)
		d.mu.Unlock()

		job(ctx)

		d.mu.Lock()
		q.running--
		d.makeReady(q)
		if len(q.jobs) == 0 && q.running == 0 && !q.ready && d.keys[q.key] == q {
			delete(d.keys, q.key)
		}
		d.mu.Unlock()
	}
}
