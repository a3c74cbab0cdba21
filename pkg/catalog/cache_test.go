package catalog

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestCache(t *testing.T) {
	ctx := context.Background()
	down := errors.New("redis down")
	clock := time.Unix(0, 0)
	c := NewCache[string](CacheConfig{TTL: 2 * time.Second, Stale: time.Minute, Outage: func(err error) bool { return errors.Is(err, down) }, Max: 2})
	c.now = func() time.Time { return clock }
	reads := 0
	load := func(v string, err error) func(context.Context) (string, error) {
		return func(context.Context) (string, error) { reads++; return v, err }
	}
	get := func(key string, l func(context.Context) (string, error)) (string, error) { return c.Get(ctx, key, l) }

	if v, err := get("a", load("A", nil)); v != "A" || err != nil {
		t.Fatalf("first read: %q, %v", v, err)
	}
	if v, _ := get("a", load("changed", nil)); v != "A" || reads != 1 {
		t.Fatalf("within the TTL: %q after %d reads, want the cached A after 1", v, reads)
	}
	clock = clock.Add(3 * time.Second)
	if v, _ := get("a", load("A2", nil)); v != "A2" || reads != 2 {
		t.Fatalf("past the TTL: %q after %d reads", v, reads)
	}

	// Not found is remembered too.
	if _, err := get("gone", load("", ErrNotFound)); !errors.Is(err, ErrNotFound) {
		t.Fatalf("missing: %v", err)
	}
	if _, err := get("gone", load("back", nil)); !errors.Is(err, ErrNotFound) || reads != 3 {
		t.Fatalf("missing, within the TTL: %v after %d reads", err, reads)
	}

	// An outage serves the stale copy for up to Stale; other errors pass.
	clock = clock.Add(10 * time.Second)
	if v, err := get("a", load("", down)); v != "A2" || err != nil {
		t.Fatalf("outage: %q, %v; want the stale A2", v, err)
	}
	if _, err := get("a", load("", errors.New("corrupt"))); err == nil {
		t.Fatal("a non-outage error served the stale copy")
	}
	clock = clock.Add(2 * time.Minute)
	if _, err := get("a", load("", down)); !errors.Is(err, down) {
		t.Fatalf("outage past Stale: %v, want the error", err)
	}

	// Forget and ForgetWhere make the next Get read again.
	_, _ = get("b", load("B", nil))
	c.Forget("b")
	if v, _ := get("b", load("B2", nil)); v != "B2" {
		t.Fatalf("after Forget: %q", v)
	}
	c.ForgetWhere(func(v string) bool { return v == "B2" })
	if v, _ := get("b", load("B3", nil)); v != "B3" {
		t.Fatalf("after ForgetWhere: %q", v)
	}

	// Max bounds the entries.
	for _, k := range []string{"x", "y", "z"} {
		_, _ = get(k, load(k, nil))
	}
	if n := len(c.m); n > 2 {
		t.Fatalf("%d entries, want at most 2", n)
	}
}
