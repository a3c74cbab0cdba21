// Package eventstore keeps an index of the accepted events in Redis, for
// the events API and replay: per source, every event's id, its metadata and
// where it is on relay.events (partition and offset). It holds no payload:
// Kafka is the system of record for bodies, and the S3 archive keeps them
// after Kafka's retention (package payloads reads them from there).
//
// Keys:
//
//	relay:src:{src_…}:events   zset, all at score 0, so ordered by member and
//	                           therefore by time (ids are time-sortable). A
//	                           member is "<evt_…> <metadata JSON>": type,
//	                           content type, size, partition and offset.
//	                           The received time is the id's own.
//
// Events stored by earlier versions are members that are a bare id, with
// their metadata and payload at relay:evt:{evt_…} (a string of a metadata
// line then the payload, or a hash); they are read until they expire.
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

func indexKey(src string) string { return "relay:src:{" + src + "}:events" }

// legacyKey is where an earlier version stored an event's metadata and payload.
func legacyKey(id string) string { return "relay:evt:{" + id + "}" }

// Event is an indexed event.
type Event struct {
	ID          string
	SourceID    string
	Type        string
	ContentType string
	ReceivedAt  time.Time
	Size        int
	// OrderingKey is the event's ordering key; empty for none.
	OrderingKey string
	// Partition and Offset locate the event on relay.events; Located is
	// false for an event stored by an earlier version, which carries its
	// Body instead.
	Partition int32
	Offset    int64
	Located   bool
	// Forwarded and Body are set only for an event an earlier version
	// stored, from Redis (Get reads them; List never returns a Body).
	Forwarded []record.ForwardedHeader
	Body      []byte
}

// trimEvery is how often, at most, one process trims a source's index and
// renews its expiry. Doing it for every event cost Redis two of the five
// commands that store an event, for entries that expire days later.
const trimEvery = time.Second

// Store reads and writes the index.
type Store struct {
	rdb       redis.UniversalClient
	retention time.Duration
	// trimmed holds, per source id, when this process last trimmed its
	// index (*atomic.Int64, unix nanoseconds).
	trimmed sync.Map
}

// New returns a Store keeping events indexed for retention.
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

// Put indexes e under its source, trimming index entries past retention on
// the way (one round trip on a single server).
func (s *Store) Put(ctx context.Context, e Event) error {
	var cmds []redis.Cmder
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		cmds = s.Queue(ctx, p, e)
		return nil
	})
	if err == nil {
		for _, c := range cmds {
			if err = c.Err(); err != nil {
				break
			}
		}
	}
	if err != nil {
		return fmt.Errorf("index event %s: %w", e.ID, err)
	}
	return nil
}

// Queue adds Put's commands to a pipeline, so indexing the event shares a
// round trip with the request's other bookkeeping. It returns the commands,
// whose errors say whether the event was indexed.
//
// Index entries past retention are trimmed, and the index's own expiry
// renewed, at most every trimEvery per source and process: the index then
// lives at least retention after its newest entry, and holds expired
// entries for at most trimEvery longer than retention (List skips them).
func (s *Store) Queue(ctx context.Context, p redis.Pipeliner, e Event) []redis.Cmder {
	cmds := []redis.Cmder{p.ZAdd(ctx, indexKey(e.SourceID), redis.Z{Member: member(e)})}
	if s.trimDue(e.SourceID, e.ReceivedAt) {
		cutoff := ids.LowerBound(ids.Event, e.ReceivedAt.Add(-s.retention))
		cmds = append(cmds,
			p.ZRemRangeByLex(ctx, indexKey(e.SourceID), "-", "("+cutoff),
			p.Expire(ctx, indexKey(e.SourceID), s.retention+trimEvery))
	}
	return cmds
}

// meta is what an index member says of its event besides its id.
type meta struct {
	Type        string `json:"t"`
	ContentType string `json:"c,omitempty"`
	OrderingKey string `json:"k,omitempty"`
	Size        int    `json:"n"`
	Partition   int32  `json:"p"`
	Offset      int64  `json:"o"`
}

// member is e's index entry: its id, a space, its metadata. Every event id
// has the same length, so members sort by id.
func member(e Event) string {
	head, _ := json.Marshal(meta{Type: e.Type, ContentType: e.ContentType, OrderingKey: e.OrderingKey, Size: e.Size, Partition: e.Partition, Offset: e.Offset})
	return e.ID + " " + string(head)
}

// idOf is the event id an index member starts with.
func idOf(m string) string {
	id, _, _ := strings.Cut(m, " ")
	return id
}

// parseMember reads an index entry. legacy is true for a bare id: an event
// an earlier version stored, whose metadata is at its own key.
func parseMember(src, m string) (e Event, legacy bool, err error) {
	id, head, found := strings.Cut(m, " ")
	if !found {
		return Event{ID: id, SourceID: src}, true, nil
	}
	var md meta
	if err := json.Unmarshal([]byte(head), &md); err != nil {
		return Event{}, false, fmt.Errorf("event %s: unreadable index entry: %w", id, err)
	}
	at, _ := ids.Time(id)
	return Event{
		ID: id, SourceID: src, Type: md.Type, ContentType: md.ContentType, ReceivedAt: at, Size: md.Size, OrderingKey: md.OrderingKey,
		Partition: md.Partition, Offset: md.Offset, Located: true,
	}, false, nil
}

// Get returns an event of src; an event stored by an earlier version comes
// with its payload and forwarded headers.
func (s *Store) Get(ctx context.Context, src, id string) (Event, error) {
	ms, err := s.rdb.ZRangeByLex(ctx, indexKey(src), &redis.ZRangeBy{Min: "[" + id, Max: "(" + id + "!"}).Result()
	if err != nil {
		return Event{}, fmt.Errorf("get event %s: %w", id, err)
	}
	for _, m := range ms {
		e, legacy, err := parseMember(src, m)
		switch {
		case err != nil:
			return Event{}, err
		case e.ID != id:
			continue
		case !legacy:
			return e, nil
		}
		return s.getLegacy(ctx, src, id, true)
	}
	return Event{}, ErrNotFound
}

// Range returns, oldest first, at most limit of the events of src received
// from from up to (not including) to, after the event id after ("" to start
// at from), and no more of them than carry maxBytes of payload (at least
// one, whatever its size). next is the id to pass as after to continue, ""
// once the range is done. Events past retention are gone. Events stored by
// earlier versions come with their payloads.
func (s *Store) Range(ctx context.Context, src string, from, to time.Time, after string, limit, maxBytes int) ([]Event, string, error) {
	min := "[" + ids.LowerBound(ids.Event, from)
	if after != "" {
		// After every member of that id, whatever its metadata.
		min = "(" + after + "~"
	}
	ms, err := s.rdb.ZRangeByLex(ctx, indexKey(src), &redis.ZRangeBy{
		Min: min, Max: "(" + ids.LowerBound(ids.Event, to), Count: int64(limit) + 1,
	}).Result()
	if err != nil {
		return nil, "", fmt.Errorf("range events of %s: %w", src, err)
	}
	next := ""
	if len(ms) > limit {
		ms = ms[:limit]
		next = idOf(ms[limit-1])
	}
	var out []Event
	total := 0
	for _, m := range ms {
		e, legacy, err := parseMember(src, m)
		if err != nil {
			return nil, "", fmt.Errorf("range events of %s: %w", src, err)
		}
		if legacy {
			if e, err = s.getLegacy(ctx, src, e.ID, true); errors.Is(err, ErrNotFound) {
				continue // expired between index and value
			} else if err != nil {
				return nil, "", fmt.Errorf("range events of %s: %w", src, err)
			}
		}
		if total += e.Size; total > maxBytes && len(out) > 0 {
			// The page ends where the bytes do; the next starts after it.
			return out, out[len(out)-1].ID, nil
		}
		out = append(out, e)
	}
	return out, next, nil
}

// Filter narrows a listing of events: to one type, and to those received
// in [From, To); zero fields narrow nothing.
type Filter struct {
	Type     string
	From, To time.Time
}

// MaxScan bounds the index entries one filtered listing reads: a type that
// is rare among the source's events answers a short (even empty) page with
// a cursor to go on, rather than reading the whole index at once.
const MaxScan = 2000

// List returns a source's events newest first, limit at a time, without
// payloads, as f narrows them. The returned cursor continues the listing;
// "" means the end.
func (s *Store) List(ctx context.Context, src string, f Filter, cursor string, limit int) ([]Event, string, error) {
	hi, lo := "+", "-"
	if !f.To.IsZero() {
		hi = "(" + ids.LowerBound(ids.Event, f.To)
	}
	if !f.From.IsZero() {
		lo = "[" + ids.LowerBound(ids.Event, f.From)
	}
	if cursor != "" {
		last, err := base64.RawURLEncoding.DecodeString(cursor)
		if err != nil || !ids.Valid(ids.Event, string(last)) {
			return nil, "", ErrBadCursor
		}
		hi = "(" + string(last)
	}
	out := make([]Event, 0, limit)
	for scanned := 0; ; {
		batch := limit + 1
		if f.Type != "" {
			batch = min(max(batch, 200), MaxScan-scanned)
		}
		ms, err := s.rdb.ZRevRangeByLex(ctx, indexKey(src), &redis.ZRangeBy{Min: lo, Max: hi, Count: int64(batch)}).Result()
		if err != nil {
			return nil, "", fmt.Errorf("list events of %s: %w", src, err)
		}
		for _, m := range ms {
			e, legacy, err := parseMember(src, m)
			if err != nil {
				return nil, "", fmt.Errorf("list events of %s: %w", src, err)
			}
			if f.Type != "" && !legacy && e.Type != f.Type {
				continue
			}
			if legacy {
				e, err = s.getLegacy(ctx, src, e.ID, false)
				if errors.Is(err, ErrNotFound) {
					continue // expired between index and value
				}
				if err != nil {
					return nil, "", fmt.Errorf("list events of %s: %w", src, err)
				}
				if f.Type != "" && e.Type != f.Type {
					continue
				}
			}
			if len(out) == limit {
				// One more matches: the next page starts after this one.
				return out, pageCursor(out[limit-1].ID), nil
			}
			out = append(out, e)
		}
		scanned += len(ms)
		if len(ms) < batch {
			return out, "", nil // the index ends here
		}
		hi = "(" + idOf(ms[len(ms)-1])
		if scanned >= MaxScan {
			return out, pageCursor(idOf(ms[len(ms)-1])), nil
		}
	}
}

// pageCursor is the cursor of a listing that goes on after event id.
func pageCursor(id string) string { return base64.RawURLEncoding.EncodeToString([]byte(id)) }

// legacyMeta is the first line of an event an earlier version stored as a
// string: its metadata, then the payload.
type legacyMeta struct {
	SourceID    string      `json:"s"`
	Type        string      `json:"t"`
	ContentType string      `json:"c,omitempty"`
	ReceivedAt  int64       `json:"r"` // unix milliseconds
	Size        int         `json:"n"`
	Forwarded   [][2]string `json:"f,omitempty"`
}

// legacyFields are the fields of an event an even earlier version stored as
// a hash, payload last.
var legacyFields = []string{"source_id", "type", "content_type", "received_at", "size", "payload"}

// isWrongType reports a hash where a string was expected.
func isWrongType(err error) bool {
	return err != nil && strings.HasPrefix(err.Error(), "WRONGTYPE")
}

// getLegacy reads an event an earlier version stored at its own key, with
// its payload when payload is set.
func (s *Store) getLegacy(ctx context.Context, src, id string, payload bool) (Event, error) {
	raw, err := s.rdb.Get(ctx, legacyKey(id)).Bytes()
	switch {
	case errors.Is(err, redis.Nil):
		return Event{}, ErrNotFound
	case isWrongType(err):
		return s.getLegacyHash(ctx, src, id, payload)
	case err != nil:
		return Event{}, fmt.Errorf("get event %s: %w", id, err)
	}
	i := bytes.IndexByte(raw, '\n')
	var m legacyMeta
	if i < 0 || json.Unmarshal(raw[:i], &m) != nil {
		return Event{}, fmt.Errorf("event %s: unreadable metadata", id)
	}
	if m.SourceID != src {
		return Event{}, ErrNotFound
	}
	e := Event{ID: id, SourceID: m.SourceID, Type: m.Type, ContentType: m.ContentType, ReceivedAt: time.UnixMilli(m.ReceivedAt), Size: m.Size}
	for _, f := range m.Forwarded {
		e.Forwarded = append(e.Forwarded, record.ForwardedHeader{Name: f[0], Value: f[1]})
	}
	if payload {
		e.Body = raw[i+1:]
	}
	return e, nil
}

func (s *Store) getLegacyHash(ctx context.Context, src, id string, payload bool) (Event, error) {
	fields := legacyFields
	if !payload {
		fields = fields[:len(fields)-1]
	}
	v, err := s.rdb.HMGet(ctx, legacyKey(id), fields...).Result()
	if err != nil {
		return Event{}, fmt.Errorf("get event %s: %w", id, err)
	}
	str := func(x any) string { s, _ := x.(string); return s }
	if v[0] == nil || str(v[0]) != src {
		return Event{}, ErrNotFound
	}
	ms, _ := strconv.ParseInt(str(v[3]), 10, 64)
	size, _ := strconv.Atoi(str(v[4]))
	e := Event{ID: id, SourceID: str(v[0]), Type: str(v[1]), ContentType: str(v[2]), ReceivedAt: time.UnixMilli(ms), Size: size}
	if payload {
		e.Body = []byte(str(v[5]))
	}
	return e, nil
}
