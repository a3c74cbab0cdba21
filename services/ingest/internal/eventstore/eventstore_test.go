package eventstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/relayhq/relay/pkg/ids"
	"github.com/relayhq/relay/pkg/record"
	"github.com/relayhq/relay/pkg/testenv"
)

func TestPutGetList(t *testing.T) {
	testenv.RedisBackends(t, func(t *testing.T, rdb redis.UniversalClient) {
		ctx := context.Background()
		s := New(rdb, time.Hour)
		src := ids.New(ids.Source)
		base := time.Now().Add(-time.Minute)
		var made []string
		for i := 0; i < 5; i++ {
			at := base.Add(time.Duration(i) * time.Second)
			e := Event{ID: ids.NewAt(ids.Event, at), SourceID: src, Type: "t", ContentType: "application/json", ReceivedAt: at, Body: []byte(`{"n":1}`),
				Forwarded: []record.ForwardedHeader{{Name: "X-Github-Event", Value: "push"}, {Name: "X-Github-Delivery", Value: "d-\n1"}}}
			if err := s.Put(ctx, e); err != nil {
				t.Fatal(err)
			}
			made = append(made, e.ID)
		}
		got, err := s.Get(ctx, made[2])
		if err != nil || string(got.Body) != `{"n":1}` || got.SourceID != src || got.Size != 7 ||
			len(got.Forwarded) != 2 || got.Forwarded[1] != (record.ForwardedHeader{Name: "X-Github-Delivery", Value: "d-\n1"}) {
			t.Fatalf("Get = %+v, %v", got, err)
		}
		if _, err := s.Get(ctx, ids.New(ids.Event)); !errors.Is(err, ErrNotFound) {
			t.Fatalf("Get of unknown = %v", err)
		}
		var listed []string
		cursor := ""
		for {
			page, next, err := s.List(ctx, src, cursor, 2)
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range page {
				if e.Body != nil {
					t.Fatal("List returned a payload")
				}
				if len(e.Forwarded) != 2 || e.Forwarded[0].Value != "push" {
					t.Fatalf("List lost the forwarded headers: %v", e.Forwarded)
				}
				listed = append(listed, e.ID)
			}
			if next == "" {
				break
			}
			cursor = next
		}
		if len(listed) != 5 {
			t.Fatalf("listed %d events", len(listed))
		}
		for i := range listed {
			if listed[i] != made[4-i] {
				t.Fatalf("not newest first: %v", listed)
			}
		}
		if _, _, err := s.List(ctx, src, "not-a-cursor", 2); !errors.Is(err, ErrBadCursor) {
			t.Fatalf("bad cursor = %v", err)
		}
	})
}

func TestIndexTrimsPastRetention(t *testing.T) {
	rdb, _ := testenv.MiniRedis(t)
	ctx := context.Background()
	s := New(rdb, time.Hour)
	src := ids.New(ids.Source)
	old := time.Now().Add(-2 * time.Hour)
	_ = s.Put(ctx, Event{ID: ids.NewAt(ids.Event, old), SourceID: src, ReceivedAt: old})
	_ = s.Put(ctx, Event{ID: ids.New(ids.Event), SourceID: src, ReceivedAt: time.Now()})
	n, err := rdb.ZCard(ctx, indexKey(src)).Result()
	if err != nil || n != 1 {
		t.Fatalf("index holds %d entries after a write, want 1", n)
	}
}

func TestIndexTrimIsAmortised(t *testing.T) {
	rdb, _ := testenv.MiniRedis(t)
	ctx := context.Background()
	s := New(rdb, time.Hour)
	src := ids.New(ids.Source)
	t0 := time.Now()
	put := func(at time.Time) {
		t.Helper()
		if err := s.Put(ctx, Event{ID: ids.NewAt(ids.Event, at), SourceID: src, ReceivedAt: at}); err != nil {
			t.Fatal(err)
		}
	}
	put(t0) // the first event of a source trims and sets the index's expiry
	if ttl := rdb.TTL(ctx, indexKey(src)).Val(); ttl <= time.Hour {
		t.Fatalf("index expires in %v, want more than the retention", ttl)
	}
	stale := ids.NewAt(ids.Event, t0.Add(-2*time.Hour))
	rdb.ZAdd(ctx, indexKey(src), redis.Z{Member: stale})
	put(t0.Add(100 * time.Millisecond))
	if n := rdb.ZCard(ctx, indexKey(src)).Val(); n != 3 {
		t.Fatalf("index holds %d entries, want 3: no trim within %v of the last", n, trimEvery)
	}
	put(t0.Add(trimEvery + 100*time.Millisecond))
	members := rdb.ZRange(ctx, indexKey(src), 0, -1).Val()
	if len(members) != 3 || slices.Contains(members, stale) {
		t.Fatalf("index after %v = %v, want the three events without the stale one", trimEvery, members)
	}
}

// Events are stored as one string with the retention as its expiry; events
// an earlier version stored as hashes are still read; a metadata line longer
// than List reads at once is read whole.
func TestStorageFormats(t *testing.T) {
	testenv.RedisBackends(t, func(t *testing.T, rdb redis.UniversalClient) {
		ctx := context.Background()
		s := New(rdb, time.Hour)
		src := ids.New(ids.Source)
		at := time.Now().Add(-time.Minute).Truncate(time.Millisecond)

		current := Event{ID: ids.NewAt(ids.Event, at), SourceID: src, Type: "a.b", ContentType: "application/json", ReceivedAt: at, Body: []byte("{\"x\":\"line\\nbreak\"}\n")}
		if err := s.Put(ctx, current); err != nil {
			t.Fatal(err)
		}
		if typ := rdb.Type(ctx, eventKey(current.ID)).Val(); typ != "string" {
			t.Fatalf("stored as a %s", typ)
		}
		if ttl := rdb.TTL(ctx, eventKey(current.ID)).Val(); ttl <= 59*time.Minute || ttl > time.Hour {
			t.Fatalf("expires in %v, want the retention", ttl)
		}

		legacyAt := at.Add(time.Second)
		legacy := ids.NewAt(ids.Event, legacyAt)
		rdb.HSet(ctx, eventKey(legacy), "source_id", src, "type", "old.kind", "content_type", "text/plain",
			"received_at", legacyAt.UnixMilli(), "size", 3, "payload", "old")
		rdb.ZAdd(ctx, indexKey(src), redis.Z{Member: legacy})

		longAt := at.Add(2 * time.Second)
		long := Event{ID: ids.NewAt(ids.Event, longAt), SourceID: src, Type: "c", ContentType: "text/plain; x=" + strings.Repeat("y", 2*headRange), ReceivedAt: longAt, Body: []byte("z")}
		if err := s.Put(ctx, long); err != nil {
			t.Fatal(err)
		}

		for _, want := range []Event{current, {ID: legacy, SourceID: src, Type: "old.kind", ContentType: "text/plain", ReceivedAt: legacyAt, Size: 3, Body: []byte("old")}, long} {
			want.Size = len(want.Body)
			got, err := s.Get(ctx, want.ID)
			if err != nil || got.SourceID != want.SourceID || got.Type != want.Type || got.ContentType != want.ContentType ||
				!got.ReceivedAt.Equal(want.ReceivedAt) || got.Size != want.Size || string(got.Body) != string(want.Body) {
				t.Fatalf("Get(%s) = %+v, %v; want %+v", want.ID, got, err, want)
			}
		}
		page, _, err := s.List(ctx, src, "", 10)
		if err != nil {
			t.Fatal(err)
		}
		if len(page) != 3 || page[0].ID != long.ID || page[1].ID != legacy || page[2].ID != current.ID {
			t.Fatalf("List = %+v", page)
		}
		if page[0].ContentType != long.ContentType || page[1].Type != "old.kind" || page[2].Size != len(current.Body) {
			t.Fatalf("List metadata = %+v", page)
		}
		for _, e := range page {
			if e.Body != nil {
				t.Fatalf("List returned the payload of %s", e.ID)
			}
		}
	})
}

// Range walks a source's events of a time window oldest first, with their
// payloads, a page at a time.
func TestRange(t *testing.T) {
	testenv.RedisBackends(t, func(t *testing.T, rdb redis.UniversalClient) {
		ctx := context.Background()
		s := New(rdb, time.Hour)
		src, base := ids.New(ids.Source), time.UnixMilli(time.Now().Add(-time.Minute).UnixMilli())
		made := putEverySecond(t, s, src, base, 6, func(i int) []byte { return []byte(fmt.Sprintf(`{"n":%d}`, i)) })
		// One whose value expired before its index entry was trimmed.
		if err := rdb.Del(ctx, eventKey(made[3])).Err(); err != nil {
			t.Fatal(err)
		}
		var got []string
		after := ""
		for pages := 0; ; pages++ {
			page, next, err := s.Range(ctx, src, base.Add(time.Second), base.Add(5*time.Second), after, 2, 1<<30)
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range page {
				if want := fmt.Sprintf(`{"n":%d}`, slices.Index(made, e.ID)); string(e.Body) != want || e.Type != "t" {
					t.Fatalf("event %s: body %s type %q, want %s", e.ID, e.Body, e.Type, want)
				}
				got = append(got, e.ID)
			}
			if next == "" {
				break
			}
			if pages > 5 {
				t.Fatal("the range does not end")
			}
			after = next
		}
		// [1s, 5s): events 1, 2 and 4 (3 expired), oldest first.
		if want := []string{made[1], made[2], made[4]}; !slices.Equal(got, want) {
			t.Fatalf("range = %v, want %v", got, want)
		}
	})
}

// A page of a range ends where its payloads would pass the byte budget,
// never before its first event, and the pages still cover every event once.
func TestRangeBoundedByBytes(t *testing.T) {
	testenv.RedisBackends(t, func(t *testing.T, rdb redis.UniversalClient) {
		ctx := context.Background()
		s := New(rdb, time.Hour)
		src, base := ids.New(ids.Source), time.UnixMilli(time.Now().Add(-time.Minute).UnixMilli())
		made := putEverySecond(t, s, src, base, 10, func(i int) []byte {
			size := 10 << 10
			if i == 5 {
				size = 100 << 10 // larger than the budget on its own
			}
			return bytes.Repeat([]byte{'a' + byte(i)}, size)
		})
		var pages [][]string
		after := ""
		for {
			page, next, err := s.Range(ctx, src, base, base.Add(time.Minute), after, 200, 35<<10)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, e := range page {
				if want := 'a' + byte(slices.Index(made, e.ID)); e.Body[0] != want {
					t.Fatalf("event %s has another's body", e.ID)
				}
				got = append(got, e.ID)
			}
			pages = append(pages, got)
			if next == "" {
				break
			}
			if len(pages) > 10 {
				t.Fatal("the range does not end")
			}
			after = next
		}
		want := [][]string{made[0:3], made[3:5], made[5:6], made[6:9], made[9:10]}
		if !slices.EqualFunc(pages, want, slices.Equal[[]string]) {
			t.Fatalf("pages = %v, want %v", pages, want)
		}
	})
}

// putEverySecond stores n events of src of type t, one a second from base,
// event i with body(i), and returns their ids in order.
func putEverySecond(t *testing.T, s *Store, src string, base time.Time, n int, body func(i int) []byte) []string {
	t.Helper()
	var made []string
	for i := 0; i < n; i++ {
		at := base.Add(time.Duration(i) * time.Second)
		e := Event{ID: ids.NewAt(ids.Event, at), SourceID: src, Type: "t", ReceivedAt: at, Body: body(i)}
		if err := s.Put(context.Background(), e); err != nil {
			t.Fatal(err)
		}
		made = append(made, e.ID)
	}
	return made
}
