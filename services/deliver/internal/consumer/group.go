// Package consumer runs deliver's two consumer groups: relay-deliver on
// relay.events (first attempts, fanned out to every matching subscription)
// and relay-deliver-retry on the delay tiers and relay.deliveries (retries,
// replays, redrives, each waiting for its not-before time).
//
// Records of a partition complete out of order; the offset committed is
// always just past the last record of an unbroken run of finished ones
// (package offsets). On revoke, a partition gets RELAY_REVOKE_WAIT to finish
// its in-flight work, then that work is cancelled and what is finished is
// committed.
package consumer

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/plugin/kotel"
	"go.opentelemetry.io/otel/trace"

	"github.com/relayhq/relay/services/deliver/internal/dispatch"
	"github.com/relayhq/relay/services/deliver/internal/engine"
	"github.com/relayhq/relay/services/deliver/internal/gate"
	"github.com/relayhq/relay/services/deliver/internal/offsets"
	"github.com/relayhq/relay/services/deliver/internal/subs"
	"github.com/relayhq/relay/services/deliver/internal/valve"
)

// Deps are what both consumers share.
type Deps struct {
	Engine     *engine.Engine
	Subs       *subs.Subs
	Dispatcher *dispatch.Dispatcher
	Gate       *gate.Gate
	// Filters decides which subscriptions an event concerns.
	Filters *Filters
	// Valve says when each delivery may be attempted.
	Valve *valve.Valve
	// Waiting is where throttled deliveries wait out their last stretch;
	// nil: they never wait in place.
	Waiting *WaitRoom
	// Bytes bounds the payload bytes of the records both consumers work on.
	Bytes  *Budget
	Logger *slog.Logger
}

// Options tune a consumer.
type Options struct {
	// MaxInFlight bounds the records being worked on at once; polling waits
	// when it is reached.
	MaxInFlight int
	// RevokeWait bounds how long a revoked partition's in-flight work may
	// run before it is cancelled.
	RevokeWait time.Duration
}

type partState struct {
	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	revoked bool
	paused  bool
}

// group is the partition bookkeeping both consumers share.
type group struct {
	name     string
	base     context.Context
	cl       *kgo.Client
	tracker  *offsets.Tracker
	tracer   *kotel.Tracer
	log      *slog.Logger
	opts     Options
	inflight chan struct{}
	bytes    *Budget

	mu    sync.Mutex
	parts map[offsets.Partition]*partState

	closeOnce sync.Once
}

// close closes the client once: by the consumer's Run as it returns, or by
// the service when it is never run.
func (g *group) close() { g.closeOnce.Do(g.cl.Close) }

func newGroup(name string, tracer *kotel.Tracer, log *slog.Logger, bytes *Budget, o Options) *group {
	return &group{
		name: name, tracker: offsets.New(), tracer: tracer, log: log.With("group", name), opts: o,
		inflight: make(chan struct{}, o.MaxInFlight), parts: map[offsets.Partition]*partState{},
		base: context.Background(), bytes: bytes,
	}
}

// work is a record being worked on: its partition's state, its place in
// the partition's offsets, and the bytes it is charged.
type work struct {
	st     *partState
	tk     offsets.Ticket
	weight int64
}

// callbacks are the group options wiring partition changes to the bookkeeping.
func (g *group) callbacks() []kgo.Opt {
	return []kgo.Opt{
		// Commit only what the tracker marked, every second and on revoke.
		kgo.AutoCommitMarks(),
		kgo.AutoCommitInterval(time.Second),
		kgo.OnPartitionsAssigned(g.assigned),
		kgo.OnPartitionsRevoked(g.revoked),
		kgo.OnPartitionsLost(g.lost),
	}
}

func (g *group) assigned(_ context.Context, cl *kgo.Client, assigned map[string][]int32) {
	g.mu.Lock()
	for topic, ps := range assigned {
		for _, p := range ps {
			st := &partState{}
			st.ctx, st.cancel = context.WithCancel(g.base)
			g.parts[offsets.Partition{Topic: topic, Partition: p}] = st
		}
	}
	g.mu.Unlock()
	// A partition paused in an earlier assignment would stay paused forever.
	cl.ResumeFetchPartitions(assigned)
	g.log.Info("partitions assigned", "partitions", assigned)
}

func (g *group) revoked(ctx context.Context, cl *kgo.Client, revoked map[string][]int32) {
	states := g.take(revoked)
	deadline := time.After(g.opts.RevokeWait)
	for _, st := range states {
		done := make(chan struct{})
		go func() { st.wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-deadline:
			st.cancel()
			<-done
		}
		st.cancel()
	}
	if err := cl.CommitMarkedOffsets(ctx); err != nil {
		g.log.Warn("commit on revoke failed", "error", err)
	}
	g.forget(revoked)
	if len(revoked) > 0 {
		g.log.Info("partitions revoked", "partitions", revoked)
	}
}

func (g *group) lost(_ context.Context, _ *kgo.Client, lost map[string][]int32) {
	for _, st := range g.take(lost) {
		st.cancel()
		st.wg.Wait()
	}
	g.forget(lost)
	g.log.Warn("partitions lost", "partitions", lost)
}

// take flags partitions revoked so no new work starts on them, and returns
// their states.
func (g *group) take(ps map[string][]int32) []*partState {
	g.mu.Lock()
	defer g.mu.Unlock()
	var out []*partState
	for topic, parts := range ps {
		for _, p := range parts {
			if st := g.parts[offsets.Partition{Topic: topic, Partition: p}]; st != nil {
				st.revoked = true
				out = append(out, st)
			}
		}
	}
	return out
}

func (g *group) forget(ps map[string][]int32) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for topic, parts := range ps {
		for _, p := range parts {
			tp := offsets.Partition{Topic: topic, Partition: p}
			delete(g.parts, tp)
			g.tracker.Forget(tp)
		}
	}
}

// assignment is the state of every partition assigned now, taken right
// after a poll: a record belongs to the assignment it was fetched under, and
// start refuses it once that assignment has ended, even when the partition
// has been assigned to this member again since (the new assignment fetches
// it again from the committed offset).
func (g *group) assignment() map[offsets.Partition]*partState {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := make(map[offsets.Partition]*partState, len(g.parts))
	for tp, st := range g.parts {
		if !st.revoked {
			out[tp] = st
		}
	}
	return out
}

// state returns the live state of a partition, or nil when it is not (or no
// longer) assigned.
func (g *group) state(tp offsets.Partition) *partState {
	g.mu.Lock()
	defer g.mu.Unlock()
	st := g.parts[tp]
	if st == nil || st.revoked {
		return nil
	}
	return st
}

// start begins tracking rec, fetched while its partition's state was
// fetchedIn; it blocks while MaxInFlight records are being worked on, or
// while the records being worked on hold the byte budget. ok is false when
// the record must not be worked on: its partition was revoked, or revoked
// and assigned again, since it was fetched (it is fetched again from the
// committed offset), or it was seen before.
func (g *group) start(ctx context.Context, rec *kgo.Record, fetchedIn *partState) (work, bool) {
	select {
	case g.inflight <- struct{}{}:
	case <-ctx.Done():
		return work{}, false
	}
	w := g.bytes.weight(rec)
	if err := g.bytes.acquire(ctx, w); err != nil {
		<-g.inflight
		return work{}, false
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	st := g.parts[offsets.Partition{Topic: rec.Topic, Partition: rec.Partition}]
	if st == nil || st.revoked || st != fetchedIn {
		g.bytes.release(w)
		<-g.inflight
		return work{}, false
	}
	tk, ok := g.tracker.Add(rec)
	if !ok {
		g.bytes.release(w)
		<-g.inflight
		return work{}, false
	}
	st.wg.Add(1)
	return work{st: st, tk: tk, weight: w}, true
}

// finish ends the work on a record; done means it is settled and its offset
// may be committed once every record before it is too.
func (g *group) finish(wk work, done bool) {
	if done {
		if eo, moved := g.tracker.Done(wk.tk); moved {
			g.cl.MarkCommitOffsets(map[string]map[int32]kgo.EpochOffset{wk.tk.Topic: {wk.tk.Partition.Partition: eo}})
		}
	}
	wk.st.wg.Done()
	g.bytes.release(wk.weight)
	<-g.inflight
}

// processContext returns the context a record is worked on in: cancelled
// with its partition, carrying the record's process span.
func (g *group) processContext(st *partState, rec *kgo.Record) (context.Context, trace.Span) {
	if g.tracer == nil {
		return st.ctx, trace.SpanFromContext(st.ctx)
	}
	_, span := g.tracer.WithProcessSpan(rec)
	return trace.ContextWithSpan(st.ctx, span), span
}

// run submits a delivery to the dispatcher and waits for it. When the
// dispatcher will not take it (the subscription's backlog is full and slow
// to drain) it calls deferFn instead. deliver returns what the endpoint
// answered: how long it took, which is how the dispatcher tells a slow
// endpoint from a busy process, and whether it was overloaded, which with
// the time adapts the subscription's concurrency. run reports whether the
// delivery is settled.
func run(ctx context.Context, d *dispatch.Dispatcher, key string, deliver func(context.Context) (dispatch.Answer, error), deferFn func() error) bool {
	res := make(chan bool, 1)
	job := func(jctx context.Context) dispatch.Answer {
		if jctx.Err() != nil || ctx.Err() != nil {
			res <- false
			return dispatch.Answer{}
		}
		// Stop when either the record's partition or the dispatcher stops.
		wctx, cancel := context.WithCancel(ctx)
		stop := context.AfterFunc(jctx, cancel)
		a, err := deliver(wctx)
		stop()
		cancel()
		res <- err == nil
		return a
	}
	if !d.Submit(ctx, key, job) {
		if ctx.Err() != nil {
			return false // partition revoked or shutting down: the record comes back
		}
		return deferFn() == nil
	}
	return <-res
}
