// Package delivery keeps the state of each (event, subscription) delivery in
// Redis. Deliver takes a lease and reads the state before every attempt
// (Begin) and records the outcome with a script after it (Finish); the API
// reads it; replay and redrive consult it so that a delivered pair is never
// POSTed again, whatever Kafka redelivers.
//
// Keys (hash-tagged by event id, so one event's deliveries share a slot and
// each script touches one slot):
//
//	relay:dlv:{evt_…}               hash: per subscription id, the delivery's state
//	                                as compact JSON: status, attempts, and the last
//	                                attempt (time, status code, latency, error,
//	                                the start of the response), next attempt
//	relay:dlv:{evt_…}:<sub>:hist    list: the attempts before the last, newest
//	                                first (JSON), only once there were two
//	relay:dlv:{evt_…}:<sub>:lease   string: the worker currently attempting it
//
// A pair delivered on its first attempt is one small field of its event's
// hash, and nothing else. Earlier versions kept a hash per pair at
// relay:dlv:{evt_…}:<sub> and a set of an event's subscriptions at
// relay:dlv:{evt_…}:subs; both are still read, and a pair's old hash is
// moved into the event's hash the first time the pair is written, until
// the last of them expires.
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
	// StatusThrottled is a delivery waiting, without spending an attempt,
	// for its subscription's rate limit, a pause its endpoint asked for, or
	// its open circuit.
	StatusThrottled = "throttled"
	// StatusWaiting is an ordered delivery waiting behind an earlier event
	// of its ordering key (Behind names it).
	StatusWaiting = "waiting"
)

// DefaultRetention is RELAY_DELIVERY_STATE_RETENTION's default: how long
// a delivery's state is kept after its last change.
const DefaultRetention = 7 * 24 * time.Hour

// HistoryLimit is how many attempts a delivery's history keeps.
const HistoryLimit = 20

// How much of an endpoint's response a delivery keeps: of the last attempt
// when it failed (what an operator reads to mend the endpoint), when it
// succeeded, and of each earlier attempt.
const (
	responseFailed    = 4 << 10
	responseDelivered = 256
	responseEarlier   = 512
)

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

func stateKey(evt string) string      { return "relay:dlv:{" + evt + "}" }
func leaseKey(evt, sub string) string { return stateKey(evt) + ":" + sub + ":lease" }
func histKey(evt, sub string) string  { return stateKey(evt) + ":" + sub + ":hist" }

// oldKey and oldIndexKey are where earlier versions kept a pair's state and
// an event's subscriptions.
func oldKey(evt, sub string) string { return stateKey(evt) + ":" + sub }
func oldIndexKey(evt string) string { return stateKey(evt) + ":subs" }

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
	// Behind is, while the delivery is waiting, the event it waits behind:
	// its key's head when it was queued.
	Behind  string
	History []Attempt
}

// stored is a delivery's state as its event's hash holds it. The last
// attempt is kept here rather than in a history list, so that a delivery
// made in one attempt needs nothing else.
type stored struct {
	Status   string `json:"s"`
	Attempts int    `json:"a,omitempty"`
	// The last attempt: when (unix ms; 0 for none yet), status code,
	// latency, error and the start of the response.
	At       int64  `json:"at,omitempty"`
	Code     int    `json:"c,omitempty"`
	Latency  int64  `json:"l,omitempty"`
	Error    string `json:"e,omitempty"`
	Response string `json:"r,omitempty"`
	// Next is when the next attempt is due (unix ms), 0 for none.
	Next int64 `json:"n,omitempty"`
	// Delivered is when a delivery reopened for a resend was delivered
	// (unix ms); a delivered one's is its last attempt's.
	Delivered int64 `json:"d,omitempty"`
	// Behind is the event a waiting delivery waits behind.
	Behind string `json:"b,omitempty"`
	// old marks a state read from an earlier version's hash, whose history
	// list holds its last attempt too.
	old bool
}

// historyEntry is an earlier attempt as the history list holds it: with
// its time as unix ms ("ms"), or, written by earlier versions, as an RFC
// 3339 time ("at").
type historyEntry struct {
	Attempt
	MS int64 `json:"ms,omitempty"`
}

func msTime(ms int64) time.Time {
	if ms == 0 {
		return time.Time{}
	}
	return time.UnixMilli(ms)
}

// state is what st says, history apart.
func (st stored) state(sub string) State {
	out := State{
		SubscriptionID: sub, Status: st.Status, Attempts: st.Attempts, LastStatusCode: st.Code,
		LastError: st.Error, LastResponse: st.Response, NextAttemptAt: msTime(st.Next),
	}
	if st.Status == StatusWaiting {
		out.Behind = st.Behind
	}
	switch {
	case st.Status == StatusDelivered:
		out.DeliveredAt = msTime(st.At)
	case st.Delivered != 0:
		out.DeliveredAt = msTime(st.Delivered)
	}
	return out
}

// last is st's last attempt as a history entry; ok is false before any,
// and for an earlier version's state, whose history list has it.
func (st stored) last() (Attempt, bool) {
	if st.At == 0 || st.old {
		return Attempt{}, false
	}
	return Attempt{Attempt: st.Attempts, At: time.UnixMilli(st.At), StatusCode: st.Code, LatencyMS: st.Latency, Error: st.Error, Response: st.Response}, true
}

// fromOld reads a pair's state an earlier version kept as a hash.
func fromOld(m map[string]string) stored {
	ms := func(k string) int64 { n, _ := strconv.ParseInt(m[k], 10, 64); return n }
	a, _ := strconv.Atoi(m["attempts"])
	c, _ := strconv.Atoi(m["last_status_code"])
	st := stored{Status: m["status"], Attempts: a, Code: c, Error: m["last_error"], Response: m["last_response"], Next: ms("next_attempt_at"), old: true}
	if st.Status == StatusDelivered {
		st.At = ms("delivered_at")
	} else {
		st.Delivered = ms("delivered_at")
	}
	return st
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

// luaLoad is the first part of every script that writes a pair's state: it
// reads the state of KEYS[1]'s field ARGV[1], or, the first time, moves an
// earlier version's hash (KEYS[2]) into it. save writes it back.
const luaLoad = `
local function load()
  local v = redis.call('HGET', KEYS[1], ARGV[1])
  if v then return cjson.decode(v) end
  local m = redis.call('HGETALL', KEYS[2])
  if #m == 0 then return nil end
  local h = {}
  for i = 1, #m, 2 do h[m[i]] = m[i+1] end
  redis.call('DEL', KEYS[2])
  local st = {s = h.status, a = tonumber(h.attempts or '0'), c = tonumber(h.last_status_code or '0'),
    e = h.last_error, r = h.last_response, n = tonumber(h.next_attempt_at or '')}
  if h.status == 'delivered' then st.at = tonumber(h.delivered_at or '') else st.d = tonumber(h.delivered_at or '') end
  return st
end
local function save(st, ttl)
  for k, v in pairs(st) do
    if v == '' or v == 0 then st[k] = nil end
  end
  redis.call('HSET', KEYS[1], ARGV[1], cjson.encode(st))
  redis.call('EXPIRE', KEYS[1], ttl)
end
`

// Begin claims attempt number attempt of (evt, sub) for the worker named by
// token, holding a lease for leaseFor. It returns Proceed, AlreadyDelivered,
// Stale or Busy, and the number of attempts finished so far.
//
// It takes the lease if it is free and reads the state in one round trip:
// every write that settles a delivery (Finish, Park) is made by the lease's
// holder, so the state read after taking the lease is the settled one. Admit
// decides; a lease taken for nothing is given back at once. A worker that
// asks again with its token (its first answer was lost) holds the lease it
// took. A first attempt writes nothing before its POST: a pair with no state
// is pending until its first Finish.
func (s *Store) Begin(ctx context.Context, evt, sub string, attempt int, token string, leaseFor time.Duration) (string, int, error) {
	var lease *redis.StatusCmd
	var cur *redis.StringCmd
	var old *redis.SliceCmd
	err := s.pipe.Do(ctx, func(p redis.Pipeliner) {
		// GET: a worker that retries after a lost reply finds its own token
		// and holds the lease, rather than waiting for it to lapse.
		lease = p.SetArgs(ctx, leaseKey(evt, sub), token, redis.SetArgs{Mode: "NX", Get: true, TTL: leaseFor})
		cur = p.HGet(ctx, stateKey(evt), sub)
		old = p.HMGet(ctx, oldKey(evt, sub), "status", "attempts")
	})
	var holder string
	if err == nil {
		if holder, err = lease.Result(); errors.Is(err, redis.Nil) {
			holder, err = token, nil // there was no lease: ours now
		}
	}
	var st stored
	if err == nil {
		st, err = s.read(cur, old)
	}
	if err != nil {
		return "", 0, fmt.Errorf("begin delivery %s/%s: %w", evt, sub, err)
	}
	leased := holder == token
	outcome := Admit(st.Status, st.Attempts, attempt, leased)
	if outcome == Busy {
		return Busy, st.Attempts, nil
	}
	if outcome != Proceed && leased {
		if err := s.Release(ctx, evt, sub, token); err != nil {
			return "", 0, fmt.Errorf("begin delivery %s/%s: %w", evt, sub, err)
		}
	}
	return outcome, st.Attempts, nil
}

// Admit decides whether attempt number attempt of a pair may be made, from
// the pair's stored status and the number of attempts finished, and whether
// the asking worker holds the pair's lease. A delivered pair is never
// attempted again, whatever the attempt number (a replay racing the first
// delivery, a redelivered record); an attempt already finished is stale,
// since its outcome is recorded and forwarded; either wins over a lease held
// by someone else, so that a settled record is dropped rather than made to
// wait for that lease.
func Admit(status string, finished, attempt int, leased bool) string {
	switch {
	case status == StatusDelivered:
		return AlreadyDelivered
	case attempt <= finished:
		return Stale
	case !leased:
		return Busy
	}
	return Proceed
}

// read decodes a pair's state from its field of the event's hash, or from
// an earlier version's status and attempts.
func (s *Store) read(cur *redis.StringCmd, old *redis.SliceCmd) (stored, error) {
	v, err := cur.Result()
	switch {
	case err == nil:
		var st stored
		if err := json.Unmarshal([]byte(v), &st); err != nil {
			return stored{}, fmt.Errorf("unreadable state %q: %w", v, err)
		}
		return st, nil
	case !errors.Is(err, redis.Nil):
		return stored{}, err
	}
	if err := old.Err(); err != nil {
		return stored{}, err
	}
	vals := old.Val()
	if len(vals) != 2 {
		return stored{}, fmt.Errorf("unexpected reply %v", vals)
	}
	status, _ := vals[0].(string)
	a, _ := vals[1].(string)
	n, _ := strconv.Atoi(a)
	return stored{Status: status, Attempts: n}, nil
}

var finishScript = redis.NewScript(luaLoad + `
local st = load() or {}
local attempt = tonumber(ARGV[3])
local entry = {attempt = attempt, ms = tonumber(ARGV[8]), status_code = tonumber(ARGV[5]), latency_ms = tonumber(ARGV[9]),
  error = ARGV[6], response = string.sub(ARGV[10], 1, tonumber(ARGV[13]))}
local function push(e)
  for k, v in pairs(e) do
    if v == '' then e[k] = nil end
  end
  if redis.call('LPUSH', KEYS[3], cjson.encode(e)) > tonumber(ARGV[12]) then redis.call('LTRIM', KEYS[3], 0, ARGV[12] - 1) end
  redis.call('EXPIRE', KEYS[3], ARGV[11])
end
if attempt >= (st.a or 0) and st.s ~= 'delivered' then
  -- The attempt this one follows moves to the history.
  if st.at then
    push({attempt = st.a, ms = st.at, status_code = st.c, latency_ms = st.l, error = st.e,
      response = string.sub(st.r or '', 1, tonumber(ARGV[13]))})
  end
  local resp = ARGV[10]
  if ARGV[4] == 'delivered' then resp = string.sub(resp, 1, tonumber(ARGV[14])) end
  save({s = ARGV[4], a = attempt, at = tonumber(ARGV[8]), c = tonumber(ARGV[5]), l = tonumber(ARGV[9]),
    e = ARGV[6], r = resp, n = tonumber(ARGV[7]), d = st.d}, ARGV[11])
else
  -- A late finish of an attempt already settled is only history.
  push(entry)
end
if redis.call('GET', KEYS[4]) == ARGV[2] then redis.call('DEL', KEYS[4]) end
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

// Finish records the outcome of an attempt begun with token and releases
// the lease. The attempt before it, if any, moves to the history. A
// delivered status is never overwritten.
func (s *Store) Finish(ctx context.Context, evt, sub, token string, r Result) error {
	next := int64(0)
	if !r.NextAttemptAt.IsZero() {
		next = r.NextAttemptAt.UnixMilli()
	}
	resp := r.Attempt.Response
	if len(resp) > responseFailed {
		resp = resp[:responseFailed]
	}
	err := s.runScript(ctx, finishScript,
		[]string{stateKey(evt), oldKey(evt, sub), histKey(evt, sub), leaseKey(evt, sub)},
		sub, token, r.Attempt.Attempt, r.Status, r.Attempt.StatusCode, r.Attempt.Error, next,
		r.Attempt.At.UnixMilli(), r.Attempt.LatencyMS, resp, int64(s.retention.Seconds()), HistoryLimit,
		responseEarlier, responseDelivered,
	).Err()
	if err != nil {
		return fmt.Errorf("finish delivery %s/%s: %w", evt, sub, err)
	}
	return nil
}

var scheduleScript = redis.NewScript(luaLoad + `
local st = load()
if st and st.s == 'delivered' then return 0 end
st = st or {s = 'pending'}
if st.s == 'dead' then st.s = 'retrying' end
st.n = tonumber(ARGV[2])
save(st, ARGV[3])
return 1
`)

var throttleScript = redis.NewScript(luaLoad + `
local st = load()
if st and st.s == 'delivered' then return 0 end
st = st or {}
st.s = 'throttled'
st.n = tonumber(ARGV[2])
save(st, ARGV[3])
return 1
`)

var waitScript = redis.NewScript(luaLoad + `
local st = load()
if st and (st.s == 'delivered' or (st.a or 0) >= tonumber(ARGV[4])) then return 0 end
st = st or {}
st.s = 'waiting'
st.b = ARGV[2]
st.n = nil
save(st, ARGV[3])
return 1
`)

// Wait records that attempt number attempt of an ordered delivery waits
// behind event behind, its key's head. A delivered one, or one whose
// attempt has been made, is left alone: it was queued, then came to the
// front and was attempted before this was recorded (another replica's
// work, or a record consumed again), and saying it waits would hide what
// it is.
func (s *Store) Wait(ctx context.Context, evt, sub, behind string, attempt int) error {
	err := s.runScript(ctx, waitScript, []string{stateKey(evt), oldKey(evt, sub)}, sub, behind, int64(s.retention.Seconds()), attempt).Err()
	if err != nil {
		return fmt.Errorf("record waiting delivery %s/%s: %w", evt, sub, err)
	}
	return nil
}

// Throttle records that a delivery waits, without spending an attempt,
// until at: throttled, with at as its next attempt. A delivered one is left
// alone.
func (s *Store) Throttle(ctx context.Context, evt, sub string, at time.Time) error {
	err := s.runScript(ctx, throttleScript, []string{stateKey(evt), oldKey(evt, sub)}, sub, at.UnixMilli(), int64(s.retention.Seconds())).Err()
	if err != nil {
		return fmt.Errorf("throttle delivery %s/%s: %w", evt, sub, err)
	}
	return nil
}

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
	errs := s.scheduleBatch(ctx, pairs, at)
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
			for j, err := range s.scheduleBatch(ctx, retry, at) {
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
func (s *Store) scheduleBatch(ctx context.Context, pairs [][2]string, at time.Time) []error {
	cmds := make([]*redis.Cmd, len(pairs))
	err := s.pipe.Do(ctx, func(p redis.Pipeliner) {
		for i, pr := range pairs {
			cmds[i] = p.EvalSha(ctx, scheduleScript.Hash(), []string{stateKey(pr[0]), oldKey(pr[0], pr[1])},
				pr[1], at.UnixMilli(), int64(s.retention.Seconds()))
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

var reopenScript = redis.NewScript(luaLoad + `
local st = load()
if not st or st.s ~= 'delivered' then return 0 end
st.s = 'retrying'
st.d = st.at
st.n = tonumber(ARGV[2])
save(st, ARGV[3])
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
			cmds[i] = reopenScript.Eval(ctx, p, []string{stateKey(pr[0]), oldKey(pr[0], pr[1])}, pr[1], at.UnixMilli(), int64(s.retention.Seconds()))
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

// Get returns the state of one delivery, history apart; ok is false when
// none is recorded.
func (s *Store) Get(ctx context.Context, evt, sub string) (State, bool, error) {
	all, err := s.states(ctx, evt, false)
	if err != nil {
		return State{}, false, fmt.Errorf("get delivery %s/%s: %w", evt, sub, err)
	}
	st, ok := all[sub]
	if !ok {
		return State{SubscriptionID: sub, Status: StatusPending}, false, nil
	}
	return st, true, nil
}

// ForEvent returns the state of every delivery of evt with its history, by
// subscription id.
func (s *Store) ForEvent(ctx context.Context, evt string) (map[string]State, error) {
	out, err := s.states(ctx, evt, true)
	if err != nil {
		return nil, fmt.Errorf("deliveries of %s: %w", evt, err)
	}
	return out, nil
}

// states reads every delivery of evt, of this version's layout and of
// earlier ones, with their histories when withHistory is set.
func (s *Store) states(ctx context.Context, evt string, withHistory bool) (map[string]State, error) {
	var cur *redis.MapStringStringCmd
	var oldSubs *redis.StringSliceCmd
	if _, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		cur = p.HGetAll(ctx, stateKey(evt))
		oldSubs = p.SMembers(ctx, oldIndexKey(evt))
		return nil
	}); err != nil {
		return nil, err
	}
	raw := map[string]stored{}
	for sub, v := range cur.Val() {
		var st stored
		if err := json.Unmarshal([]byte(v), &st); err != nil {
			return nil, fmt.Errorf("unreadable state of %s: %w", sub, err)
		}
		raw[sub] = st
	}
	var olds []string
	for _, sub := range oldSubs.Val() {
		if _, ok := raw[sub]; !ok {
			olds = append(olds, sub)
		}
	}
	oldStates := make([]*redis.MapStringStringCmd, len(olds))
	hists := map[string]*redis.StringSliceCmd{}
	if _, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, sub := range olds {
			oldStates[i] = p.HGetAll(ctx, oldKey(evt, sub))
		}
		if withHistory {
			for sub, st := range raw {
				if st.Attempts > 1 {
					hists[sub] = p.LRange(ctx, histKey(evt, sub), 0, HistoryLimit-1)
				}
			}
			for _, sub := range olds {
				hists[sub] = p.LRange(ctx, histKey(evt, sub), 0, HistoryLimit-1)
			}
		}
		return nil
	}); err != nil {
		return nil, err
	}
	for i, sub := range olds {
		if m := oldStates[i].Val(); len(m) > 0 {
			raw[sub] = fromOld(m)
		}
	}
	out := make(map[string]State, len(raw))
	for sub, st := range raw {
		state := st.state(sub)
		if withHistory {
			if a, ok := st.last(); ok {
				state.History = append(state.History, a)
			}
			if h := hists[sub]; h != nil {
				for _, v := range h.Val() {
					var e historyEntry
					if json.Unmarshal([]byte(v), &e) == nil {
						if e.MS != 0 {
							e.At = time.UnixMilli(e.MS)
						}
						if len(state.History) < HistoryLimit {
							state.History = append(state.History, e.Attempt)
						}
					}
				}
			}
		}
		out[sub] = state
	}
	return out, nil
}

// Statuses returns the status and attempts of each (event, subscription)
// pair, an empty status where none is recorded, in one pipelined round trip.
func (s *Store) Statuses(ctx context.Context, pairs [][2]string) ([]State, error) {
	curs := make([]*redis.StringCmd, len(pairs))
	olds := make([]*redis.SliceCmd, len(pairs))
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, pr := range pairs {
			curs[i] = p.HGet(ctx, stateKey(pr[0]), pr[1])
			olds[i] = p.HMGet(ctx, oldKey(pr[0], pr[1]), "status", "attempts")
		}
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("delivery statuses: %w", err)
	}
	out := make([]State, len(pairs))
	for i := range pairs {
		st, err := s.read(curs[i], olds[i])
		if err != nil {
			return nil, fmt.Errorf("delivery statuses: %w", err)
		}
		out[i] = State{SubscriptionID: pairs[i][1], Status: st.Status, Attempts: st.Attempts}
	}
	return out, nil
}

var parkScript = redis.NewScript(luaLoad + `
local st = load() or {s = 'pending'}
if st.s ~= 'delivered' then
  st.s = 'dead'
  st.e = ARGV[3]
  st.n = nil
  save(st, ARGV[4])
end
if redis.call('GET', KEYS[3]) == ARGV[2] then redis.call('DEL', KEYS[3]) end
return 1
`)

// Park marks a delivery begun with token dead without spending an attempt
// (its subscription was disabled), and releases the lease.
func (s *Store) Park(ctx context.Context, evt, sub, token, reason string, now time.Time) error {
	err := parkScript.Run(ctx, s.rdb, []string{stateKey(evt), oldKey(evt, sub), leaseKey(evt, sub)},
		sub, token, reason, int64(s.retention.Seconds())).Err()
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
