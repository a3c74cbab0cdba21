package consumer

import (
	"context"
	"sync"
	"testing"
	"time"
)

// Records of one key enqueue in the order their turns were handed out,
// whichever goroutine runs first; other keys do not wait; a finished key
// leaves nothing behind.
func TestKeyOrder(t *testing.T) {
	var o keyOrder
	var mu sync.Mutex
	var got []int
	tickets := make([]*ticket, 5)
	for i := range tickets {
		tickets[i] = o.next("cus_1")
	}
	other := o.next("cus_2")
	if !other.wait(context.Background()) {
		t.Fatal("another key waited")
	}
	other.done()
	var wg sync.WaitGroup
	for i := len(tickets) - 1; i >= 0; i-- { // started last first
		wg.Add(1)
		go func() {
			defer wg.Done()
			tk := tickets[i]
			if !tk.wait(context.Background()) {
				t.Error("wait ended early")
			}
			mu.Lock()
			got = append(got, i)
			mu.Unlock()
			tk.done()
			tk.done()
		}()
		time.Sleep(time.Millisecond)
	}
	wg.Wait()
	for i, v := range got {
		if v != i {
			t.Fatalf("enqueued in the order %v", got)
		}
	}
	if len(o.last) != 0 {
		t.Fatalf("finished keys left %d entries", len(o.last))
	}
	if o.next("") != nil {
		t.Fatal("a record without a key took a turn")
	}
	// A cancelled wait reports so.
	first, second := o.next("cus_3"), o.next("cus_3")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if second.wait(ctx) {
		t.Fatal("a wait behind an unfinished turn returned with ctx ended")
	}
	first.done()
	second.done()
}
