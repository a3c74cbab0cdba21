package dlq

import (
	"testing"

	"github.com/relayhq/relay/pkg/record"
)

// A redrive batch is full at redriveBatchRecords small deliveries, and after
// as many large ones as fill redriveBatchBytes, whichever comes first; a
// reset batch starts counting again.
func TestRedriveBatchBounds(t *testing.T) {
	fill := func(b *redriveBatch, body []byte) int {
		for n := 1; n <= 10*redriveBatchRecords; n++ {
			if b.add(record.Delivery{Event: record.Event{Body: body}}, int32(n%3), int64(n)) {
				return n
			}
		}
		t.Fatal("the batch never filled")
		return 0
	}
	var b redriveBatch
	if n := fill(&b, make([]byte, 100)); n != redriveBatchRecords {
		t.Fatalf("100-byte payloads: full after %d deliveries; want %d", n, redriveBatchRecords)
	}
	if len(b.offs) != len(b.ds) || b.offs[4] != [2]int64{2, 5} {
		t.Fatalf("offsets %v do not follow the deliveries", b.offs[:5])
	}
	b.reset()
	if n, want := fill(&b, make([]byte, 1<<20)), redriveBatchBytes>>20; n != want {
		t.Fatalf("1 MiB payloads: full after %d deliveries; want %d (%d MiB)", n, want, want)
	}
	b.reset()
	if n := fill(&b, make([]byte, redriveBatchBytes+1)); n != 1 {
		t.Fatalf("a payload over the byte bound on its own: full after %d deliveries; want 1", n)
	}
}
