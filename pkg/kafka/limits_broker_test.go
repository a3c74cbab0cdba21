package kafka_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/relayhq/relay/pkg/kafka"
	"github.com/relayhq/relay/pkg/testenv"
)

// TestFullBatchesReachTopicsCreatedSmaller is the deployment an earlier
// version left behind: topics at the broker's default max.message.bytes
// (about 1 MiB). EnsureTopics must raise every one of them, after which a
// producer filling whole batches of near-1 MiB records, more than 1 MiB in
// all per batch, gets every one acknowledged. Before, such batches were
// refused with MESSAGE_TOO_LARGE however often they were sent again.
func TestFullBatchesReachTopicsCreatedSmaller(t *testing.T) {
	cfg := testenv.KafkaConfig(t)
	names := testenv.Names(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	admin, err := kafka.NewClient(cfg, "test-admin", kafka.Instrumentation{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	adm := kadm.NewClient(admin)
	specs := kafka.Topics(cfg, names)
	old := "1048588" // Apache Kafka's message.max.bytes default
	for _, s := range specs {
		resp, err := adm.CreateTopics(ctx, 3, -1, map[string]*string{"max.message.bytes": &old}, s.Name)
		if err == nil {
			err = resp.Error()
		}
		if err != nil {
			t.Fatalf("create %s: %v", s.Name, err)
		}
	}

	if err := kafka.EnsureTopics(ctx, admin, cfg, specs); err != nil {
		t.Fatal(err)
	}
	described, err := adm.DescribeTopicConfigs(ctx, topicNames(specs)...)
	if err != nil {
		t.Fatal(err)
	}
	for _, rc := range described {
		for _, c := range rc.Configs {
			if c.Key == "max.message.bytes" && c.MaybeValue() != strconv.Itoa(cfg.MaxMessageBytes()) {
				t.Fatalf("topic %s: max.message.bytes %s after EnsureTopics, want %d", rc.Name, c.MaybeValue(), cfg.MaxMessageBytes())
			}
		}
	}

	// One partition per topic, a long linger: the records of each topic pile
	// up into batches as large as the producer makes them.
	cfg.Linger = 200 * time.Millisecond
	producer, err := kafka.NewClient(cfg, "batch-test", kafka.Instrumentation{}, nil,
		append(kafka.ProducerOptions(cfg), kgo.RecordPartitioner(kgo.ManualPartitioner()))...)
	if err != nil {
		t.Fatal(err)
	}
	defer producer.Close()
	body := make([]byte, cfg.MaxBodyBytes-1024)
	var recs []*kgo.Record
	for _, topic := range []string{names.Events, names.Tiers[0].Topic, names.DLQ} {
		for i := 0; i < 4; i++ {
			recs = append(recs, &kgo.Record{Topic: topic, Value: body})
		}
		// Small records fill the rest of a batch beside a large one.
		for i := 0; i < 200; i++ {
			recs = append(recs, &kgo.Record{Topic: topic, Value: body[:2000]})
		}
	}
	if err := kafka.ProduceAndWait(ctx, producer, recs...); err != nil {
		t.Fatalf("produce: %v", err)
	}
}

func topicNames(specs []kafka.TopicSpec) []string {
	var out []string
	for _, s := range specs {
		out = append(out, s.Name)
	}
	return out
}
