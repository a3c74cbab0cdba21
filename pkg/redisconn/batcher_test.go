package redisconn

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
)

func TestBatcherCoalescesAndKeepsResults(t *testing.T) {
	m := miniredis.RunT(t)
	c := redis.NewClient(&redis.Options{Addr: m.Addr()})
	defer c.Close()
	b := NewBatcher(c, 2, 64, time.Second)
	defer b.Close()
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, 500)
	for i := 0; i < 500; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var set *redis.StatusCmd
			var get *redis.StringCmd
			key := fmt.Sprintf("k%d", i)
			if err := b.Do(ctx, func(p redis.Pipeliner) {
				set = p.Set(ctx, key, i, 0)
				get = p.Get(ctx, key)
			}); err != nil {
				errs <- err
				return
			}
			if set.Err() != nil || get.Val() != fmt.Sprint(i) {
				errs <- fmt.Errorf("caller %d read %q (%v)", i, get.Val(), get.Err())
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	// A command error is the caller's own, not the batch's.
	var missing *redis.StringCmd
	if err := b.Do(ctx, func(p redis.Pipeliner) { missing = p.Get(ctx, "nope") }); err != nil {
		t.Fatalf("a redis.Nil made the batch fail: %v", err)
	}
	if missing.Err() != redis.Nil {
		t.Fatalf("missing key: %v", missing.Err())
	}
}

func TestBatcherReportsAnOutage(t *testing.T) {
	m := miniredis.RunT(t)
	c := redis.NewClient(&redis.Options{Addr: m.Addr(), DialTimeout: 200 * time.Millisecond, MaxRetries: -1})
	defer c.Close()
	b := NewBatcher(c, 1, 8, time.Second)
	defer b.Close()
	m.Close()
	var cmd *redis.StatusCmd
	err := b.Do(context.Background(), func(p redis.Pipeliner) { cmd = p.Set(context.Background(), "k", 1, 0) })
	if !IsUnavailable(err) || !IsUnavailable(cmd.Err()) {
		t.Fatalf("batch err %v, cmd err %v; want both to say Redis is unavailable", err, cmd.Err())
	}
}
