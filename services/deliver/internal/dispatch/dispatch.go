// Package dispatch runs delivery jobs with bounded concurrency, fairly across
// subscriptions: each subscription has its own queue and may run at most
// perKey jobs at once, and workers take subscriptions round-robin. A slow or
// failing endpoint therefore occupies at most perKey workers, and never holds
// back another subscription's deliveries.
//
// A full queue tells one of two stories. Either the subscription is slow (its
// endpoint takes seconds), and a new job would wait longer in memory than a
// deferral to the first retry tier takes: Submit refuses it at once, and the
// caller defers it. Or the whole process is behind (a burst above what its
// cores can deliver), and the queue drains fast: Submit waits for room, which
// holds the caller's record and so slows fetching. Deferring in that case
// would only add work (a produce, a script, a second fetch) to a process that
// is short of it, and deliveries would come out a tier late. The two are told
// apart by how long the endpoint itself takes to answer, as each job reports
// it, not by how long a job takes in all: a job of a process short of CPU
// also waits on Redis, Kafka and the scheduler, none of which a deferral
// would spare.
package dispatch

import (
	"context"
	"sync"
	"time"
)

// Job is one delivery. It returns what its endpoint answered. It is called
// with a cancelled context when the dispatcher shuts down before running
// it; it must then return at once without doing its work (its record stays
// uncommitted and comes back).
type Job func(ctx context.Context) Answer

// learnt is what the dispatcher knows of an idle key's endpoint.
type learnt struct {
	took  time.Duration
	limit *limit
}

type queue struct {
	key     string
	jobs    []Job
	running int
	ready   bool
	// waiting counts the submitters waiting for room, woken one per job
	// that leaves jobs.
	waiting int
	space   *sync.Cond
	// took is how long the key's endpoint took to answer recent jobs (a
	// moving average; zero until one has answered).
	took time.Duration
	// limit is how many of its jobs may run at once.
	limit *limit
}

// maxAnswers bounds the answer times kept of idle keys; beyond it they are
// forgotten, and each key's next job gets the benefit of the doubt again.
const maxAnswers = 100000

// Dispatcher is safe for concurrent use.
type Dispatcher struct {
	workers  int
	perKey   int
	queueCap int
	maxWait  time.Duration
	grace    time.Duration

	mu   sync.Mutex
	cond *sync.Cond
	keys map[string]*queue
	// answers keeps what was learnt of keys whose queue emptied (answer
	// time, concurrency limit), so that a slow endpoint's next burst is
	// known slow at once, and a fast one's starts where it left off.
	answers map[string]learnt
	ready   []*queue
	closed  bool
	queued  int
}

// New returns a dispatcher with workers concurrent jobs overall, at most
// perKey per key (each key's own limit adapts below it to its endpoint's
// answers), at most queueCap queued jobs per key, maxWait as the
// longest a submitter waits for room in a full queue (what deferring the job
// instead would cost it: the first retry tier's delay), and grace for running
// jobs to finish at shutdown before their context is cancelled.
func New(workers, perKey, queueCap int, maxWait, grace time.Duration) *Dispatcher {
	d := &Dispatcher{workers: workers, perKey: perKey, queueCap: queueCap, maxWait: maxWait, grace: grace,
		keys: map[string]*queue{}, answers: map[string]learnt{}}
	d.cond = sync.NewCond(&d.mu)
	return d
}

// Submit queues job under key. When the key's queue is full, it waits for
// room if the job would likely start within maxWait that way, and at most
// maxWait. It returns false, without queueing, when it did not wait, when
// the wait ran out, when ctx ended, or when the dispatcher is stopped: the
// caller then defers the delivery (or, with ctx ended, leaves it unsettled).
func (d *Dispatcher) Submit(ctx context.Context, key string, job Job) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return false
	}
	q := d.keys[key]
	if q == nil {
		known := d.answers[key]
		q = &queue{key: key, space: sync.NewCond(&d.mu), took: known.took, limit: known.limit}
		if q.limit == nil {
			q.limit = newLimit(d.perKey)
		}
		d.keys[key] = q
	}
	if (len(q.jobs) >= d.queueCap || q.waiting > 0) && !d.waitForRoom(ctx, q) {
		return false
	}
	q.jobs = append(q.jobs, job)
	d.queued++
	d.makeReady(q)
	return true
}

// startsWithin estimates whether one more job of q would start within
// limit: the jobs queued and waiting ahead of it, as many at a time as q's
// limit allows, at the pace of q's endpoint. A key whose endpoint has not
// answered yet gets the benefit of the doubt (the wait is bounded anyway).
func (d *Dispatcher) startsWithin(q *queue, limit time.Duration) bool {
	ahead := len(q.jobs) + q.waiting + 1
	return time.Duration(ahead)*q.took/time.Duration(max(q.limit.allowed(), 1)) <= limit
}

// waitForRoom waits, with d.mu held, until q has room for a job. It gives
// up at once when the job would likely not start within maxWait, and
// otherwise when maxWait has passed, ctx ends or the dispatcher stops.
// Waiters are woken in the order they came, one per job that leaves the
// queue; one that comes while others wait queues behind them, even when the
// room a wake-up made is there for a moment.
func (d *Dispatcher) waitForRoom(ctx context.Context, q *queue) bool {
	if d.maxWait <= 0 || ctx.Err() != nil || !d.startsWithin(q, d.maxWait) {
		return false
	}
	wctx, cancel := context.WithTimeout(ctx, d.maxWait)
	defer cancel()
	// Wake the waiters so that this one sees its deadline; stop does not
	// wait for the wake-up, which would need d.mu, held here.
	stop := context.AfterFunc(wctx, func() {
		d.mu.Lock()
		q.space.Broadcast()
		d.mu.Unlock()
	})
	defer stop()
	behind := q.waiting > 0
	q.waiting++
	defer func() { q.waiting-- }()
	for behind || len(q.jobs) >= d.queueCap {
		if d.closed || wctx.Err() != nil {
			return false
		}
		q.space.Wait()
		behind = false
	}
	return !d.closed
}

// makeReady puts q on the ready list when it has work and spare concurrency.
func (d *Dispatcher) makeReady(q *queue) {
	if !q.ready && len(q.jobs) > 0 && q.running < q.limit.allowed() {
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

// Waiting is the number of submitters waiting for room in a full queue.
func (d *Dispatcher) Waiting() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	n := 0
	for _, q := range d.keys {
		n += q.waiting
	}
	return n
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
	for _, q := range d.keys {
		q.space.Broadcast()
	}
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
		if q.waiting > 0 {
			q.space.Signal()
		}
		d.makeReady(q)
		d.mu.Unlock()

		a := job(ctx)

		d.mu.Lock()
		q.limit.observe(a, q.running, time.Now())
		q.running--
		switch {
		case a.Took <= 0:
		case q.took == 0:
			q.took = a.Took
		default:
			q.took += (a.Took - q.took) / 8
		}
		d.makeReady(q)
		if len(q.jobs) == 0 && q.running == 0 && q.waiting == 0 && !q.ready && d.keys[q.key] == q {
			delete(d.keys, q.key)
			if q.took > 0 {
				if len(d.answers) >= maxAnswers {
					clear(d.answers)
				}
				d.answers[q.key] = learnt{took: q.took, limit: q.limit}
			}
		}
		d.mu.Unlock()
	}
}
