package kafka

import (
	"maps"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"
)

func TestFirstOffsets(t *testing.T) {
	rec := func(p int32, o int64) *kgo.Record { return &kgo.Record{Partition: p, Offset: o} }
	got := FirstOffsets([]*kgo.Record{rec(0, 7), rec(1, 3), rec(0, 5), rec(1, 4), rec(2, 9)})
	if want := map[int32]int64{0: 5, 1: 3, 2: 9}; !maps.Equal(got, want) {
		t.Fatalf("FirstOffsets = %v, want %v", got, want)
	}
	if got := FirstOffsets(nil); len(got) != 0 {
		t.Fatalf("FirstOffsets(nil) = %v", got)
	}
}
