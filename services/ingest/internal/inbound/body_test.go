package inbound

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

func TestReadGrowing(t *testing.T) {
	big := bytes.Repeat([]byte("x"), 100_000)
	tests := []struct {
		name     string
		body     []byte
		declared int64
		budget   int
		// allocs is how many buffers the read makes; 0 to not check.
		allocs int
		err    error
	}{
		{"small, declared: one buffer of its size", []byte(`{"type":"a"}`), 12, 1 << 20, 1, nil},
		{"empty", nil, 0, 1 << 20, 0, nil},
		{"large, declared: grows to exactly its size", big, int64(len(big)), 1 << 20, 6, nil},
		{"large, not declared", big, -1, 1 << 20, 0, nil},
		{"over the budget", big, int64(len(big)), 50_000, 0, errBodyBudget},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var charged, allocs int
			grow := func(n int) bool {
				if charged+n > tt.budget {
					return false
				}
				charged += n
				allocs++
				return true
			}
			// One byte a read: the buffer grows as bytes arrive.
			got, err := readGrowing(iotest.OneByteReader(bytes.NewReader(tt.body)), tt.declared, grow)
			if !errors.Is(err, tt.err) {
				t.Fatalf("err = %v, want %v", err, tt.err)
			}
			if err != nil {
				return
			}
			if !bytes.Equal(got, tt.body) || got == nil {
				t.Fatalf("read %d bytes (nil %v), want %d", len(got), got == nil, len(tt.body))
			}
			if charged != cap(got) {
				t.Fatalf("charged %d bytes for a buffer of %d", charged, cap(got))
			}
			if tt.declared >= 0 && cap(got) != len(tt.body) {
				t.Fatalf("a declared body of %d bytes ended in a buffer of %d", len(tt.body), cap(got))
			}
			if tt.allocs > 0 && allocs != tt.allocs {
				t.Fatalf("%d buffers, want %d", allocs, tt.allocs)
			}
		})
	}
}

// A declared length is not allocated ahead of the bytes: a sender that
// declares a MiB and sends a few bytes costs the first buffer only.
func TestReadGrowingAllocatesAsBytesArrive(t *testing.T) {
	var charged int
	r := io.MultiReader(strings.NewReader("{\"type\":"), iotest.ErrReader(errors.New("the sender went quiet")))
	_, err := readGrowing(r, 1<<20, func(n int) bool { charged += n; return true })
	if err == nil || charged > firstBodyBuffer {
		t.Fatalf("err %v, charged %d bytes for 8 that arrived of a declared MiB", err, charged)
	}
}
