package consumer

import (
	"context"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/relayhq/relay/pkg/logging"
	"github.com/relayhq/relay/services/deliver/internal/offsets"
)

// A group starts no record whose bytes would take the records being worked
// on past the budget, whatever room the record count leaves; a record larger
// than the whole budget starts once nothing else is held.
func TestStartWaitsForBytes(t *testing.T) {
	b := NewBudget(3000)
	g := newGroup("g", nil, logging.Discard(), b, Options{MaxInFlight: 100})
	st := &partState{}
	g.parts[offsets.Partition{Topic: "t", Partition: 0}] = st
	offset := int64(0)
	rec := func(size int) *kgo.Record {
		offset++
		return &kgo.Record{Topic: "t", Partition: 0, Offset: offset, Value: make([]byte, size)}
	}
	startWithin := func(r *kgo.Record, d time.Duration) (work, bool) {
		ctx, cancel := context.WithTimeout(context.Background(), d)
		defer cancel()
		return g.start(ctx, r, st)
	}
	var held []work
	for i := 0; i < 3; i++ {
		wk, ok := startWithin(rec(1000), time.Second)
		if !ok {
			t.Fatalf("record %d of 1,000 bytes refused within a 3,000-byte budget", i)
		}
		held = append(held, wk)
	}
	if b.Held() != 3000 {
		t.Fatalf("held %d bytes, want 3000", b.Held())
	}
	if _, ok := startWithin(rec(1000), 100*time.Millisecond); ok {
		t.Fatal("a fourth record started beyond the budget")
	}
	g.finish(held[0], false)
	fourth, ok := startWithin(rec(1000), time.Second)
	if !ok {
		t.Fatal("a record did not start once bytes were let go")
	}
	g.finish(held[1], false)
	g.finish(held[2], false)
	// 1,000 bytes are still held: a record larger than the budget waits
	// for them, then starts charged the whole budget.
	big := rec(10_000)
	if _, ok := startWithin(big, 100*time.Millisecond); ok {
		t.Fatal("a record larger than the budget started beside another")
	}
	g.finish(fourth, false)
	wk, ok := startWithin(big, time.Second)
	if !ok || wk.weight != 3000 || b.Held() != 3000 {
		t.Fatalf("the large record alone: started %v, charged %d, held %d", ok, wk.weight, b.Held())
	}
	g.finish(wk, false)
	if b.Held() != 0 {
		t.Fatalf("%d bytes held after every record finished", b.Held())
	}
}
