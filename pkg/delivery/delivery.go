// Package delivery keeps the state of each (event, subscription) delivery in
// Redis. Deliver takes a lease and reads the state before every attempt
// (Begin) and records the outcome with a script after it (Finish); the API
// reads it; replay and redrive consult it so that a delivered pair is never
// POSTed again, whatever Kafka redelivers.
//
// Keys (hash-tagged by event id, so one event's deliveries share a slot and
// each script touches one slot):
//
//	relay:dlv:{evt_…}:<sub>         hash: status, attempts, last outcome, next attempt
//	relay:dlv:{evt_…}:<sub>:lease   string: the worker currently attempting it
//	relay:dlv:{evt_…}:<sub>:hist    list: the last 20 attempts, newest first (JSON)
//	relay:dlv:{evt_…}:subs          set: subscriptions with state for the event
//
// Attempt numbers make redelivery safe. `attempts` counts finished attempts.
// A record asking for attempt n proceeds only when n > attempts: a record
// whose attempt already finished is stale (a duplicate forward after a crash,
// or a retry superseded by a replay) and is dropped, while a crash in the
// middle of attempt n leaves attempts at n-1, so the redelivered record makes
// attempt n again (at least once).
package delivery

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/relayhq/relay/pkg/redisconn"
)

// Statuses of a delivery.
const (
	StatusPending   = "pending"
	StatusDelivered = "delivered"
	StatusRetrying  = "retrying"
	StatusDead      = "dead"
)

// HistoryLimit is how many attempts a delivery's history keeps.
const HistoryLimit = 20

// Outcomes of Begin.
const (
	// Proceed: make the attempt.
	Proceed = "ok"
	// AlreadyDelivered: the pair was delivered; drop the record.
	AlreadyDelivered = "delivered"
	// Stale: the record's attempt already finished; drop the record.
	Stale = "stale"
	// Busy: another worker holds the lease; try again after it expires.
	Busy = "busy"
)

func stateKey(evt, sub string) string { return "relay:dlv:{" + evt + "}:" + sub }
func leaseKey(evt, sub string) string { return stateKey(evt, sub) + ":lease" }
func histKey(evt, sub string) string  { return stateKey(evt, sub) + ":hist" }
func indexKey(evt string) string      { return "relay:dlv:{" + evt + "}:subs" }

// Attempt is one entry of a delivery's history.
type Attempt struct {
	Attempt    int       `json:"attempt"`
	At         time.Time `json:"at"`
	StatusCode int       `json:"status_code"`
	LatencyMS  int64     `json:"latency_ms"`
	Error      string    `json:"error,omitempty"`
	Response   string    `json:"response,omitempty"`
}

// State is what Relay knows of one delivery.
type State struct {
	SubscriptionID string
	Status         string
	Attempts       int
	LastStatusCode int
	LastError      string
	LastResponse   string
	NextAttemptAt  time.Time
	DeliveredAt    time.Time
	UpdatedAt      time.Time
	History        []Attempt
}

// Store reads and writes delivery state.
type Store struct {
	rdb       redis.UniversalClient
	pipe      redisconn.Pipeliner
	retention time.Duration
}

// New returns a Store whose keys live for retention after their last update.
func New(rdb redis.UniversalClient, retention time.Duration) *Store {
	return &Store{rdb: rdb, pipe: redisconn.Direct{Client: rdb}, retention: retention}
}

// WithPipeliner returns a Store whose Begin commands and Finish and Schedule
// scripts go through pipe, so that many deliveries share round trips under
// load.
func (s *Store) WithPipeliner(pipe redisconn.Pipeliner) *Store {
	c := *s
	c.pipe = pipe
	return &c
}

// runScript runs a script through the pipeliner, loading it again when
// Redis has lost its script cache (after a restart).
func (s *Store) runScript(ctx context.Context, script *redis.Script, keys []string, args ...any) *redis.Cmd {
	var cmd *redis.Cmd
	if err := s.pipe.Do(ctx, func(p redis.Pipeliner) { cmd = p.EvalSha(ctx, script.Hash(), keys, args...) }); err != nil {
		c := redis.NewCmd(ctx)
		c.SetErr(err)
		return c
	}
	if err := cmd.Err(); err != nil && redis.HasErrorPrefix(err, "NOSCRIPT") {
		return script.Run(ctx, s.rdb, keys, args...)
	}
	return cmd
}

// Begin claims attempt number attempt of (evt, sub) for the worker named by
// token, holding a lease for leaseFor. It returns Proceed, AlreadyDelivered,
// Stale or Busy, and the number of attempts finished so far.
//
// It is two plain commands in one round trip, not a script: take the lease
// if it is free, then read the state. Every write that settles a delivery
// (Finish, Park) is made by the lease's holder, so the state read after
// taking the lease is the settled one. A delivered or stale answer wins over
// a lease someone else holds, so a record of a pair settled meanwhile is
// dropped rather than made to wait for that lease, and a lease taken for
// nothing is given back at once. A worker that asks again with its token
// (its first answer was lost) holds the lease it took. A pair with no state
// yet is pending (the API shows it so) and its first Finish records it: a
// first attempt writes nothing before its POST. As a script that also wrote
// the pending state, Begin cost Redis about a sixth more CPU per event end
// to end (docs/BENCHMARKS.md, "Where the CPU went").
func (s *Store) Begin(ctx context.Context, evt, sub string, attempt int, token string, leaseFor time.Duration) (string, int, error) {
	var lease *redis.StatusCmd
	var st *redis.SliceCmd
	err := s.pipe.Do(ctx, func(p redis.Pipeliner) {
		// GET: a worker that retries after a lost reply finds its own token
		// and holds the lease, rather than waiting for it to lapse.
		lease = p.SetArgs(ctx, leaseKey(evt, sub), token, redis.SetArgs{Mode: "NX", Get: true, TTL: leaseFor})
		st = p.HMGet(ctx, stateKey(evt, sub), "status", "attempts")
	})
	var holder string
	if err == nil {
		if holder, err = lease.Result(); errors.Is(err, redis.Nil) {
			holder, err = token, nil // there was no lease: ours now
		}
	}
	if err == nil {
		err = st.Err()
	}
	if err != nil {
		return "", 0, fmt.Errorf("begin delivery %s/%s: %w", evt, sub, err)
	}
	leased := holder == token
	v := st.Val()
	if len(v) != 2 {
		return "", 0, fmt.Errorf("begin delivery %s/%s: unexpected reply %v", evt, sub, v)
	}
	status, _ := v[0].(string)
	a, _ := v[1].(string)
	finished, _ := strconv.Atoi(a)
	outcome := Proceed
	switch {
	case status == StatusDelivered:
		outcome = AlreadyDelivered
	case attempt <= finished:
		outcome = Stale
	case !leased:
		return Busy, finished, nil
	}
	if outcome != Proceed && leased {
		if err := s.Release(ctx, evt, sub, token); err != nil {
			return "", 0, fmt.Errorf("begin delivery %s/%s: %w", evt, sub, err)
		}
	}
	return outcome, finished, nil
}

var finishScript = redis.NewScript(`
local st = redis.call('HMGET', KEYS[1], 'attempts', 'status')
local cur = tonumber(st[1] or '0') or 0
local attempt = tonumber(ARGV[2])
if attempt >= cur and st[2] ~= 'delivered' then
  local f = {'attempts', attempt, 'status', ARGV[3], 'last_status_code', ARGV[4], 'last_error', ARGV[5],
    'next_attempt_at', ARGV[6], 'updated_at', ARGV[7], 'last_response', ARGV[10]}
  if ARGV[3] == 'delivered' then f[#f+1] = 'delivered_at'; f[#f+1] = ARGV[7] end
  redis.call('HSET', KEYS[1], unpack(f))
end
-- Trimmed only once the history is over its limit: most deliveries make one attempt.
if redis.call('LPUSH', KEYS[3], ARGV[8]) > tonumber(ARGV[11]) then redis.call('LTRIM', KEYS[3], 0, ARGV[11] - 1) end
redis.call('SADD', KEYS[4], ARGV[12])
redis.call('EXPIRE', KEYS[1], ARGV[9])
redis.call('EXPIRE', KEYS[3], ARGV[9])
redis.call('EXPIRE', KEYS[4], ARGV[9])
if redis.call('GET', KEYS[2]) == ARGV[1] then redis.call('DEL', KEYS[2]) end
return 1
`)

// Result is the outcome of one attempt, as Finish records it.
type Result struct {
	Attempt Attempt
	// Status is the delivery's status after the attempt.
	Status string
	// NextAttemptAt is when a retrying delivery is next attempted.
	NextAttemptAt time.Time
}

// Finish records the outcome of an attempt begun with token, adds the
// delivery to its event's index, and releases the lease. A delivered status
// is never overwritten.
func (s *Store) Finish(ctx context.Context, evt, sub, token string, r Result) error {
	hist, err := json.Marshal(historyEntry(r.Attempt))
	if err != nil {
		return fmt.Errorf("finish delivery %s/%s: %w", evt, sub, err)
	}
	next := ""
	if !r.NextAttemptAt.IsZero() {
		next = strconv.FormatInt(r.NextAttemptAt.UnixMilli(), 10)
	}
	err = s.runScript(ctx, finishScript,
		[]string{stateKey(evt, sub), leaseKey(evt, sub), histKey(evt, sub), indexKey(evt)},
		token, r.Attempt.Attempt, r.Status, r.Attempt.StatusCode, r.Attempt.Error, next,
		r.Attempt.At.UnixMilli(), string(hist), int64(s.retention.Seconds()), r.Attempt.Response, HistoryLimit, sub,
	).Err()
	if err != nil {
		return fmt.Errorf("finish delivery %s/%s: %w", evt, sub, err)
	}
	return nil
}

// historyEntry trims the response kept per history entry: the full 4 KiB of
// the latest response is kept once, in the state.
func historyEntry(a Attempt) Attempt {
	const snippet = 512
	if len(a.Response) > snippet {
		a.Response = a.Response[:snippet]
	}
	return a
}

var scheduleScript = redis.NewScript(`
local st = redis.call('HGET', KEYS[1], 'status')
if st == 'delivered' then return 0 end
redis.call('HSET', KEYS[1], 'next_attempt_at', ARGV[1], 'updated_at', ARGV[2])
if not st then redis.call('HSET', KEYS[1], 'status', 'pending')
elseif st == 'dead' then redis.call('HSET', KEYS[1], 'status', 'retrying') end
redis.call('SADD', KEYS[2], ARGV[3])
redis.call('EXPIRE', KEYS[1], ARGV[4])
redis.call('EXPIRE', KEYS[2], ARGV[4])
return 1
`)

// Schedule records when a delivery that spent no attempt (deferred, replayed,
// redriven) will next be attempted. A dead delivery queued again is retrying
// from then on; a delivered one is left alone.
func (s *Store) Schedule(ctx context.Context, evt, sub string, at, now time.Time) error {
	_, err := s.ScheduleAll(ctx, [][2]string{{evt, sub}}, at, now)
	return err
}

// ScheduleAll does what Schedule does for each (event, subscription) pair,
// in one pipelined round trip, so that a redrive of thousands of parked
// deliveries does not wait for Redis once per delivery. It returns how many
// pairs could not be recorded and the first of their errors.
func (s *Store) ScheduleAll(ctx context.Context, pairs [][2]string, at, now time.Time) (int, error) {
	if len(pairs) == 0 {
		return 0, nil
	}
	errs := s.scheduleBatch(ctx, pairs, at, now)
	// After a Redis restart the script cache is empty: load the script once
	// and run again only what that refused, rather than once per pair.
	var again []int
	for i, err := range errs {
		if err != nil && redis.HasErrorPrefix(err, "NOSCRIPT") {
			again = append(again, i)
		}
	}
	if len(again) > 0 {
		if err := scheduleScript.Load(ctx, s.rdb).Err(); err != nil {
			for _, i := range again {
				errs[i] = err
			}
		} else {
			retry := make([][2]string, len(again))
			for j, i := range again {
				retry[j] = pairs[i]
			}
			for j, err := range s.scheduleBatch(ctx, retry, at, now) {
				errs[again[j]] = err
			}
		}
	}
	failed, first := 0, error(nil)
	for i, err := range errs {
		if err == nil {
			continue
		}
		if failed++; first == nil {
			first = fmt.Errorf("schedule delivery %s/%s: %w", pairs[i][0], pairs[i][1], err)
		}
	}
	return failed, first
}

// scheduleBatch runs the schedule script for each pair through the store's
// pipeliner (shared with other callers' scripts in deliver) and returns each
// pair's error.
func (s *Store) scheduleBatch(ctx context.Context, pairs [][2]string, at, now time.Time) []error {
	cmds := make([]*redis.Cmd, len(pairs))
	err := s.pipe.Do(ctx, func(p redis.Pipeliner) {
		for i, pr := range pairs {
			cmds[i] = p.EvalSha(ctx, scheduleScript.Hash(), []string{stateKey(pr[0], pr[1]), indexKey(pr[0])},
				at.UnixMilli(), now.UnixMilli(), pr[1], int64(s.retention.Seconds()))
		}
	})
	errs := make([]error, len(pairs))
	for i, c := range cmds {
		if err != nil {
			// Not sent, or not answered in time: a batch still in flight may
			// yet write to the commands, so they are not read.
			errs[i] = err
		} else {
			errs[i] = c.Err()
		}
	}
	return errs
}

var reopenScript = redis.NewScript(`
if redis.call('HGET', KEYS[1], 'status') ~= 'delivered' then return 0 end
redis.call('HSET', KEYS[1], 'status', 'retrying', 'next_attempt_at', ARGV[1], 'updated_at', ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[3])
return 1
`)

// Reopen makes each delivered (event, subscription) pair retrying again,
// due at, so that an operator's resend of it is attempted rather than
// dropped as delivered. It must run before the resend's record is produced,
// and that record must ask for the attempt after the last one: a redelivery
// of any earlier record is then stale, so Kafka still never makes a
// delivered pair POST again; only the resend does. A pair not delivered is
// left alone. It returns how many pairs could not be reopened and the first
// of their errors.
func (s *Store) Reopen(ctx context.Context, pairs [][2]string, at, now time.Time) (int, error) {
	cmds := make([]*redis.Cmd, len(pairs))
	// EVAL, not EVALSHA: an operator's call, rare enough not to mind the
	// script's bytes, and never refused for a script cache lost in a restart.
	// Pipelined's error is each command's own, read below.
	_, _ = s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, pr := range pairs {
			cmds[i] = reopenScript.Eval(ctx, p, []string{stateKey(pr[0], pr[1])}, at.UnixMilli(), now.UnixMilli(), int64(s.retention.Seconds()))
		}
		return nil
	})
	failed, first := 0, error(nil)
	for i, c := range cmds {
		if c.Err() == nil {
			continue
		}
		if failed++; first == nil {
			first = fmt.Errorf("reopen delivery %s/%s: %w", pairs[i][0], pairs[i][1], c.Err())
		}
	}
	return failed, first
}

// Get returns the state of one delivery; ok is false when none is recorded.
func (s *Store) Get(ctx context.Context, evt, sub string) (State, bool, error) {
	m, err := s.rdb.HGetAll(ctx, stateKey(evt, sub)).Result()
	if err != nil {
		return State{}, false, fmt.Errorf("get delivery %s/%s: %w", evt, sub, err)
	}
	if len(m) == 0 {
		return State{SubscriptionID: sub, Status: StatusPending}, false, nil
	}
	return stateFrom(sub, m), true, nil
}

// ForEvent returns the state of every delivery of evt with its history, by
// subscription id.
func (s *Store) ForEvent(ctx context.Context, evt string) (map[string]State, error) {
	subs, err := s.rdb.SMembers(ctx, indexKey(evt)).Result()
	if err != nil {
		return nil, fmt.Errorf("deliveries of %s: %w", evt, err)
	}
	states := make([]*redis.MapStringStringCmd, len(subs))
	hists := make([]*redis.StringSliceCmd, len(subs))
	_, err = s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, sub := range subs {
			states[i] = p.HGetAll(ctx, stateKey(evt, sub))
			hists[i] = p.LRange(ctx, histKey(evt, sub), 0, HistoryLimit-1)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("deliveries of %s: %w", evt, err)
	}
	out := make(map[string]State, len(subs))
	for i, sub := range subs {
		m := states[i].Val()
		if len(m) == 0 {
			continue
		}
		st := stateFrom(sub, m)
		for _, h := range hists[i].Val() {
			var a Attempt
			if json.Unmarshal([]byte(h), &a) == nil {
				st.History = append(st.History, a)
			}
		}
		out[sub] = st
	}
	return out, nil
}

func stateFrom(sub string, m map[string]string) State {
	atoi := func(s string) int { n, _ := strconv.Atoi(s); return n }
	msTime := func(s string) time.Time {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n == 0 {
			return time.Time{}
		}
		return time.UnixMilli(n)
	}
	return State{
		SubscriptionID: sub,
		Status:         m["status"],
		Attempts:       atoi(m["attempts"]),
		LastStatusCode: atoi(m["last_status_code"]),
		LastError:      m["last_error"],
		LastResponse:   m["last_response"],
		NextAttemptAt:  msTime(m["next_attempt_at"]),
		DeliveredAt:    msTime(m["delivered_at"]),
		UpdatedAt:      msTime(m["updated_at"]),
	}
}

// Statuses returns the status of each (event, subscription) pair, "" where
// none is recorded, in one pipelined round trip.
func (s *Store) Statuses(ctx context.Context, pairs [][2]string) ([]State, error) {
	cmds := make([]*redis.SliceCmd, len(pairs))
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, pr := range pairs {
			cmds[i] = p.HMGet(ctx, stateKey(pr[0], pr[1]), "status", "attempts")
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("delivery statuses: %w", err)
	}
	out := make([]State, len(pairs))
	for i, c := range cmds {
		v := c.Val()
		out[i].SubscriptionID = pairs[i][1]
		if len(v) == 2 {
			out[i].Status, _ = v[0].(string)
			a, _ := v[1].(string)
			out[i].Attempts, _ = strconv.Atoi(a)
		}
	}
	return out, nil
}

var parkScript = redis.NewScript(`
if redis.call('HGET', KEYS[1], 'status') ~= 'delivered' then
  redis.call('HSET', KEYS[1], 'status', 'dead', 'last_error', ARGV[2], 'next_attempt_at', '', 'updated_at', ARGV[3])
end
redis.call('SADD', KEYS[3], ARGV[4])
redis.call('EXPIRE', KEYS[1], ARGV[5])
redis.call('EXPIRE', KEYS[3], ARGV[5])
if redis.call('GET', KEYS[2]) == ARGV[1] then redis.call('DEL', KEYS[2]) end
return 1
`)

// Park marks a delivery begun with token dead without spending an attempt
// (its subscription was disabled), and releases the lease.
func (s *Store) Park(ctx context.Context, evt, sub, token, reason string, now time.Time) error {
	err := parkScript.Run(ctx, s.rdb, []string{stateKey(evt, sub), leaseKey(evt, sub), indexKey(evt)},
		token, reason, now.UnixMilli(), sub, int64(s.retention.Seconds())).Err()
	if err != nil {
		return fmt.Errorf("park delivery %s/%s: %w", evt, sub, err)
	}
	return nil
}

var releaseScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
`)

// Release gives up a lease without recording an outcome: the attempt was
// abandoned (shutdown, revoked partition) and its record will come back.
func (s *Store) Release(ctx context.Context, evt, sub, token string) error {
	if err := releaseScript.Run(ctx, s.rdb, []string{leaseKey(evt, sub)}, token).Err(); err != nil {
		return fmt.Errorf("release delivery %s/%s: %w", evt, sub, err)
	}
	return nil
}
