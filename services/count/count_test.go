package count

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/relayhq/relay/pkg/counters"
	"github.com/relayhq/relay/pkg/envconfig"
	"github.com/relayhq/relay/pkg/ids"
	"github.com/relayhq/relay/pkg/kafka"
	"github.com/relayhq/relay/pkg/record"
	"github.com/relayhq/relay/pkg/testenv"
)

func runCount(t *testing.T, kcfg kafka.Config) (stop func()) {
	t.Helper()
	cfg, err := LoadConfig(envconfig.FromMap(map[string]string{
		"RELAY_KAFKA_BROKERS":      strings.Join(kcfg.Brokers, ","),
		"RELAY_KAFKA_TOPIC_PREFIX": kcfg.TopicPrefix,
		"RELAY_KAFKA_PARTITIONS":   "3",
		"RELAY_REDIS_ADDRS":        testenv.RedisAddr(t),
		"RELAY_ADMIN_ADDR":         "127.0.0.1:0",
	}))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	svc, err := New(ctx, cfg, testenv.Deps())
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	stopped := false
	stop = func() {
		if !stopped {
			stopped = true
			cancel()
			if err := <-done; err != nil {
				t.Errorf("count stopped with: %v", err)
			}
		}
	}
	t.Cleanup(stop)
	return stop
}

func total(t *testing.T, src string) (int64, []counters.DayCount) {
	t.Helper()
	got, err := counters.New(testenv.Redis(t)).Read(context.Background(), src, "", "")
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	for _, c := range got {
		n += c.Count
	}
	return n, got
}

// TestResetToStartCountsNothingTwice consumes a topic, resets the group to
// the beginning and consumes it again: the counts do not move.
func TestResetToStartCountsNothingTwice(t *testing.T) {
	kcfg := testenv.KafkaConfig(t)
	names := testenv.Names(t, kcfg)
	// Compressed batches, as a deployment with RELAY_KAFKA_COMPRESSION=lz4 writes.
	pcfg := kcfg
	pcfg.Compression = "lz4"
	cl, err := kafka.NewClient(pcfg, "count-test", kafka.Instrumentation{}, nil, kafka.ProducerOptions(pcfg)...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx := context.Background()
	if err := kafka.EnsureTopics(ctx, cl, kcfg, kafka.Topics(kcfg, names)); err != nil {
		t.Fatal(err)
	}
	src := ids.New(ids.Source)
	day1 := time.Now().UTC().Add(-24 * time.Hour)
	var recs []*kgo.Record
	want := map[string]int64{}
	for i := 0; i < 300; i++ {
		at := time.Now()
		if i%3 == 0 {
			at = day1
		}
		typ := fmt.Sprintf("type.%d", i%4)
		want[at.Format("2006-01-02")+" "+typ]++
		recs = append(recs, record.Event{ID: ids.New(ids.Event), SourceID: src, Type: typ, ReceivedAt: at, Body: []byte("{}")}.Record(names.Events))
	}
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	stop := runCount(t, kcfg)
	testenv.Eventually(t, 30*time.Second, "300 events counted", func() bool { n, _ := total(t, src); return n == 300 })
	stop()
	_, first := total(t, src)
	for _, c := range first {
		if want[c.Day+" "+c.Type] != c.Count {
			t.Fatalf("%s %s counted %d, want %d", c.Day, c.Type, c.Count, want[c.Day+" "+c.Type])
		}
	}

	// Reset the group's offsets to the start, as an operator would with
	// kcat or kafka-consumer-groups --reset-offsets --to-earliest.
	adm := kadm.NewClient(cl)
	offs := kadm.Offsets{}
	for p := int32(0); p < 3; p++ {
		offs.AddOffset(names.Events, p, 0, -1)
	}
	resp, err := adm.CommitOffsets(ctx, names.Group(record.GroupCount), offs)
	if err != nil || resp.Error() != nil {
		t.Fatalf("reset offsets: %v %v", err, resp.Error())
	}
	runCount(t, kcfg)
	testenv.Eventually(t, 30*time.Second, "the group to consume everything again", func() bool {
		lag, err := adm.Lag(ctx, names.Group(record.GroupCount))
		if err != nil {
			return false
		}
		l := lag[names.Group(record.GroupCount)]
		return l.Lag.Total() == 0 && len(l.Lag) > 0
	})
	if n, _ := total(t, src); n != 300 {
		t.Fatalf("after consuming everything again the total is %d, want 300", n)
	}
}
