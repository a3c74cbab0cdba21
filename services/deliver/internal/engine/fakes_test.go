package engine

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/relayhq/relay/pkg/backoff"
	"github.com/relayhq/relay/pkg/delivery"
	"github.com/relayhq/relay/pkg/record"
	"github.com/relayhq/relay/services/deliver/internal/alert"
	"github.com/relayhq/relay/services/deliver/internal/sender"
)

// The fakes below stand in for Redis, Kafka and the endpoint, so that the
// engine's promises are checked in milliseconds; the real-broker tests in
// services/deliver and e2e check the same against the real components.

// retryLoop retries at once, as gate.Gate does with its backoff.
type retryLoop struct{}

func (retryLoop) Retry(ctx context.Context, _ string, fn func() error) error {
	for {
		if err := fn(); err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if !backoff.Sleep(ctx, time.Millisecond) {
			return ctx.Err()
		}
	}
}

type pairKey struct{ evt, sub string }

type pairState struct {
	status   string
	attempts int
	lease    string
	history  []delivery.Result
	parked   string
}

// fakeStates keeps delivery state as delivery.Store does: the same
// admission (delivery.Admit), Finish never overwriting a delivered pair, a
// lease only its holder gives back. journal names each write in order, with
// the producer's, so that tests see what came first.
type fakeStates struct {
	mu      sync.Mutex
	pairs   map[pairKey]*pairState
	journal *journal
	// failFinish, while above zero, fails that many Finish calls.
	failFinish int
}

func newFakeStates(j *journal) *fakeStates {
	return &fakeStates{pairs: map[pairKey]*pairState{}, journal: j}
}

func (f *fakeStates) pair(evt, sub string) *pairState {
	k := pairKey{evt, sub}
	if f.pairs[k] == nil {
		f.pairs[k] = &pairState{}
	}
	return f.pairs[k]
}

func (f *fakeStates) Begin(_ context.Context, evt, sub string, attempt int, token string, _ time.Duration) (string, int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	p := f.pair(evt, sub)
	leased := p.lease == "" || p.lease == token
	out := delivery.Admit(p.status, p.attempts, attempt, leased)
	if out == delivery.Proceed {
		p.lease = token
	}
	return out, p.attempts, nil
}

func (f *fakeStates) Finish(_ context.Context, evt, sub, token string, r delivery.Result) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failFinish > 0 {
		f.failFinish--
		return fmt.Errorf("redis: connection refused")
	}
	p := f.pair(evt, sub)
	p.history = append(p.history, r)
	if r.Attempt.Attempt >= p.attempts && p.status != delivery.StatusDelivered {
		p.status, p.attempts = r.Status, r.Attempt.Attempt
	}
	if p.lease == token {
		p.lease = ""
	}
	f.journal.add("finish " + r.Status)
	return nil
}

func (f *fakeStates) Park(_ context.Context, evt, sub, token, reason string, _ time.Time) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	p := f.pair(evt, sub)
	if p.status != delivery.StatusDelivered {
		p.status, p.parked = delivery.StatusDead, reason
	}
	if p.lease == token {
		p.lease = ""
	}
	f.journal.add("park")
	return nil
}

func (f *fakeStates) Schedule(_ context.Context, evt, sub string, _, _ time.Time) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	p := f.pair(evt, sub)
	if p.status == "" {
		p.status = delivery.StatusPending
	}
	f.journal.add("schedule")
	return nil
}

func (f *fakeStates) Throttle(_ context.Context, evt, sub string, _ time.Time) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	p := f.pair(evt, sub)
	if p.status != delivery.StatusDelivered {
		p.status = delivery.StatusThrottled
	}
	f.journal.add("throttle")
	return nil
}

func (f *fakeStates) Wait(_ context.Context, evt, sub, _ string, attempt int) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if p := f.pair(evt, sub); p.status != delivery.StatusDelivered && p.attempts < attempt {
		p.status = delivery.StatusWaiting
	}
	f.journal.add("wait")
	return nil
}

func (f *fakeStates) Get(_ context.Context, evt, sub string) (delivery.State, bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	p := f.pair(evt, sub)
	return delivery.State{SubscriptionID: sub, Status: p.status, Attempts: p.attempts}, p.status != "", nil
}

func (f *fakeStates) Release(_ context.Context, evt, sub, token string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if p := f.pair(evt, sub); p.lease == token {
		p.lease = ""
	}
	f.journal.add("release")
	return nil
}

// take gives the lease of (evt, sub) to someone else, as a worker that
// crashed mid-attempt leaves it until it lapses.
func (f *fakeStates) take(evt, sub, token string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.pair(evt, sub).lease = token
}

func (f *fakeStates) get(evt, sub string) pairState {
	f.mu.Lock()
	defer f.mu.Unlock()
	return *f.pair(evt, sub)
}

// fakeProducer acknowledges every record (after failing the first fail
// produces), keeping what it took.
type fakeProducer struct {
	mu      sync.Mutex
	took    []produced
	fail    int
	journal *journal
}

type produced struct {
	topic string
	d     record.Delivery
}

func (p *fakeProducer) Produce(_ context.Context, r *kgo.Record, promise func(*kgo.Record, error)) {
	p.mu.Lock()
	if p.fail > 0 {
		p.fail--
		p.mu.Unlock()
		promise(r, fmt.Errorf("NOT_LEADER_FOR_PARTITION"))
		return
	}
	d, err := record.ParseDelivery(r)
	if err != nil {
		panic(err)
	}
	p.took = append(p.took, produced{r.Topic, d})
	p.mu.Unlock()
	p.journal.add("produce " + r.Topic)
	promise(r, nil)
}

func (p *fakeProducer) records() []produced {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]produced(nil), p.took...)
}

// fakeEndpoint answers each POST with what answer returns for it.
type fakeEndpoint struct {
	mu     sync.Mutex
	posts  []sender.Request
	answer func(n int, r sender.Request) sender.Response
	// block, when set, holds each POST until ctx ends (an endpoint that
	// hangs while the worker shuts down).
	block bool
}

func (e *fakeEndpoint) Send(ctx context.Context, r sender.Request) sender.Response {
	e.mu.Lock()
	e.posts = append(e.posts, r)
	n := len(e.posts)
	e.mu.Unlock()
	if e.block {
		<-ctx.Done()
		return sender.Response{Err: ctx.Err(), Latency: time.Millisecond}
	}
	resp := e.answer(n, r)
	if resp.Latency == 0 {
		resp.Latency = 3 * time.Millisecond
	}
	return resp
}

func (e *fakeEndpoint) count() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.posts)
}

func status(code int) func(int, sender.Request) sender.Response {
	return func(int, sender.Request) sender.Response { return sender.Response{Status: code} }
}

type fakeDisabler struct {
	mu       sync.Mutex
	disabled map[string]string
}

func (f *fakeDisabler) Disable(_ context.Context, id, reason string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.disabled == nil {
		f.disabled = map[string]string{}
	}
	f.disabled[id] = reason
	return nil
}

type fakeAlerts struct {
	mu   sync.Mutex
	dead []alert.Dead
}

func (f *fakeAlerts) Notify(d alert.Dead) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.dead = append(f.dead, d)
}

// journal is the order in which the fakes were written to.
type journal struct {
	mu      sync.Mutex
	entries []string
}

func (j *journal) add(s string) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.entries = append(j.entries, s)
}

func (j *journal) all() []string {
	j.mu.Lock()
	defer j.mu.Unlock()
	return append([]string(nil), j.entries...)
}
