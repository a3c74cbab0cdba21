// Package eventstore keeps each accepted event's metadata and payload in
// Redis for the retention period, with a per-source index, for the events API
// and single-event replay. Kafka stays the system of record; this is the
// queryable copy.
//
// Keys:
//
//	relay:evt:{evt_…}           string: a JSON line of metadata (source, type,
//	                            content type, received time, size), then the
//	                            payload byte for byte; one SET with the
//	                            retention as its expiry. (Events stored by
//	                            earlier versions are hashes; they are still read.)
//	relay:src:{src_…}:events    zset: event ids, all at score 0, so ordered by
//	                            id and therefore by time (ids are time-sortable)
package eventstore

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/relayhq/relay/pkg/ids"
	"github.com/relayhq/relay/pkg/record"
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
	// Forwarded are the request headers its source forwards to subscribers.
	Forwarded []record.ForwardedHeader
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
	cmds := []redis.Cmder{
		p.Set(ctx, eventKey(e.ID), encode(e), s.retention),
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

// meta is the first line of a stored event.
type meta struct {
	SourceID    string `json:"s"`
	Type        string `json:"t"`
	ContentType string `json:"c,omitempty"`
	ReceivedAt  int64  `json:"r"` // unix milliseconds
	Size        int    `json:"n"`
	// Forwarded headers as [name, value] pairs, in order.
	Forwarded [][2]string `json:"f,omitempty"`
}

// encode lays an event out as it is stored: its metadata as one JSON line
// (JSON escapes newlines inside strings, so the first newline ends it),
// then the payload. One string costs Redis less memory and work than a
// six-field hash, and the metadata alone is a GETRANGE of its start.
func encode(e Event) []byte {
	m := meta{SourceID: e.SourceID, Type: e.Type, ContentType: e.ContentType, ReceivedAt: e.ReceivedAt.UnixMilli(), Size: len(e.Body)}
	for _, f := range e.Forwarded {
		m.Forwarded = append(m.Forwarded, [2]string{f.Name, f.Value})
	}
	head, _ := json.Marshal(m)
	out := make([]byte, 0, len(head)+1+len(e.Body))
	out = append(out, head...)
	out = append(out, '\n')
	return append(out, e.Body...)
}

// decode reads a stored event. complete is false when raw holds only the
// start of the value and the metadata line does not end within it.
func decode(id string, raw []byte) (e Event, complete bool, err error) {
	i := bytes.IndexByte(raw, '\n')
	if i < 0 {
		return Event{}, false, nil
	}
	var m meta
	if err := json.Unmarshal(raw[:i], &m); err != nil {
		return Event{}, true, fmt.Errorf("event %s: unreadable metadata: %w", id, err)
	}
	e = Event{ID: id, SourceID: m.SourceID, Type: m.Type, ContentType: m.ContentType, ReceivedAt: time.UnixMilli(m.ReceivedAt), Size: m.Size}
	for _, f := range m.Forwarded {
		e.Forwarded = append(e.Forwarded, record.ForwardedHeader{Name: f[0], Value: f[1]})
	}
	return e, true, nil
}

// headRange is how much of a stored event List reads for its metadata; a
// longer metadata line (an absurd content type) is read whole instead.
const headRange = 1024

// isWrongType reports a hash where a string was expected: an event stored
// by an earlier version of Relay.
func isWrongType(err error) bool {
	return err != nil && strings.HasPrefix(err.Error(), "WRONGTYPE")
}

// legacyFields are the fields of an event stored as a hash, payload last.
var legacyFields = []string{"source_id", "type", "content_type", "received_at", "size", "payload"}

func fromHash(id string, v []any) Event {
	str := func(x any) string { s, _ := x.(string); return s }
	ms, _ := strconv.ParseInt(str(v[3]), 10, 64)
	size, _ := strconv.Atoi(str(v[4]))
	return Event{ID: id, SourceID: str(v[0]), Type: str(v[1]), ContentType: str(v[2]), ReceivedAt: time.UnixMilli(ms), Size: size}
}

// Get returns an event with its payload.
func (s *Store) Get(ctx context.Context, id string) (Event, error) {
	raw, err := s.rdb.Get(ctx, eventKey(id)).Bytes()
	switch {
	case errors.Is(err, redis.Nil):
		return Event{}, ErrNotFound
	case isWrongType(err):
		return s.getLegacy(ctx, id, true)
	case err != nil:
		return Event{}, fmt.Errorf("get event %s: %w", id, err)
	}
	return fromValue(id, raw)
}

// fromValue decodes a whole stored value, payload included.
func fromValue(id string, raw []byte) (Event, error) {
	e, complete, err := decode(id, raw)
	if err == nil && !complete {
		err = fmt.Errorf("event %s: no metadata line", id)
	}
	if err != nil {
		return Event{}, err
	}
	e.Body = raw[bytes.IndexByte(raw, '\n')+1:]
	return e, nil
}

// getLegacy reads an event stored as a hash; List leaves the payload out.
func (s *Store) getLegacy(ctx context.Context, id string, payload bool) (Event, error) {
	fields := legacyFields
	if !payload {
		fields = fields[:len(fields)-1]
	}
	v, err := s.rdb.HMGet(ctx, eventKey(id), fields...).Result()
	if err != nil {
		return Event{}, fmt.Errorf("get event %s: %w", id, err)
	}
	if v[0] == nil {
		return Event{}, ErrNotFound
	}
	e := fromHash(id, v)
	if payload {
		if p, ok := v[5].(string); ok {
			e.Body = []byte(p)
		}
	}
	return e, nil
}

// Range returns, oldest first and with their payloads, at most limit of the
// events of src received from from up to (not including) to, after the
// event id after ("" to start at from), and no more of them than fit in
// maxBytes as stored (at least one, whatever its size). next is the id to
// pass as after to continue, "" once the range is done. Events past
// retention are gone.
func (s *Store) Range(ctx context.Context, src string, from, to time.Time, after string, limit, maxBytes int) ([]Event, string, error) {
	min := "[" + ids.LowerBound(ids.Event, from)
	if after != "" {
		min = "(" + after
	}
	evts, err := s.rdb.ZRangeByLex(ctx, indexKey(src), &redis.ZRangeBy{
		Min: min, Max: "(" + ids.LowerBound(ids.Event, to), Count: int64(limit) + 1,
	}).Result()
	if err != nil {
		return nil, "", fmt.Errorf("range events of %s: %w", src, err)
	}
	// Only the page's own events are sized, not the one read to know
	// whether another page follows.
	page := evts
	if len(page) > limit {
		page = page[:limit]
	}
	n, err := s.fitting(ctx, page, maxBytes)
	if err != nil {
		return nil, "", fmt.Errorf("range events of %s: %w", src, err)
	}
	if n < len(page) {
		limit = n // the page ends where the bytes do; the next starts after it
	}
	next := ""
	if len(evts) > limit {
		evts = evts[:limit]
		next = evts[limit-1]
	}
	vals := make([]*redis.StringCmd, len(evts))
	if _, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, id := range evts {
			vals[i] = p.Get(ctx, eventKey(id))
		}
		return nil
	}); err != nil && !errors.Is(err, redis.Nil) && !isWrongType(err) {
		return nil, "", fmt.Errorf("range events of %s: %w", src, err)
	}
	out := make([]Event, 0, len(evts))
	for i, c := range vals {
		id := evts[i]
		raw, err := c.Bytes()
		var e Event
		switch {
		case errors.Is(err, redis.Nil):
			continue // expired between index and value
		case isWrongType(err):
			e, err = s.getLegacy(ctx, id, true)
			if errors.Is(err, ErrNotFound) {
				continue
			}
		case err == nil:
			e, err = fromValue(id, raw)
		}
		if err != nil {
			return nil, "", fmt.Errorf("range events of %s: %w", src, err)
		}
		out = append(out, e)
	}
	return out, next, nil
}

// fitting returns how many of evts, from the first, fit in maxBytes as
// stored, at least one: their sizes are read first (STRLEN, cheap), so that
// a page of large payloads is never read whole into memory. An event stored
// in the older hash form counts as empty here; its payload is bounded by
// RELAY_MAX_BODY_BYTES like any other.
func (s *Store) fitting(ctx context.Context, evts []string, maxBytes int) (int, error) {
	if len(evts) == 0 {
		return 0, nil
	}
	sizes := make([]*redis.IntCmd, len(evts))
	if _, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, id := range evts {
			sizes[i] = p.StrLen(ctx, eventKey(id))
		}
		return nil
	}); err != nil && !isWrongType(err) {
		return 0, err
	}
	total := 0
	for i, c := range sizes {
		total += int(c.Val()) // 0 for a value gone or of the older form
		if total > maxBytes && i > 0 {
			return i, nil
		}
	}
	return len(evts), nil
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
	heads := make([]*redis.StringCmd, len(evts))
	if _, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, id := range evts {
			heads[i] = p.GetRange(ctx, eventKey(id), 0, headRange-1)
		}
		return nil
	}); err != nil && !errors.Is(err, redis.Nil) && !isWrongType(err) {
		return nil, "", fmt.Errorf("list events of %s: %w", src, err)
	}
	out := make([]Event, 0, len(evts))
	for i, c := range heads {
		id := evts[i]
		raw, err := c.Bytes()
		switch {
		case isWrongType(err):
			e, err := s.getLegacy(ctx, id, false)
			if errors.Is(err, ErrNotFound) {
				continue
			}
			if err != nil {
				return nil, "", fmt.Errorf("list events of %s: %w", src, err)
			}
			out = append(out, e)
			continue
		case err != nil && !errors.Is(err, redis.Nil):
			return nil, "", fmt.Errorf("list events of %s: %w", src, err)
		case len(raw) == 0:
			continue // expired between index and value
		}
		e, complete, err := decode(id, raw)
		if err == nil && !complete {
			e, err = s.Get(ctx, id)
			e.Body = nil
		}
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, "", fmt.Errorf("list events of %s: %w", src, err)
		}
		out = append(out, e)
	}
	return out, next, nil
}
