// Package dedup implements ingest's duplicate detection: a pending marker set
// with SET NX before producing, replaced by the event id once the broker has
// acknowledged, deleted (compare-and-delete) when producing fails. A sender's
// retry therefore either finds the accepted event's id or, when the first
// attempt failed, is free to produce; nothing is half-accepted.
//
// Keys: relay:dedup:{src_…}:<sha256 of the dedup key>, holding
// "pending:<evt_…>" while producing, then "<evt_…>" for the source's dedup window.
package dedup

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/relayhq/relay/pkg/redisconn"
)

const pendingPrefix = "pending:"

// ErrInFlight means another request with the same dedup key is still being
// produced and did not finish within the wait; the caller answers 503 with
// Retry-After so the sender tries again.
var ErrInFlight = errors.New("a request with the same dedup key is in flight")

// Store runs the dedup protocol against Redis.
type Store struct {
	rdb redis.UniversalClient
	// pipe carries Acquire's script, so that under load many requests'
	// claims share one round trip.
	pipe redisconn.Pipeliner
	// PendingTTL bounds how long a pending marker can outlive a crashed
	// ingest replica; it must exceed the produce timeout.
	PendingTTL time.Duration
	// Wait bounds how long a concurrent duplicate waits for the first
	// request's outcome.
	Wait time.Duration
	// Poll is how often a waiting duplicate looks again.
	Poll time.Duration
}

// New returns a Store whose claims go through pipe (nil: a pipeline each).
func New(rdb redis.UniversalClient, pipe redisconn.Pipeliner, pendingTTL, wait time.Duration) *Store {
	if pipe == nil {
		pipe = redisconn.Direct{Client: rdb}
	}
	return &Store{rdb: rdb, pipe: pipe, PendingTTL: pendingTTL, Wait: wait, Poll: 25 * time.Millisecond}
}

// acquire tries once to set the pending marker, with SET NX GET (Redis 7.0
// and later): a plain command, so it costs Redis less than a script on the
// hot path. It reports whether the marker was set and, when not, what the key
// holds instead.
func (s *Store) acquire(ctx context.Context, key, evt string) (bool, string, error) {
	var cmd *redis.StatusCmd
	if err := s.pipe.Do(ctx, func(p redis.Pipeliner) {
		cmd = p.SetArgs(ctx, key, pendingPrefix+evt, redis.SetArgs{Mode: "NX", Get: true, TTL: s.PendingTTL})
	}); err != nil {
		return false, "", err
	}
	cur, err := cmd.Result()
	switch {
	case errors.Is(err, redis.Nil):
		return true, "", nil // there was no key: ours now
	case err != nil:
		return false, "", err
	}
	return false, cur, nil
}

// Key returns the Redis key for a source's dedup key.
func Key(src, dedupKey string) string {
	sum := sha256.Sum256([]byte(dedupKey))
	return "relay:dedup:{" + src + "}:" + hex.EncodeToString(sum[:])
}

// Claim is a held pending marker.
type Claim struct {
	key, evt string
}

// Acquire claims key for a new event evt. When the key already names an
// accepted event it returns that event's id and a nil Claim: a duplicate.
// When another request holds the key it waits up to s.Wait for the outcome
// and returns ErrInFlight if there is none.
func (s *Store) Acquire(ctx context.Context, key, evt string) (*Claim, string, error) {
	deadline := time.Now().Add(s.Wait)
	for {
		won, cur, err := s.acquire(ctx, key, evt)
		if err != nil {
			return nil, "", fmt.Errorf("dedup acquire: %w", err)
		}
		if won {
			return &Claim{key: key, evt: evt}, "", nil
		}
		if !strings.HasPrefix(cur, pendingPrefix) {
			return nil, cur, nil
		}
		// Pending elsewhere: wait, then look again.
		if time.Now().After(deadline) {
			return nil, "", ErrInFlight
		}
		t := time.NewTimer(s.Poll)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, "", fmt.Errorf("dedup acquire: %w", ctx.Err())
		case <-t.C:
		}
	}
}

// QueueCommit adds to a pipeline the command that names the accepted event
// under the key for window, replacing the pending marker, so the commit
// shares a round trip with the event's other bookkeeping. It is a plain
// SET: the event is accepted whatever the key holds now. Were the marker to
// have expired (a produce outlasting PendingTTL) and another request claimed
// the key meanwhile, both events are accepted either way, and a
// compare-and-set would only leave the key without the id of one that was.
func (s *Store) QueueCommit(ctx context.Context, p redis.Pipeliner, c *Claim, window time.Duration) *redis.StatusCmd {
	return p.Set(ctx, c.key, c.evt, window)
}

var extendScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
`)

// Extend keeps the pending marker for another PendingTTL if it is still
// ours: a produce whose outcome is not yet known must go on holding the key,
// or a retry accepted meanwhile would be a second event for it.
func (s *Store) Extend(ctx context.Context, c *Claim) error {
	if err := extendScript.Run(ctx, s.rdb, []string{c.key}, pendingPrefix+c.evt, s.PendingTTL.Milliseconds()).Err(); err != nil {
		return fmt.Errorf("dedup extend: %w", err)
	}
	return nil
}

var releaseScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
`)

// Release deletes the pending marker if it is still ours, after a failed
// produce, so the sender's retry can be accepted.
func (s *Store) Release(ctx context.Context, c *Claim) error {
	if err := releaseScript.Run(ctx, s.rdb, []string{c.key}, pendingPrefix+c.evt).Err(); err != nil {
		return fmt.Errorf("dedup release: %w", err)
	}
	return nil
}
