package eventstore

import (
	"context"
	"errors"
	"slices"
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
		base := time.Now().Add(-time.Minute)
		var made []string
		for i := 0; i < 5; i++ {
			at := base.Add(time.Duration(i) * time.Second)
			e := Event{ID: ids.NewAt(ids.Event, at), SourceID: src, Type: "t", ContentType: "application/json", ReceivedAt: at, Body: []byte(`{"n":1}`)}
			if err := s.Put(ctx, e); err != nil {
				t.Fatal(err)
			}
			made = append(made, e.ID)
		}
		got, err := s.Get(ctx, made[2])
		if err != nil || string(got.Body) != `{"n":1}` || got.SourceID != src || got.Size != 7 {
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
