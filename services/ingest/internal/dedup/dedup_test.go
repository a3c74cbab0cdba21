package dedup

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/relayhq/relay/pkg/ids"
	"github.com/relayhq/relay/pkg/redisconn"
	"github.com/relayhq/relay/pkg/testenv"
)

func TestProtocol(t *testing.T) {
	testenv.RedisBackends(t, func(t *testing.T, rdb redis.UniversalClient) {
		ctx := context.Background()
		s := New(rdb, nil, 5*time.Second, 200*time.Millisecond)
		key := Key(ids.New(ids.Source), "idem:order-1")

		first, dup, err := s.Acquire(ctx, key, "evt_a")
		if err != nil || first == nil || dup != "" {
			t.Fatalf("first acquire = %v %q %v", first, dup, err)
		}
		// A concurrent duplicate waits, then gives up while the first is pending.
		if _, _, err := s.Acquire(ctx, key, "evt_b"); !errors.Is(err, ErrInFlight) {
			t.Fatalf("acquire while pending = %v, want ErrInFlight", err)
		}
		// A produce whose outcome is unknown holds its claim past the TTL.
		rdb.PExpire(ctx, key, time.Second)
		if err := s.Extend(ctx, first); err != nil {
			t.Fatal(err)
		}
		if ttl := rdb.PTTL(ctx, key).Val(); ttl <= time.Second {
			t.Fatalf("extended claim's TTL = %v, want up to PendingTTL", ttl)
		}
		// A failed produce releases the key: the retry may produce.
		if err := s.Release(ctx, first); err != nil {
			t.Fatal(err)
		}
		retry, _, err := s.Acquire(ctx, key, "evt_c")
		if err != nil || retry == nil {
			t.Fatalf("acquire after release = %v %v", retry, err)
		}
		if err := commit(ctx, rdb, s, retry); err != nil {
			t.Fatalf("commit = %v", err)
		}
		// A stale extend (the old claim) leaves the committed id's window alone.
		if err := s.Extend(ctx, first); err != nil {
			t.Fatal(err)
		}
		if ttl := rdb.PTTL(ctx, key).Val(); ttl <= s.PendingTTL {
			t.Fatalf("a stale extend cut the committed id's window to %v", ttl)
		}
		// From now on every duplicate gets the accepted id.
		c, dup, err := s.Acquire(ctx, key, "evt_d")
		if err != nil || c != nil || dup != "evt_c" {
			t.Fatalf("acquire after commit = %v %q %v", c, dup, err)
		}
		// A stale release (the old claim) must not delete the committed id.
		if err := s.Release(ctx, first); err != nil {
			t.Fatal(err)
		}
		if _, dup, _ := s.Acquire(ctx, key, "evt_e"); dup != "evt_c" {
			t.Fatalf("stale release deleted the committed id; got %q", dup)
		}
	})
}

func TestConcurrentDuplicateWaitsForOutcome(t *testing.T) {
	rdb, _ := testenv.MiniRedis(t)
	ctx := context.Background()
	s := New(rdb, redisconn.NewBatcher(rdb, 2, 16, time.Second), 5*time.Second, 2*time.Second)
	key := Key(ids.New(ids.Source), "body:x")
	first, _, err := s.Acquire(ctx, key, "evt_first")
	if err != nil || first == nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	results := make([]string, 10)
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, dup, err := s.Acquire(ctx, key, "evt_other")
			if err != nil || c != nil {
				results[i] = "error"
				return
			}
			results[i] = dup
		}()
	}
	time.Sleep(100 * time.Millisecond)
	if err := commit(ctx, rdb, s, first); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	for i, r := range results {
		if r != "evt_first" {
			t.Fatalf("waiter %d got %q, want the first event's id", i, r)
		}
	}
}

// commit runs QueueCommit in a pipeline of its own, for an hour's window.
func commit(ctx context.Context, rdb redis.UniversalClient, s *Store, c *Claim) error {
	var cmd *redis.StatusCmd
	if _, err := rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		cmd = s.QueueCommit(ctx, p, c, time.Hour)
		return nil
	}); err != nil {
		return err
	}
	return cmd.Err()
}
