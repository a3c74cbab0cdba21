package delivery

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/relayhq/relay/pkg/ids"
	"github.com/relayhq/relay/pkg/redisconn"
	"github.com/relayhq/relay/pkg/testenv"
)

func TestAttemptLifecycle(t *testing.T) {
	testenv.RedisBackends(t, func(t *testing.T, rdb redis.UniversalClient) {
		ctx := context.Background()
		s := New(rdb, time.Hour)
		evt, sub := ids.New(ids.Event), ids.New(ids.Subscription)
		now := time.UnixMilli(time.Now().UnixMilli())

		begin := func(attempt int, token string) string {
			t.Helper()
			out, _, err := s.Begin(ctx, evt, sub, attempt, token, time.Minute)
			if err != nil {
				t.Fatal(err)
			}
			return out
		}
		finish := func(attempt int, token, status string) {
			t.Helper()
			err := s.Finish(ctx, evt, sub, token, Result{Status: status, Attempt: Attempt{Attempt: attempt, At: now, StatusCode: 500, Error: "HTTP 500", Response: strings.Repeat("x", 2000)}, NextAttemptAt: now.Add(time.Second)})
			if err != nil {
				t.Fatal(err)
			}
		}

		if got := begin(1, "w1"); got != Proceed {
			t.Fatalf("first begin = %s", got)
		}
		if got := begin(1, "w2"); got != Busy {
			t.Fatalf("a second worker on the same attempt = %s, want busy", got)
		}
		finish(1, "w1", StatusRetrying)
		if got := begin(1, "w2"); got != Stale {
			t.Fatalf("a redelivered record of a finished attempt = %s, want stale", got)
		}
		st, ok, err := s.Get(ctx, evt, sub)
		if err != nil || !ok || st.Status != StatusRetrying || st.Attempts != 1 || st.LastStatusCode != 500 || !st.NextAttemptAt.Equal(now.Add(time.Second)) {
			t.Fatalf("state after attempt 1 = %+v %v %v", st, ok, err)
		}

		// A crash mid-attempt: the lease expires and the same attempt is made again.
		if got := begin(2, "w3"); got != Proceed {
			t.Fatalf("attempt 2 = %s", got)
		}
		if err := rdb.Del(ctx, leaseKey(evt, sub)).Err(); err != nil {
			t.Fatal(err)
		}
		if got := begin(2, "w4"); got != Proceed {
			t.Fatalf("attempt 2 after its worker died = %s, want ok", got)
		}
		finish(2, "w4", StatusDelivered)
		// The dead worker's late finish must not undo delivered.
		finish(2, "w3", StatusRetrying)
		for attempt := 1; attempt <= 4; attempt++ {
			if got := begin(attempt, "w5"); got != AlreadyDelivered {
				t.Fatalf("begin(%d) after delivery = %s", attempt, got)
			}
		}

		all, err := s.ForEvent(ctx, evt)
		if err != nil {
			t.Fatal(err)
		}
		st = all[sub]
		if st.Status != StatusDelivered || st.DeliveredAt.IsZero() || len(st.History) != 3 || st.History[0].Attempt != 2 {
			t.Fatalf("ForEvent = %+v", st)
		}
		// Of a delivered attempt the start of the response is kept, of
		// earlier ones a little more.
		if len(st.LastResponse) != 256 || len(st.History[0].Response) != 256 || len(st.History[1].Response) != 512 {
			t.Fatalf("response kept: last %d bytes, history %d and %d bytes", len(st.LastResponse), len(st.History[0].Response), len(st.History[1].Response))
		}
	})
}

// Begin takes the lease before it reads the state: a record of a settled
// pair must neither keep a lease it took for nothing nor wait for a lease
// another worker holds.
func TestBeginOnASettledPair(t *testing.T) {
	testenv.RedisBackends(t, func(t *testing.T, rdb redis.UniversalClient) {
		ctx := context.Background()
		s := New(rdb, time.Hour)
		evt, sub := ids.New(ids.Event), ids.New(ids.Subscription)
		leased := func() bool {
			t.Helper()
			n, err := rdb.Exists(ctx, leaseKey(evt, sub)).Result()
			if err != nil {
				t.Fatal(err)
			}
			return n == 1
		}
		if out, _, err := s.Begin(ctx, evt, sub, 1, "w1", time.Minute); err != nil || out != Proceed {
			t.Fatalf("begin = %s, %v", out, err)
		}
		if st, ok, _ := s.Get(ctx, evt, sub); ok || st.Status != StatusPending {
			t.Fatalf("a first attempt in flight has state %+v (recorded %v), want pending and nothing written", st, ok)
		}
		if err := s.Finish(ctx, evt, sub, "w1", Result{Status: StatusRetrying, Attempt: Attempt{Attempt: 1, At: time.Now(), StatusCode: 503}}); err != nil {
			t.Fatal(err)
		}
		if out, n, err := s.Begin(ctx, evt, sub, 1, "w2", time.Minute); err != nil || out != Stale || n != 1 || leased() {
			t.Fatalf("begin of a finished attempt = %s, %d, %v; lease left: %v", out, n, err, leased())
		}
		if out, _, err := s.Begin(ctx, evt, sub, 2, "w3", time.Minute); err != nil || out != Proceed {
			t.Fatalf("begin of attempt 2 = %s, %v", out, err)
		}
		if out, _, err := s.Begin(ctx, evt, sub, 2, "w4", time.Minute); err != nil || out != Busy {
			t.Fatalf("a second worker on attempt 2 = %s, %v; want busy", out, err)
		}
		// The first worker asking again (its answer was lost) holds its lease.
		if out, _, err := s.Begin(ctx, evt, sub, 2, "w3", time.Minute); err != nil || out != Proceed {
			t.Fatalf("begin of attempt 2 again by its worker = %s, %v; want ok", out, err)
		}
		if err := s.Finish(ctx, evt, sub, "w3", Result{Status: StatusDelivered, Attempt: Attempt{Attempt: 2, At: time.Now(), StatusCode: 200}}); err != nil {
			t.Fatal(err)
		}
		if out, _, err := s.Begin(ctx, evt, sub, 3, "w5", time.Minute); err != nil || out != AlreadyDelivered || leased() {
			t.Fatalf("begin after delivery = %s, %v; lease left: %v", out, err, leased())
		}
		// Someone else's lease (a forced resend's worker, say) does not make
		// a delivered pair's record wait: it is dropped at once.
		if err := rdb.Set(ctx, leaseKey(evt, sub), "other", time.Minute).Err(); err != nil {
			t.Fatal(err)
		}
		if out, _, err := s.Begin(ctx, evt, sub, 3, "w6", time.Minute); err != nil || out != AlreadyDelivered {
			t.Fatalf("begin of a delivered pair under another lease = %s, %v", out, err)
		}
		if v, _ := rdb.Get(ctx, leaseKey(evt, sub)).Result(); v != "other" {
			t.Fatalf("the other worker's lease became %q", v)
		}
		all, err := s.ForEvent(ctx, evt)
		if err != nil || all[sub].Status != StatusDelivered || len(all[sub].History) != 2 {
			t.Fatalf("ForEvent after Finish = %+v, %v", all, err)
		}
	})
}

func TestHistoryIsCapped(t *testing.T) {
	testenv.RedisBackends(t, func(t *testing.T, rdb redis.UniversalClient) {
		ctx := context.Background()
		s := New(rdb, time.Hour)
		evt, sub := ids.New(ids.Event), ids.New(ids.Subscription)
		for i := 1; i <= HistoryLimit+5; i++ {
			tok := fmt.Sprint("w", i)
			if out, _, err := s.Begin(ctx, evt, sub, i, tok, time.Minute); err != nil || out != Proceed {
				t.Fatalf("begin %d = %s, %v", i, out, err)
			}
			if err := s.Finish(ctx, evt, sub, tok, Result{Status: StatusRetrying, Attempt: Attempt{Attempt: i, At: time.Now()}}); err != nil {
				t.Fatal(err)
			}
		}
		all, err := s.ForEvent(ctx, evt)
		if err != nil {
			t.Fatal(err)
		}
		if h := all[sub].History; len(h) != HistoryLimit || h[0].Attempt != HistoryLimit+5 || h[HistoryLimit-1].Attempt != 6 {
			t.Fatalf("history has %d entries, newest %d", len(h), h[0].Attempt)
		}
		// ForEvent reads only the first HistoryLimit entries: the list itself must be trimmed.
		if n, err := rdb.LLen(ctx, histKey(evt, sub)).Result(); err != nil || n != HistoryLimit {
			t.Fatalf("history list holds %d entries (%v), want %d", n, err, HistoryLimit)
		}
	})
}

func TestScheduleNeverTouchesDelivered(t *testing.T) {
	rdb, _ := testenv.MiniRedis(t)
	ctx := context.Background()
	s := New(rdb, time.Hour)
	evt, sub := ids.New(ids.Event), ids.New(ids.Subscription)
	at := time.UnixMilli(time.Now().Add(time.Minute).UnixMilli())
	if err := s.Schedule(ctx, evt, sub, at, time.Now()); err != nil {
		t.Fatal(err)
	}
	st, ok, _ := s.Get(ctx, evt, sub)
	if !ok || st.Status != StatusPending || !st.NextAttemptAt.Equal(at) {
		t.Fatalf("scheduled state = %+v", st)
	}
	_, _, _ = s.Begin(ctx, evt, sub, 1, "w", time.Minute)
	_ = s.Finish(ctx, evt, sub, "w", Result{Status: StatusDelivered, Attempt: Attempt{Attempt: 1, At: time.Now(), StatusCode: 200}})
	_ = s.Schedule(ctx, evt, sub, at.Add(time.Hour), time.Now())
	st, _, _ = s.Get(ctx, evt, sub)
	if st.Status != StatusDelivered || !st.NextAttemptAt.IsZero() {
		t.Fatalf("schedule changed a delivered state: %+v", st)
	}
}

// A throttled delivery shows as such with its next time, keeps the
// attempts it made, proceeds when its time comes, and never turns a
// delivered one back.
func TestThrottleKeepsAttempts(t *testing.T) {
	testenv.RedisBackends(t, func(t *testing.T, rdb redis.UniversalClient) {
		ctx := context.Background()
		s := New(rdb, time.Hour)
		evt, sub := ids.New(ids.Event), ids.New(ids.Subscription)
		at := time.UnixMilli(time.Now().Add(time.Minute).UnixMilli())
		if err := s.Throttle(ctx, evt, sub, at); err != nil {
			t.Fatal(err)
		}
		if st, ok, _ := s.Get(ctx, evt, sub); !ok || st.Status != StatusThrottled || !st.NextAttemptAt.Equal(at) || st.Attempts != 0 {
			t.Fatalf("throttled first attempt = %+v", st)
		}
		if got, _, _ := s.Begin(ctx, evt, sub, 1, "w", time.Minute); got != Proceed {
			t.Fatalf("begin after the wait = %s", got)
		}
		_ = s.Finish(ctx, evt, sub, "w", Result{Status: StatusRetrying, NextAttemptAt: at, Attempt: Attempt{Attempt: 1, At: time.Now(), StatusCode: 500}})
		_ = s.Throttle(ctx, evt, sub, at.Add(time.Hour))
		if st, _, _ := s.Get(ctx, evt, sub); st.Status != StatusThrottled || st.Attempts != 1 || st.LastStatusCode != 500 {
			t.Fatalf("throttled retry = %+v; want its attempt and last status kept", st)
		}
		_, _, _ = s.Begin(ctx, evt, sub, 2, "w", time.Minute)
		_ = s.Finish(ctx, evt, sub, "w", Result{Status: StatusDelivered, Attempt: Attempt{Attempt: 2, At: time.Now(), StatusCode: 200}})
		_ = s.Throttle(ctx, evt, sub, at)
		if st, _, _ := s.Get(ctx, evt, sub); st.Status != StatusDelivered {
			t.Fatalf("throttle changed a delivered state: %+v", st)
		}
	})
}

// An ordered delivery waiting behind its key's head shows which; its first
// attempt proceeds once it is at the front, and then it no longer says it
// waits; a delivered one is never turned back to waiting.
func TestWaitingBehindAHead(t *testing.T) {
	testenv.RedisBackends(t, func(t *testing.T, rdb redis.UniversalClient) {
		ctx := context.Background()
		s := New(rdb, time.Hour)
		evt, sub, head := ids.New(ids.Event), ids.New(ids.Subscription), ids.New(ids.Event)
		if err := s.Wait(ctx, evt, sub, head, 1); err != nil {
			t.Fatal(err)
		}
		if st, ok, _ := s.Get(ctx, evt, sub); !ok || st.Status != StatusWaiting || st.Behind != head || st.Attempts != 0 {
			t.Fatalf("waiting = %+v", st)
		}
		if got, _, _ := s.Begin(ctx, evt, sub, 1, "w", time.Minute); got != Proceed {
			t.Fatalf("begin at the front = %s", got)
		}
		_ = s.Finish(ctx, evt, sub, "w", Result{Status: StatusDead, Attempt: Attempt{Attempt: 1, At: time.Now(), StatusCode: 400}})
		// Its queuing recorded late (another replica's, or its record's
		// again) leaves the attempt's outcome as it is.
		_ = s.Wait(ctx, evt, sub, head, 1)
		if st, _, _ := s.Get(ctx, evt, sub); st.Status != StatusDead || st.Behind != "" {
			t.Fatalf("dead after a late wait = %+v", st)
		}
		// A resend of it (attempt 2) waits.
		_ = s.Wait(ctx, evt, sub, head, 2)
		if st, _, _ := s.Get(ctx, evt, sub); st.Status != StatusWaiting || st.Attempts != 1 {
			t.Fatalf("a resend queued = %+v", st)
		}
		_, _, _ = s.Begin(ctx, evt, sub, 2, "w", time.Minute)
		_ = s.Finish(ctx, evt, sub, "w", Result{Status: StatusDelivered, Attempt: Attempt{Attempt: 2, At: time.Now(), StatusCode: 200}})
		if st, _, _ := s.Get(ctx, evt, sub); st.Status != StatusDelivered || st.Behind != "" {
			t.Fatalf("delivered = %+v", st)
		}
		_ = s.Wait(ctx, evt, sub, head, 3)
		if st, _, _ := s.Get(ctx, evt, sub); st.Status != StatusDelivered {
			t.Fatalf("wait changed a delivered state: %+v", st)
		}
	})
}

// A resend reopens a delivered delivery: the next attempt proceeds, a
// record of an attempt already made is still stale, and a pair not
// delivered is left as it is.
func TestReopenForAResend(t *testing.T) {
	testenv.RedisBackends(t, func(t *testing.T, rdb redis.UniversalClient) {
		ctx := context.Background()
		s := New(rdb, time.Hour)
		evt, done, dead := ids.New(ids.Event), ids.New(ids.Subscription), ids.New(ids.Subscription)
		now := time.UnixMilli(time.Now().UnixMilli())
		for sub, status := range map[string]string{done: StatusDelivered, dead: StatusDead} {
			if out, _, err := s.Begin(ctx, evt, sub, 1, "w", time.Minute); err != nil || out != Proceed {
				t.Fatalf("begin: %s %v", out, err)
			}
			if err := s.Finish(ctx, evt, sub, "w", Result{Status: status, Attempt: Attempt{Attempt: 1, At: now, StatusCode: 200}}); err != nil {
				t.Fatal(err)
			}
		}
		if failed, err := s.Reopen(ctx, [][2]string{{evt, done}, {evt, dead}}, now.Add(time.Second), now); failed != 0 || err != nil {
			t.Fatalf("reopen: %d %v", failed, err)
		}
		if st, _, _ := s.Get(ctx, evt, done); st.Status != StatusRetrying || st.Attempts != 1 || !st.NextAttemptAt.Equal(now.Add(time.Second)) || st.DeliveredAt.IsZero() {
			t.Fatalf("reopened delivery = %+v; want retrying, its first delivery kept", st)
		}
		if st, _, _ := s.Get(ctx, evt, dead); st.Status != StatusDead {
			t.Fatalf("reopen changed a dead delivery: %+v", st)
		}
		if out, _, _ := s.Begin(ctx, evt, done, 1, "w2", time.Minute); out != Stale {
			t.Fatalf("the first attempt's record after a reopen = %s, want stale", out)
		}
		if out, _, _ := s.Begin(ctx, evt, done, 2, "w3", time.Minute); out != Proceed {
			t.Fatalf("the resend's attempt = %s, want ok", out)
		}
	})
}

// A dead delivery that is replayed or redriven shows as retrying until the
// new attempt settles it, with the time it is due; its record is untouched.
func TestScheduleRevivesDead(t *testing.T) {
	rdb, _ := testenv.MiniRedis(t)
	ctx := context.Background()
	s := New(rdb, time.Hour)
	evt, sub := ids.New(ids.Event), ids.New(ids.Subscription)
	now := time.UnixMilli(time.Now().UnixMilli())
	if out, _, err := s.Begin(ctx, evt, sub, 1, "w", time.Minute); err != nil || out != Proceed {
		t.Fatalf("begin = %s, %v", out, err)
	}
	if err := s.Finish(ctx, evt, sub, "w", Result{Status: StatusDead, Attempt: Attempt{Attempt: 1, At: now, StatusCode: 400, Error: "HTTP 400 Bad Request"}}); err != nil {
		t.Fatal(err)
	}
	due := now.Add(time.Second)
	if err := s.Schedule(ctx, evt, sub, due, due); err != nil {
		t.Fatal(err)
	}
	st, _, _ := s.Get(ctx, evt, sub)
	if st.Status != StatusRetrying || !st.NextAttemptAt.Equal(due) || st.Attempts != 1 || st.LastStatusCode != 400 || st.LastError != "HTTP 400 Bad Request" {
		t.Fatalf("dead delivery after schedule = %+v; want retrying at %v, its last attempt kept", st, due)
	}
}

func TestScheduleAllRecordsEachPairInOneBatch(t *testing.T) {
	testenv.RedisBackends(t, func(t *testing.T, rdb redis.UniversalClient) {
		ctx := context.Background()
		s := New(rdb, time.Hour)
		evt := ids.New(ids.Event)
		now := time.UnixMilli(time.Now().UnixMilli())
		settle := func(sub, status string) {
			t.Helper()
			if out, _, err := s.Begin(ctx, evt, sub, 1, "w", time.Minute); err != nil || out != Proceed {
				t.Fatalf("begin = %s, %v", out, err)
			}
			if err := s.Finish(ctx, evt, sub, "w", Result{Status: status, Attempt: Attempt{Attempt: 1, At: now, StatusCode: 500}}); err != nil {
				t.Fatal(err)
			}
		}
		fresh, dead, delivered, retrying := ids.New(ids.Subscription), ids.New(ids.Subscription), ids.New(ids.Subscription), ids.New(ids.Subscription)
		settle(dead, StatusDead)
		settle(delivered, StatusDelivered)
		settle(retrying, StatusRetrying)
		// A restarted Redis has no scripts: the batch must still land whole.
		if err := rdb.ScriptFlush(ctx).Err(); err != nil {
			t.Fatal(err)
		}
		due := now.Add(time.Minute)
		pairs := [][2]string{{evt, fresh}, {evt, dead}, {evt, delivered}, {evt, retrying}}
		if failed, err := s.ScheduleAll(ctx, pairs, due, now); failed != 0 || err != nil {
			t.Fatalf("ScheduleAll = %d failed, %v", failed, err)
		}
		states, err := s.ForEvent(ctx, evt)
		if err != nil {
			t.Fatal(err)
		}
		want := map[string]string{fresh: StatusPending, dead: StatusRetrying, delivered: StatusDelivered, retrying: StatusRetrying}
		for sub, status := range want {
			st, ok := states[sub]
			if !ok || st.Status != status {
				t.Errorf("%s: status %q (recorded %v), want %q", sub, st.Status, ok, status)
			}
			if sub != delivered && !st.NextAttemptAt.Equal(due) {
				t.Errorf("%s: next attempt %v, want %v", sub, st.NextAttemptAt, due)
			}
		}
		if !states[delivered].NextAttemptAt.IsZero() {
			t.Errorf("a delivered delivery got a next attempt: %v", states[delivered].NextAttemptAt)
		}
	})
}

func TestScheduleAllCountsWhatRedisRefused(t *testing.T) {
	_, mr := testenv.MiniRedis(t)
	// No retries: the client's own would only slow the test down.
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr(), MaxRetries: -1})
	defer rdb.Close()
	s := New(rdb, time.Hour)
	evt := ids.New(ids.Event)
	mr.Close()
	pairs := [][2]string{{evt, ids.New(ids.Subscription)}, {evt, ids.New(ids.Subscription)}}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	failed, err := s.ScheduleAll(ctx, pairs, time.Now(), time.Now())
	if failed != len(pairs) || err == nil || !strings.Contains(err.Error(), evt) {
		t.Fatalf("ScheduleAll with Redis gone = %d failed, %v; want %d and an error naming the delivery", failed, err, len(pairs))
	}
}

func TestParkKeepsAttemptsAndReleasesLease(t *testing.T) {
	rdb, _ := testenv.MiniRedis(t)
	ctx := context.Background()
	s := New(rdb, time.Hour)
	evt, sub := ids.New(ids.Event), ids.New(ids.Subscription)
	if out, _, _ := s.Begin(ctx, evt, sub, 1, "w", time.Minute); out != Proceed {
		t.Fatal(out)
	}
	if err := s.Park(ctx, evt, sub, "w", "subscription disabled", time.Now()); err != nil {
		t.Fatal(err)
	}
	st, _, _ := s.Get(ctx, evt, sub)
	if st.Status != StatusDead || st.Attempts != 0 || st.LastError != "subscription disabled" {
		t.Fatalf("parked state = %+v", st)
	}
	// The lease is gone and attempt 1 was never spent: a redrive can make it.
	if out, _, _ := s.Begin(ctx, evt, sub, 1, "w2", time.Minute); out != Proceed {
		t.Fatalf("begin after park = %s", out)
	}
}

// Finish and Schedule are scripts sent through a shared pipeline; each
// still runs after Redis has lost its script cache (a restart, a failover,
// SCRIPT FLUSH). Begin is plain commands and only takes the lease here.
func TestScriptsThroughABatcherSurviveAFlushedCache(t *testing.T) {
	rdb, _ := testenv.MiniRedis(t)
	ctx := context.Background()
	b := redisconn.NewBatcher(rdb, 2, 16, time.Second)
	defer b.Close()
	s := New(rdb, time.Hour).WithPipeliner(b)
	evt, sub := ids.New(ids.Event), ids.New(ids.Subscription)
	flush := func() {
		t.Helper()
		if err := rdb.ScriptFlush(ctx).Err(); err != nil {
			t.Fatal(err)
		}
	}
	if out, _, err := s.Begin(ctx, evt, sub, 1, "w", time.Minute); err != nil || out != Proceed {
		t.Fatalf("begin = %s, %v", out, err)
	}
	flush()
	if err := s.Finish(ctx, evt, sub, "w", Result{Status: StatusDelivered, Attempt: Attempt{Attempt: 1, At: time.Now()}}); err != nil {
		t.Fatal(err)
	}
	if st, _, _ := s.Get(ctx, evt, sub); st.Status != StatusDelivered {
		t.Fatalf("status %s", st.Status)
	}
	// A deferral's schedule goes through the same pipeline.
	other := ids.New(ids.Subscription)
	flush()
	if err := s.Schedule(ctx, evt, other, time.Now().Add(time.Minute), time.Now()); err != nil {
		t.Fatalf("schedule through a batcher after a flushed script cache: %v", err)
	}
	if st, _, _ := s.Get(ctx, evt, other); st.Status != StatusPending || st.NextAttemptAt.IsZero() {
		t.Fatalf("scheduled delivery = %+v", st)
	}
}

// A pair's state written by an earlier version, a hash per pair beside a
// set of the event's subscriptions, is honoured until it expires: a
// delivered pair is never attempted again, the API shows both kinds, and the
// first write of an old pair moves it into its event's hash.
func TestEarlierVersionsState(t *testing.T) {
	testenv.RedisBackends(t, func(t *testing.T, rdb redis.UniversalClient) {
		ctx := context.Background()
		s := New(rdb, time.Hour)
		evt, done, dead, fresh := ids.New(ids.Event), ids.New(ids.Subscription), ids.New(ids.Subscription), ids.New(ids.Subscription)
		at := time.UnixMilli(time.Now().Add(-time.Minute).UnixMilli())
		ms := fmt.Sprint(at.UnixMilli())
		rdb.HSet(ctx, oldKey(evt, done), "status", "delivered", "attempts", "2", "last_status_code", "200", "delivered_at", ms, "updated_at", ms)
		rdb.HSet(ctx, oldKey(evt, dead), "status", "dead", "attempts", "4", "last_status_code", "503", "last_error", "HTTP 503", "updated_at", ms)
		rdb.SAdd(ctx, oldIndexKey(evt), done, dead)
		rdb.LPush(ctx, histKey(evt, done), `{"attempt":1,"at":"`+at.Add(-time.Second).Format(time.RFC3339Nano)+`","status_code":500}`,
			`{"attempt":2,"at":"`+at.Format(time.RFC3339Nano)+`","status_code":200}`)

		if out, n, err := s.Begin(ctx, evt, done, 3, "w", time.Minute); err != nil || out != AlreadyDelivered || n != 2 {
			t.Fatalf("begin of an old delivered pair = %s %d %v", out, n, err)
		}
		if out, _, err := s.Begin(ctx, evt, dead, 4, "w", time.Minute); err != nil || out != Stale {
			t.Fatalf("begin of an old pair's finished attempt = %s %v", out, err)
		}
		if out, _, err := s.Begin(ctx, evt, fresh, 1, "w", time.Minute); err != nil || out != Proceed {
			t.Fatalf("begin of a new pair = %s %v", out, err)
		}
		if err := s.Finish(ctx, evt, fresh, "w", Result{Status: StatusDelivered, Attempt: Attempt{Attempt: 1, At: at, StatusCode: 204, LatencyMS: 3}}); err != nil {
			t.Fatal(err)
		}
		all, err := s.ForEvent(ctx, evt)
		if err != nil {
			t.Fatal(err)
		}
		if st := all[done]; st.Status != StatusDelivered || st.Attempts != 2 || !st.DeliveredAt.Equal(at) || len(st.History) != 2 || st.History[0].Attempt != 2 || !st.History[0].At.Equal(at) {
			t.Fatalf("old delivered pair = %+v", st)
		}
		if st := all[dead]; st.Status != StatusDead || st.LastError != "HTTP 503" {
			t.Fatalf("old dead pair = %+v", st)
		}
		if st := all[fresh]; st.Status != StatusDelivered || len(st.History) != 1 || st.History[0].StatusCode != 204 || st.History[0].LatencyMS != 3 {
			t.Fatalf("new pair = %+v", st)
		}
		// A redrive of the old dead pair: moved into the event's hash, retrying.
		if err := s.Schedule(ctx, evt, dead, at.Add(time.Hour), at); err != nil {
			t.Fatal(err)
		}
		if n := rdb.Exists(ctx, oldKey(evt, dead)).Val(); n != 0 {
			t.Fatal("the old pair's hash is still there after its first write")
		}
		if st, ok, err := s.Get(ctx, evt, dead); err != nil || !ok || st.Status != StatusRetrying || st.Attempts != 4 || st.LastError != "HTTP 503" {
			t.Fatalf("old dead pair after a schedule = %+v %v %v", st, ok, err)
		}
	})
}

// A pair delivered on its first attempt is one small field of its event's
// hash and nothing else: no list, no set, no key of its own.
func TestFirstAttemptDeliveryIsOneField(t *testing.T) {
	rdb, _ := testenv.MiniRedis(t)
	ctx := context.Background()
	s := New(rdb, time.Hour)
	evt := ids.New(ids.Event)
	for i := 0; i < 3; i++ {
		sub := ids.New(ids.Subscription)
		if out, _, err := s.Begin(ctx, evt, sub, 1, "w", time.Minute); err != nil || out != Proceed {
			t.Fatalf("begin = %s %v", out, err)
		}
		if err := s.Finish(ctx, evt, sub, "w", Result{Status: StatusDelivered, Attempt: Attempt{Attempt: 1, At: time.Now(), StatusCode: 200, LatencyMS: 12, Response: "ok"}}); err != nil {
			t.Fatal(err)
		}
	}
	if keys := rdb.Keys(ctx, "*").Val(); len(keys) != 1 || keys[0] != stateKey(evt) {
		t.Fatalf("keys %v, want the event's hash alone", keys)
	}
	for sub, v := range rdb.HGetAll(ctx, stateKey(evt)).Val() {
		if len(v) > 80 {
			t.Fatalf("%s's state takes %d bytes: %s", sub, len(v), v)
		}
	}
}

func TestAdmit(t *testing.T) {
	for _, c := range []struct {
		name              string
		status            string
		finished, attempt int
		leased            bool
		want              string
	}{
		{"first attempt, no state yet", "", 0, 1, true, Proceed},
		{"first attempt, lease held elsewhere", "", 0, 1, false, Busy},
		{"retry after one failure", StatusRetrying, 1, 2, true, Proceed},
		{"redelivered record of a finished attempt", StatusRetrying, 2, 2, true, Stale},
		{"older attempt than the last finished", StatusRetrying, 3, 2, true, Stale},
		{"stale wins over a lease held elsewhere", StatusRetrying, 2, 2, false, Stale},
		{"delivered: never again", StatusDelivered, 1, 2, true, AlreadyDelivered},
		{"delivered: a replay racing the first delivery", StatusDelivered, 1, 1, false, AlreadyDelivered},
		{"delivered wins over a higher attempt", StatusDelivered, 1, 9, true, AlreadyDelivered},
		{"forced resend reopened a delivered pair", StatusRetrying, 1, 2, true, Proceed},
		{"an earlier record after a forced resend reopened the pair", StatusRetrying, 1, 1, true, Stale},
		{"dead, redriven", StatusDead, 5, 6, true, Proceed},
		{"pending after a deferral", StatusPending, 0, 1, true, Proceed},
	} {
		if got := Admit(c.status, c.finished, c.attempt, c.leased); got != c.want {
			t.Errorf("%s: Admit(%q, %d, %d, %v) = %s, want %s", c.name, c.status, c.finished, c.attempt, c.leased, got, c.want)
		}
	}
}
