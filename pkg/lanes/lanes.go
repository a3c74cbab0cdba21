// Package lanes keeps the per-key queues of ordered subscriptions
// (docs/ordering.md): one lane per (subscription, ordering key), whose head
// is the one event of the key being delivered and whose queue holds, in
// order, the events waiting behind it, each by the coordinates of its
// record on Kafka. Redis holds no payload: about 60 bytes per waiting event.
//
// Keys, hash-tagged by subscription so that every script touches one slot:
//
//	relay:lane:{sub_…}:<key>     hash: head (event id), since (unix ms)
//	relay:lane:{sub_…}:<key>:q   list of "evt_…|topic|partition|offset|attempt"
package lanes

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// TTL is how long a lane outlives its last change. A lane changes whenever
// an event joins it or its head settles, so only a lane whose subscription
// was deleted, or one blocked (on_failure "block") and left alone that
// long, is forgotten.
const TTL = 7 * 24 * time.Hour

// dedupScan bounds how far back from its tail Enqueue looks for the same
// entry: a record consumed again after a crash is among the last ones
// queued, and a long queue must not make every enqueue cost its length.
const dedupScan = 1000

func laneKey(sub, key string) string  { return "relay:lane:{" + sub + "}:" + key }
func queueKey(sub, key string) string { return laneKey(sub, key) + ":q" }

// Entry is an event in a lane: its id, where its record is (on
// relay.events for a first attempt, relay.deliveries for a replay or a
// redrive), and the attempt its delivery makes.
type Entry struct {
	Event     string
	Topic     string
	Partition int32
	Offset    int64
	Attempt   int
}

// String is the entry as the queue holds it.
func (e Entry) String() string {
	return e.Event + "|" + e.Topic + "|" + strconv.Itoa(int(e.Partition)) + "|" + strconv.FormatInt(e.Offset, 10) + "|" + strconv.Itoa(e.Attempt)
}

// ParseEntry reads an entry as the queue holds it.
func ParseEntry(s string) (Entry, error) {
	f := strings.Split(s, "|")
	if len(f) != 5 || f[0] == "" || f[1] == "" {
		return Entry{}, fmt.Errorf("lane entry %q: want evt|topic|partition|offset|attempt", s)
	}
	p, err1 := strconv.ParseInt(f[2], 10, 32)
	o, err2 := strconv.ParseInt(f[3], 10, 64)
	a, err3 := strconv.Atoi(f[4])
	if err := errors.Join(err1, err2, err3); err != nil || p < 0 || o < 0 || a < 1 {
		return Entry{}, fmt.Errorf("lane entry %q: want evt|topic|partition|offset|attempt", s)
	}
	return Entry{Event: f[0], Topic: f[1], Partition: int32(p), Offset: o, Attempt: a}, nil
}

// Position is where Enqueue put an event.
type Position struct {
	// Head: the event is its key's head, to be attempted now.
	Head bool
	// Behind is the key's head (the event itself when Head), and Since
	// when it became the head.
	Behind string
	Since  time.Time
}

// Store runs the lane scripts.
type Store struct {
	rdb redis.UniversalClient
}

// New returns a Store on rdb.
func New(rdb redis.UniversalClient) *Store { return &Store{rdb: rdb} }

// enqueue: an empty lane takes the event as its head; a lane whose head it
// is answers so (a record consumed again); otherwise the entry joins the
// queue unless it is among its last dedupScan entries already.
// KEYS: lane, queue. ARGV: event, entry, now (ms), ttl (ms), dedupScan.
var enqueueScript = redis.NewScript(`
local head = redis.call('HGET', KEYS[1], 'head')
if not head then
  redis.call('HSET', KEYS[1], 'head', ARGV[1], 'since', ARGV[3])
  redis.call('PEXPIRE', KEYS[1], ARGV[4])
  return {1, ARGV[1], ARGV[3]}
end
local since = redis.call('HGET', KEYS[1], 'since') or '0'
if head == ARGV[1] then return {1, head, since} end
if not redis.call('LPOS', KEYS[2], ARGV[2], 'RANK', -1, 'MAXLEN', ARGV[5]) then
  redis.call('RPUSH', KEYS[2], ARGV[2])
end
redis.call('PEXPIRE', KEYS[1], ARGV[4])
redis.call('PEXPIRE', KEYS[2], ARGV[4])
return {0, head, since}
`)

// Enqueue puts event e in the lane of (sub, key): at its head when the
// lane is empty (or e is its head already), else at the end of its queue,
// once however often it is asked.
func (s *Store) Enqueue(ctx context.Context, sub, key string, e Entry, now time.Time) (Position, error) {
	v, err := enqueueScript.Run(ctx, s.rdb, []string{laneKey(sub, key), queueKey(sub, key)},
		e.Event, e.String(), now.UnixMilli(), TTL.Milliseconds(), dedupScan).Slice()
	if err != nil {
		return Position{}, fmt.Errorf("enqueue %s in lane %s/%q: %w", e.Event, sub, key, err)
	}
	if len(v) != 3 {
		return Position{}, fmt.Errorf("enqueue %s in lane %s/%q: unexpected answer %v", e.Event, sub, key, v)
	}
	head, _ := v[0].(int64)
	behind, _ := v[1].(string)
	since, _ := strconv.ParseInt(fmt.Sprint(v[2]), 10, 64)
	return Position{Head: head == 1, Behind: behind, Since: time.UnixMilli(since)}, nil
}

// step moves a lane past its settled head evt, in two moves so that the
// next head's record exists before the lane says it is the head:
//   - evt is not the head: it was moved past already (0), unless it is the
//     queue's first, whose record its settled predecessor produced and had
//     not yet promoted: it is promoted now, and moved past as below;
//   - the queue is empty: the lane is deleted (1);
//   - the queue's first is promoted, the entry the caller has produced the
//     record of (1);
//   - else the queue's first is answered (2, entry): the caller produces
//     its record and asks again with it as promoted.
//
// KEYS: lane, queue. ARGV: event, promoted entry or "", now (ms), ttl (ms).
var stepScript = redis.NewScript(`
local function event(entry) return string.sub(entry, 1, string.find(entry, '|', 1, true) - 1) end
local head = redis.call('HGET', KEYS[1], 'head')
if head ~= ARGV[1] then
  local first = redis.call('LINDEX', KEYS[2], 0)
  if not first or event(first) ~= ARGV[1] then return {0} end
  redis.call('LPOP', KEYS[2])
  redis.call('HSET', KEYS[1], 'head', ARGV[1], 'since', ARGV[3])
end
local nxt = redis.call('LINDEX', KEYS[2], 0)
if not nxt then
  redis.call('DEL', KEYS[1])
  return {1}
end
if nxt == ARGV[2] then
  redis.call('LPOP', KEYS[2])
  redis.call('HSET', KEYS[1], 'head', event(nxt), 'since', ARGV[3])
  redis.call('PEXPIRE', KEYS[1], ARGV[4])
  redis.call('PEXPIRE', KEYS[2], ARGV[4])
  return {1}
end
return {2, nxt}
`)

// step runs stepScript: next is the entry whose record the caller must
// produce before asking again with it as promoted; none when the lane has
// moved on.
func (s *Store) step(ctx context.Context, sub, key, evt, promoted string, now time.Time) (next string, err error) {
	v, err := stepScript.Run(ctx, s.rdb, []string{laneKey(sub, key), queueKey(sub, key)},
		evt, promoted, now.UnixMilli(), TTL.Milliseconds()).Slice()
	if err != nil {
		return "", fmt.Errorf("advance lane %s/%q past %s: %w", sub, key, evt, err)
	}
	if len(v) == 2 {
		next, _ = v[1].(string)
	}
	return next, nil
}

// Head returns the head of the lane of (sub, key) and when it became the
// head; ok is false for an empty lane.
func (s *Store) Head(ctx context.Context, sub, key string) (evt string, since time.Time, ok bool, err error) {
	v, err := s.rdb.HMGet(ctx, laneKey(sub, key), "head", "since").Result()
	if err != nil {
		return "", time.Time{}, false, fmt.Errorf("read lane %s/%q: %w", sub, key, err)
	}
	evt, _ = v[0].(string)
	ms, _ := v[1].(string)
	n, _ := strconv.ParseInt(ms, 10, 64)
	return evt, time.UnixMilli(n), evt != "", nil
}

// Waiting returns how many events wait in the lane of (sub, key).
func (s *Store) Waiting(ctx context.Context, sub, key string) (int64, error) {
	n, err := s.rdb.LLen(ctx, queueKey(sub, key)).Result()
	if err != nil {
		return 0, fmt.Errorf("read lane %s/%q: %w", sub, key, err)
	}
	return n, nil
}
