package kafka

import (
	"fmt"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"
)

func TestStickyForIgnoresKeysOfItsTopicsOnly(t *testing.T) {
	p := StickyFor("relay.events")
	events := p.ForTopic("relay.events")
	first := events.Partition(&kgo.Record{Key: []byte("evt_1")}, 6)
	for i := 2; i < 50; i++ {
		if got := events.Partition(&kgo.Record{Key: []byte(fmt.Sprintf("evt_%d", i))}, 6); got != first {
			t.Fatalf("record %d of one batch went to partition %d, the first to %d", i, got, first)
		}
	}
	events.(kgo.TopicPartitionerOnNewBatch).OnNewBatch()
	if next := events.Partition(&kgo.Record{Key: []byte("evt_x")}, 6); next == first {
		t.Fatalf("the next batch stayed on partition %d", first)
	}

	// Other topics hash the key (murmur2, as Java and the default do).
	keyed := p.ForTopic("relay.deliveries")
	want := kgo.StickyKeyPartitioner(nil).ForTopic("relay.deliveries")
	for i := 0; i < 50; i++ {
		r := &kgo.Record{Key: []byte(fmt.Sprintf("sub_%d", i))}
		if got, w := keyed.Partition(r, 6), want.Partition(r, 6); got != w {
			t.Fatalf("key %s went to partition %d, murmur2 says %d", r.Key, got, w)
		}
	}
}
