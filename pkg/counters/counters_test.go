package counters

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/relayhq/relay/pkg/ids"
	"github.com/relayhq/relay/pkg/testenv"
)

func TestApplyIsExactlyOnce(t *testing.T) {
	testenv.RedisBackends(t, func(t *testing.T, rdb redis.UniversalClient) {
		ctx := context.Background()
		s := New(rdb)
		src := ids.New(ids.Source)
		day1 := time.Date(2026, 11, 28, 23, 59, 0, 0, time.UTC)
		day2 := day1.Add(2 * time.Minute)
		batch := []Record{
			{Offset: 10, Type: "payment.succeeded", ReceivedAt: day1},
			{Offset: 11, Type: "payment.failed", ReceivedAt: day1},
			{Offset: 12, Type: "payment.succeeded", ReceivedAt: day2},
		}
		now := day2
		if n, err := s.Apply(ctx, src, 0, batch, now); err != nil || n != 3 {
			t.Fatalf("first apply = %d, %v", n, err)
		}
		// The same batch again (a redelivery) and an overlapping one count only what is new.
		if n, err := s.Apply(ctx, src, 0, batch, now); err != nil || n != 0 {
			t.Fatalf("redelivered batch counted %d, %v", n, err)
		}
		overlap := append(batch[1:], Record{Offset: 13, Type: "payment.succeeded", ReceivedAt: day2})
		if n, err := s.Apply(ctx, src, 0, overlap, now); err != nil || n != 1 {
			t.Fatalf("overlapping batch counted %d, %v", n, err)
		}
		// Another partition has its own offsets.
		if n, err := s.Apply(ctx, src, 1, []Record{{Offset: 0, Type: "payment.failed", ReceivedAt: day2}}, now); err != nil || n != 1 {
			t.Fatalf("partition 1 counted %d, %v", n, err)
		}
		got, err := s.Read(ctx, src, "", "")
		if err != nil {
			t.Fatal(err)
		}
		want := []DayCount{
			{"2026-11-29", "payment.failed", 1},
			{"2026-11-29", "payment.succeeded", 2},
			{"2026-11-28", "payment.failed", 1},
			{"2026-11-28", "payment.succeeded", 1},
		}
		if len(got) != len(want) {
			t.Fatalf("Read = %v", got)
		}
		for i := range want {
			if got[i] != want[i] {
				t.Fatalf("Read[%d] = %v, want %v", i, got[i], want[i])
			}
		}
		only, _ := s.Read(ctx, src, "2026-11-28", "2026-11-28")
		if len(only) != 2 || only[0].Day != "2026-11-28" {
			t.Fatalf("Read of one day = %v", only)
		}
	})
}

// A count that is not an integer (only a hand edit makes one: HINCRBY
// refuses them) is an error naming it, not a count of 0.
func TestReadRefusesADamagedCount(t *testing.T) {
	rdb, _ := testenv.MiniRedis(t)
	ctx := context.Background()
	s := New(rdb)
	src := ids.New(ids.Source)
	day := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	if _, err := s.Apply(ctx, src, 0, []Record{{Offset: 1, Type: "order.paid", ReceivedAt: day}}, day); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Read(ctx, src, "", ""); err != nil || len(got) != 1 || got[0].Count != 1 {
		t.Fatalf("Read = %+v, %v", got, err)
	}
	rdb.HSet(ctx, prefix(src)+"2026-11-28", "order.paid", "lots")
	if _, err := s.Read(ctx, src, "", ""); err == nil || !strings.Contains(err.Error(), `order.paid of 2026-11-28`) || !strings.Contains(err.Error(), `"lots"`) {
		t.Fatalf("Read of a damaged count: err = %v", err)
	}
}
