package redisconn

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// Pipeliner runs a caller's commands in a pipeline and returns once they
// have answered; each command carries its own result and error.
type Pipeliner interface {
	Do(ctx context.Context, queue func(p redis.Pipeliner)) error
}

// Direct runs each caller's commands in a pipeline of their own.
type Direct struct{ Client redis.UniversalClient }

var _ Pipeliner = Direct{}

// Do implements Pipeliner.
func (d Direct) Do(ctx context.Context, queue func(p redis.Pipeliner)) error {
	_, err := d.Client.Pipelined(ctx, func(p redis.Pipeliner) error { queue(p); return nil })
	if err != nil && !errors.Is(err, redis.Nil) && IsUnavailable(err) {
		return fmt.Errorf("redis pipeline: %w", err)
	}
	return nil // command errors are on the commands
}

// Batcher coalesces the commands of concurrent callers into shared
// pipelines: while one pipeline is on the wire, the next callers queue up,
// and they all go out together in the next one. Under load N requests' round
// trips become one, which saves Redis and the service most of their
// per-request syscalls; an idle caller waits for nothing. Commands of
// different callers never depend on each other (each is a script or a
// single-key command), so sharing a pipeline changes no result.
type Batcher struct {
	client  redis.UniversalClient
	in      chan *batchReq
	max     int
	timeout time.Duration
	wg      sync.WaitGroup
	stop    chan struct{}
	once    sync.Once
}

var _ Pipeliner = (*Batcher)(nil)

type batchReq struct {
	queue func(p redis.Pipeliner)
	done  chan error
}

// NewBatcher starts a Batcher with lanes pipelines in flight at once, each
// carrying at most maxBatch callers, each bounded by timeout. Close stops it.
func NewBatcher(client redis.UniversalClient, lanes, maxBatch int, timeout time.Duration) *Batcher {
	b := &Batcher{client: client, in: make(chan *batchReq, lanes*maxBatch), max: maxBatch, timeout: timeout, stop: make(chan struct{})}
	for i := 0; i < lanes; i++ {
		b.wg.Add(1)
		go b.lane()
	}
	return b
}

// Do implements Pipeliner.
func (b *Batcher) Do(ctx context.Context, queue func(p redis.Pipeliner)) error {
	r := &batchReq{queue: queue, done: make(chan error, 1)}
	select {
	case b.in <- r:
	case <-b.stop:
		return errors.New("redis batcher closed")
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-r.done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (b *Batcher) lane() {
	defer b.wg.Done()
	batch := make([]*batchReq, 0, b.max)
	for {
		batch = batch[:0]
		select {
		case r := <-b.in:
			batch = append(batch, r)
		case <-b.stop:
			return
		}
	more:
		for len(batch) < b.max {
			select {
			case r := <-b.in:
				batch = append(batch, r)
			default:
				break more
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), b.timeout)
		p := b.client.Pipeline()
		for _, r := range batch {
			r.queue(p)
		}
		_, err := p.Exec(ctx)
		cancel()
		// Command errors (redis.Nil, NOSCRIPT, a failed script) stay on the
		// commands; only a failed connection is everyone's error.
		if err != nil && (errors.Is(err, redis.Nil) || !IsUnavailable(err)) {
			err = nil
		}
		for _, r := range batch {
			r.done <- err
		}
	}
}

// Close stops the lanes after the pipelines in flight.
func (b *Batcher) Close() {
	b.once.Do(func() { close(b.stop) })
	b.wg.Wait()
}
