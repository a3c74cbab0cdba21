// Package eventstore keeps each accepted event's metadata and payload in
// Redis for the retention period, with a per-source index, for the events API
// and single-event replay. Kafka stays the system of record; this is the
// queryable copy.
//
// Keys:
//
//	relay:evt:{evt_…}           hash: source, type, received time, content type, payload
//	relay:src:{src_…}:events    zset: event ids, all at score 0, so ordered by
//	                            id and therefore by time (ids are time-sortable)
package eventstore

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/relayhq/relay/pkg/ids"
)

// ErrNotFound means the event is unknown or past retention.
var ErrNotFound = errors.New("event not found")

// ErrBadCursor means a listing cursor was not made by List.
var ErrBadCursor = errors.New("invalid cursor")

func eventKey(id string) string  { return "relay:evt:{" + id + "}" }
func indexKey(src string) string { return "relay:src:{" + src + "}:events" }

// Event is a stored event.
type Event struct {
	ID          string
	SourceID    string
	Type        string
	ContentType string
	ReceivedAt  time.Time
	Size        int
	// Body is set by Get, not by List.
	Body []byte
}

// trimEvery is how often, at most, one process trims a source's index and
// renews its expiry. Doing it for every event cost Redis two of the five
// commands that store an event, for entries that expire days later.
const trimEvery = time.Second

// Store reads and writes events.
type Store struct {
	rdb       redis.UniversalClient
	retention time.Duration
	// trimmed holds, per source id, when this process last trimmed its
	// index (*atomic.Int64, unix nanoseconds).
	trimmed sync.Map
}

// New returns a Store keeping events for retention.
func New(rdb redis.UniversalClient, retention time.Duration) *Store {
	return &Store{rdb: rdb, retention: retention}
}

// trimDue reports whether the index of src should be trimmed now, and if so
// claims the trim for this caller.
func (s *Store) trimDue(src string, now time.Time) bool {
	v, _ := s.trimmed.LoadOrStore(src, new(atomic.Int64))
	last := v.(*atomic.Int64)
	prev := last.Load()
	if prev != 0 && now.UnixNano()-prev < int64(trimEvery) {
		return false
	}
	return last.CompareAndSwap(prev, now.UnixNano())
}

// Put stores e and indexes it under its source, trimming index entries past
// retention on the way (one round trip on a single server).
func (s *Store) Put(ctx context.Context, e Event) error {
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		s.Queue(ctx, p, e)
		return nil
	})
	if err != nil {
		return fmt.Errorf("store event %s: %w", e.ID, err)
	}
	return nil
}

// Queue adds Put's commands to a pipeline, so storing the event shares a
// round trip with the request's other bookkeeping. It returns the commands,
// whose errors say whether the event was stored.
//
// Index entries past retention are trimmed, and the index's own expiry
// renewed, at most every trimEvery per source and process: the index then
// lives at least retention after its newest entry, and holds expired
// entries for at most trimEvery longer than retention (List skips them).
func (s *Store) Queue(ctx context.Context, p redis.Pipeliner, e Event) []redis.Cmder {
	key := eventKey(e.ID)
	cmds := []redis.Cmder{
		p.HSet(ctx, key, "source_id", e.SourceID, "type", e.Type, "content_type", e.ContentType,
			"received_at", e.ReceivedAt.UnixMilli(), "size", len(e.Body), "payload", e.Body),
		p.Expire(ctx, key, s.retention),
		p.ZAdd(ctx, indexKey(e.SourceID), redis.Z{Member: e.ID}),
	}
	if s.trimDue(e.SourceID, e.ReceivedAt) {
		cutoff := ids.LowerBound(ids.Event, e.ReceivedAt.Add(-s.retention))
		cmds = append(cmds,
			p.ZRemRangeByLex(ctx, indexKey(e.SourceID), "-", "("+cutoff),
			p.Expire(ctx, indexKey(e.SourceID), s.retention+trimEvery))
	}
	return cmds
}

func fromHash(id string, m map[string]string) Event {
	ms, _ := strconv.ParseInt(m["received_at"], 10, 64)
	size, _ := strconv.Atoi(m["size"])
	return Event{
		ID: id, SourceID: m["source_id"], Type: m["type"], ContentType: m["content_type"],
		ReceivedAt: time.UnixMilli(ms), Size: size,
	}
}

// Get returns an event with its payload.
func (s *Store) Get(ctx context.Context, id string) (Event, error) {
	m, err := s.rdb.HGetAll(ctx, eventKey(id)).Result()
	if err != nil {
		return Event{}, fmt.Errorf("get event %s: %w", id, err)
	}
	if len(m) == 0 {
		return Event{}, ErrNotFound
	}
	e := fromHash(id, m)
	e.Body = []byte(m["payload"])
	return e, nil
}

// List returns a source's events newest first, limit at a time, without
// payloads. The returned cursor continues the listing; "" means the end.
func (s *Store) List(ctx context.Context, src, cursor string, limit int) ([]Event, string, error) {
	max := "+"
	if cursor != "" {
		last, err := base64.RawURLEncoding.DecodeString(cursor)
		if err != nil || !ids.Valid(ids.Event, string(last)) {
			return nil, "", ErrBadCursor
		}
		max = "(" + string(last)
	}
	evts, err := s.rdb.ZRevRangeByLex(ctx, indexKey(src), &redis.ZRangeBy{Min: "-", Max: max, Count: int64(limit) + 1}).Result()
	if err != nil {
		return nil, "", fmt.Errorf("list events of %s: %w", src, err)
	}
	next := ""
	if len(evts) > limit {
		evts = evts[:limit]
		next = base64.RawURLEncoding.EncodeToString([]byte(evts[limit-1]))
	}
	cmds := make([]*redis.SliceCmd, len(evts))
	_, err = s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, id := range evts {
			cmds[i] = p.HMGet(ctx, eventKey(id), "source_id", "type", "content_type", "received_at", "size")
		}
		return nil
	})
	if err != nil {
		return nil, "", fmt.Errorf("list events of %s: %w", src, err)
	}
	out := make([]Event, 0, len(evts))
	for i, c := range cmds {
		v := c.Val()
		if len(v) != 5 || v[0] == nil {
			continue // expired between index and hash
		}
		str := func(x any) string { s, _ := x.(string); return s }
		out = append(out, fromHash(evts[i], map[string]string{
			"source_id": str(v[0]), "type": str(v[1]), "content_type": str(v[2]), "received_at": str(v[3]), "size": str(v[4]),
		}))
	}
	return out, next, nil
}
