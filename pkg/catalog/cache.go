package catalog

import (
	"context"
	"errors"
	"sync"
	"time"
)

// Cache keeps what was read from the catalog in memory for a short while, so
// that the hot paths (ingest's verification of each webhook, deliver's
// fan-out of each event) cost no Redis round trip in the steady state. A
// change made through the API is seen within TTL; one Relay made itself is
// seen at once after Forget. ErrNotFound is remembered like a value, so that
// a flood for an unknown id does not become a flood of Redis reads.
//
// It is the one cache over the catalog: ingest keeps sources in one, deliver
// subscriptions and each source's fan-out.
type Cache[V any] struct {
	cfg CacheConfig
	now func() time.Time

	mu sync.Mutex
	m  map[string]cached[V]
}

// CacheConfig tunes a Cache.
type CacheConfig struct {
	// TTL is how long an entry is used before it is read again.
	TTL time.Duration
	// Stale, when set, is how long a found entry may still be used when
	// reading it again fails with an error Outage accepts: a known source
	// keeps verifying through a Redis outage rather than answering 503.
	Stale  time.Duration
	Outage func(error) bool
	// Max bounds the entries (10,000 unless set); past it, an arbitrary one
	// makes room.
	Max int
}

type cached[V any] struct {
	v       V
	missing bool
	at      time.Time
}

// NewCache returns an empty Cache.
func NewCache[V any](cfg CacheConfig) *Cache[V] {
	if cfg.Max <= 0 {
		cfg.Max = 10000
	}
	return &Cache[V]{cfg: cfg, now: time.Now, m: map[string]cached[V]{}}
}

// Get returns key's value, reading it with load when the cached one (if
// any) is older than TTL. It returns ErrNotFound, from the cache or from
// load, for a key that does not exist.
func (c *Cache[V]) Get(ctx context.Context, key string, load func(context.Context) (V, error)) (V, error) {
	now := c.now()
	c.mu.Lock()
	e, ok := c.m[key]
	c.mu.Unlock()
	if ok && now.Sub(e.at) < c.cfg.TTL {
		if e.missing {
			var zero V
			return zero, ErrNotFound
		}
		return e.v, nil
	}
	v, err := load(ctx)
	switch {
	case err == nil:
		c.put(key, cached[V]{v: v, at: now})
	case errors.Is(err, ErrNotFound):
		c.put(key, cached[V]{missing: true, at: now})
	case ok && !e.missing && c.cfg.Outage != nil && now.Sub(e.at) < c.cfg.Stale && c.cfg.Outage(err):
		return e.v, nil
	}
	return v, err
}

func (c *Cache[V]) put(key string, e cached[V]) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.m[key]; !ok && len(c.m) >= c.cfg.Max {
		for k := range c.m {
			delete(c.m, k)
			break
		}
	}
	c.m[key] = e
}

// Forget drops key, so that the next Get reads it.
func (c *Cache[V]) Forget(key string) {
	c.mu.Lock()
	delete(c.m, key)
	c.mu.Unlock()
}

// ForgetWhere drops every entry whose value matches.
func (c *Cache[V]) ForgetWhere(match func(V) bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k, e := range c.m {
		if !e.missing && match(e.v) {
			delete(c.m, k)
		}
	}
}
