package eventstore

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/relayhq/relay/pkg/ids"
	"github.com/relayhq/relay/pkg/testenv"
)

func TestPutGetList(t *testing.T) {
	testenv.RedisBackends(t, func(t *testing.T, rdb redis.UniversalClient) {
		ctx := context.Background()
		s := New(rdb, time.Hour)
		src := ids.New(ids.Source)
		base := time.UnixMilli(time.Now().Add(-time.Minute).UnixMilli())
		var made []Event
		for i := 0; i < 5; i++ {
			at := base.Add(time.Duration(i) * time.Second)
			e := Event{ID: ids.NewAt(ids.Event, at), SourceID: src, Type: "t", ContentType: "application/json", ReceivedAt: at,
				Size: 7 + i, Partition: int32(i % 3), Offset: int64(100 + i), Located: true}
			if err := s.Put(ctx, e); err != nil {
				t.Fatal(err)
			}
			made = append(made, e)
		}
		got, err := s.Get(ctx, src, made[2].ID)
		if err != nil || !sameEvent(got, made[2]) {
			t.Fatalf("Get = %+v, %v; want %+v", got, err, made[2])
		}
		if _, err := s.Get(ctx, src, ids.New(ids.Event)); !errors.Is(err, ErrNotFound) {
			t.Fatalf("Get of unknown = %v", err)
		}
		if _, err := s.Get(ctx, ids.New(ids.Source), made[2].ID); !errors.Is(err, ErrNotFound) {
			t.Fatalf("Get through another source = %v", err)
		}
		var listed []Event
		cursor := ""
		for {
			page, next, err := s.List(ctx, src, Filter{}, cursor, 2)
			if err != nil {
				t.Fatal(err)
			}
			listed = append(listed, page...)
			if next == "" {
				break
			}
			cursor = next
		}
		if len(listed) != 5 {
			t.Fatalf("listed %d events", len(listed))
		}
		for i := range listed {
			if !sameEvent(listed[i], made[4-i]) {
				t.Fatalf("listed %+v, want %+v (newest first)", listed[i], made[4-i])
			}
		}
		if _, _, err := s.List(ctx, src, Filter{}, "not-a-cursor", 2); !errors.Is(err, ErrBadCursor) {
			t.Fatalf("bad cursor = %v", err)
		}
	})
}

// TestListFilters: a type and a time range narrow the listing, which pages
// through them; a rare type among many events answers short pages with a
// cursor rather than reading the whole index at once.
func TestListFilters(t *testing.T) {
	testenv.RedisBackends(t, func(t *testing.T, rdb redis.UniversalClient) {
		ctx := context.Background()
		s := New(rdb, time.Hour)
		src := ids.New(ids.Source)
		base := time.UnixMilli(time.Now().Add(-time.Hour).UnixMilli())
		n := 2*MaxScan + 500
		var want []string // the "rare" events, newest first
		for i := 0; i < n; i++ {
			at := base.Add(time.Duration(i) * time.Millisecond)
			typ := "common"
			if i%2100 == 3 {
				typ = "rare"
				want = append([]string{ids.NewAt(ids.Event, at)}, want...)
				if err := s.Put(ctx, Event{ID: want[0], SourceID: src, Type: typ, ReceivedAt: at, Located: true}); err != nil {
					t.Fatal(err)
				}
				continue
			}
			if err := s.Put(ctx, Event{ID: ids.NewAt(ids.Event, at), SourceID: src, Type: typ, ReceivedAt: at, Located: true}); err != nil {
				t.Fatal(err)
			}
		}
		var got []string
		pages := 0
		for cursor := ""; ; {
			page, next, err := s.List(ctx, src, Filter{Type: "rare"}, cursor, 2)
			if err != nil {
				t.Fatal(err)
			}
			pages++
			for _, e := range page {
				if e.Type != "rare" {
					t.Fatalf("listed a %q event", e.Type)
				}
				got = append(got, e.ID)
			}
			if next == "" {
				break
			}
			cursor = next
		}
		if !slices.Equal(got, want) || pages != 3 {
			t.Fatalf("listed %v in %d pages, want %v", got, pages, want)
		}
		// [base+1000ms, base+1005ms): five events, newest first.
		page, next, err := s.List(ctx, src, Filter{From: base.Add(time.Second), To: base.Add(1005 * time.Millisecond)}, "", 10)
		if err != nil || next != "" || len(page) != 5 || !page[0].ReceivedAt.Equal(base.Add(1004*time.Millisecond)) || !page[4].ReceivedAt.Equal(base.Add(time.Second)) {
			t.Fatalf("time range: %d events, next %q, %v", len(page), next, err)
		}
	})
}

func sameEvent(a, b Event) bool {
	return a.ID == b.ID && a.SourceID == b.SourceID && a.Type == b.Type && a.ContentType == b.ContentType &&
		a.ReceivedAt.Equal(b.ReceivedAt) && a.Size == b.Size && a.Partition == b.Partition && a.Offset == b.Offset &&
		a.Located == b.Located && string(a.Body) == string(b.Body)
}

// The index holds small entries and no payload: an entry is the id, the
// metadata and the coordinates, whatever the body's size.
func TestIndexHoldsNoPayload(t *testing.T) {
	rdb, _ := testenv.MiniRedis(t)
	ctx := context.Background()
	s := New(rdb, time.Hour)
	src := ids.New(ids.Source)
	e := Event{ID: ids.New(ids.Event), SourceID: src, Type: "order.created", ContentType: "application/json", ReceivedAt: time.Now(),
		Size: 1 << 20, Partition: 2, Offset: 1 << 40, Located: true}
	if err := s.Put(ctx, e); err != nil {
		t.Fatal(err)
	}
	keys := rdb.Keys(ctx, "*").Val()
	if len(keys) != 1 || keys[0] != indexKey(src) {
		t.Fatalf("keys %v, want the source's index alone", keys)
	}
	ms := rdb.ZRange(ctx, indexKey(src), 0, -1).Val()
	if len(ms) != 1 || len(ms[0]) > 150 {
		t.Fatalf("index entry %q (%d bytes)", ms, len(ms[0]))
	}
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

// Events an earlier version stored with their payloads, as a string (a
// metadata line, then the payload) or as a hash, keep being served, with
// their payloads, beside the new entries, until they expire.
func TestEarlierVersionsEvents(t *testing.T) {
	testenv.RedisBackends(t, func(t *testing.T, rdb redis.UniversalClient) {
		ctx := context.Background()
		s := New(rdb, time.Hour)
		src := ids.New(ids.Source)
		at := time.UnixMilli(time.Now().Add(-time.Minute).UnixMilli())

		asString := Event{ID: ids.NewAt(ids.Event, at), SourceID: src, Type: "a.b", ContentType: "application/json", ReceivedAt: at, Body: []byte("{\"x\":\"line\\nbreak\"}\n")}
		asString.Size = len(asString.Body)
		rdb.Set(ctx, legacyKey(asString.ID), `{"s":"`+src+`","t":"a.b","c":"application/json","r":`+itoa(at.UnixMilli())+`,"n":`+itoa(int64(asString.Size))+`,"f":[["X-Github-Event","push"]]}`+"\n"+string(asString.Body), time.Hour)
		rdb.ZAdd(ctx, indexKey(src), redis.Z{Member: asString.ID})

		hashAt := at.Add(time.Second)
		asHash := Event{ID: ids.NewAt(ids.Event, hashAt), SourceID: src, Type: "old.kind", ContentType: "text/plain", ReceivedAt: hashAt, Size: 3, Body: []byte("old")}
		rdb.HSet(ctx, legacyKey(asHash.ID), "source_id", src, "type", "old.kind", "content_type", "text/plain",
			"received_at", hashAt.UnixMilli(), "size", 3, "payload", "old")
		rdb.ZAdd(ctx, indexKey(src), redis.Z{Member: asHash.ID})

		newAt := at.Add(2 * time.Second)
		current := Event{ID: ids.NewAt(ids.Event, newAt), SourceID: src, Type: "c", ContentType: "text/plain", ReceivedAt: newAt, Size: 1, Partition: 1, Offset: 9, Located: true}
		if err := s.Put(ctx, current); err != nil {
			t.Fatal(err)
		}

		for _, want := range []Event{asString, asHash, current} {
			got, err := s.Get(ctx, src, want.ID)
			got.Forwarded = nil
			if err != nil || !sameEvent(got, want) {
				t.Fatalf("Get(%s) = %+v, %v; want %+v", want.ID, got, err, want)
			}
		}
		if got, _ := s.Get(ctx, src, asString.ID); len(got.Forwarded) != 1 || got.Forwarded[0].Value != "push" {
			t.Fatalf("forwarded headers of an earlier version's event: %v", got.Forwarded)
		}
		page, _, err := s.List(ctx, src, Filter{}, "", 10)
		if err != nil {
			t.Fatal(err)
		}
		if len(page) != 3 || page[0].ID != current.ID || page[1].ID != asHash.ID || page[2].ID != asString.ID {
			t.Fatalf("List = %+v", page)
		}
		for _, e := range page {
			if e.Body != nil {
				t.Fatalf("List returned the payload of %s", e.ID)
			}
		}
		rng, next, err := s.Range(ctx, src, at, newAt.Add(time.Second), "", 10, 1<<20)
		if err != nil || next != "" || len(rng) != 3 || string(rng[0].Body) != string(asString.Body) || string(rng[1].Body) != "old" || !rng[2].Located {
			t.Fatalf("Range = %+v, %q, %v", rng, next, err)
		}
		// One whose value expired before its index entry was trimmed.
		rdb.Del(ctx, legacyKey(asHash.ID))
		if _, err := s.Get(ctx, src, asHash.ID); !errors.Is(err, ErrNotFound) {
			t.Fatalf("Get of an expired earlier event = %v", err)
		}
		if page, _, _ := s.List(ctx, src, Filter{}, "", 10); len(page) != 2 {
			t.Fatalf("List with one expired = %+v", page)
		}
	})
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// Range walks a source's events of a time window oldest first, a page at a
// time.
func TestRange(t *testing.T) {
	testenv.RedisBackends(t, func(t *testing.T, rdb redis.UniversalClient) {
		ctx := context.Background()
		s := New(rdb, time.Hour)
		src, base := ids.New(ids.Source), time.UnixMilli(time.Now().Add(-time.Minute).UnixMilli())
		made := putEverySecond(t, s, src, base, 6, func(int) int { return 10 })
		var got []string
		after := ""
		for pages := 0; ; pages++ {
			page, next, err := s.Range(ctx, src, base.Add(time.Second), base.Add(5*time.Second), after, 2, 1<<30)
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range page {
				if i := slices.Index(made, e.ID); e.Offset != int64(i) || !e.Located || e.Type != "t" {
					t.Fatalf("event %s: %+v", e.ID, e)
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
		// [1s, 5s): events 1 to 4, oldest first.
		if want := made[1:5]; !slices.Equal(got, want) {
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
		made := putEverySecond(t, s, src, base, 10, func(i int) int {
			if i == 5 {
				return 100 << 10 // larger than the budget on its own
			}
			return 10 << 10
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

// putEverySecond indexes n events of src of type t, one a second from base,
// event i of size(i) bytes at offset i, and returns their ids in order.
func putEverySecond(t *testing.T, s *Store, src string, base time.Time, n int, size func(i int) int) []string {
	t.Helper()
	var made []string
	for i := 0; i < n; i++ {
		at := base.Add(time.Duration(i) * time.Second)
		e := Event{ID: ids.NewAt(ids.Event, at), SourceID: src, Type: "t", ReceivedAt: at, Size: size(i), Offset: int64(i), Located: true}
		if err := s.Put(context.Background(), e); err != nil {
			t.Fatal(err)
		}
		made = append(made, e.ID)
	}
	return made
}
