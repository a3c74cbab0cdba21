package kafka_test

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/relayhq/relay/pkg/envconfig"
	"github.com/relayhq/relay/pkg/kafka"
	"github.com/relayhq/relay/pkg/record"
	"github.com/relayhq/relay/pkg/testenv"
)

func TestCompressionSetting(t *testing.T) {
	valid := func(vars map[string]string) kafka.Config { return loadConfig(t, vars) }
	if got := valid(nil).Compression; got != "none" {
		t.Fatalf("default compression %q, want none", got)
	}
	for _, v := range []string{"none", "lz4", "LZ4", "snappy", "zstd", "gzip"} {
		cfg := valid(map[string]string{"RELAY_KAFKA_COMPRESSION": v})
		if cfg.Compression != strings.ToLower(v) {
			t.Fatalf("%s read as %q", v, cfg.Compression)
		}
		if err := cfg.Validate(); err != nil {
			t.Fatalf("%s refused: %v", v, err)
		}
	}
	for _, v := range []string{"brotli", "lz5", "snappy,lz4"} {
		err := valid(map[string]string{"RELAY_KAFKA_COMPRESSION": v}).Validate()
		if err == nil || !strings.Contains(err.Error(), "RELAY_KAFKA_COMPRESSION") || !strings.Contains(err.Error(), v) {
			t.Fatalf("%s: error %v does not name the variable and the value", v, err)
		}
	}
}

// loadConfig reads vars as the services read their environment.
func loadConfig(t *testing.T, vars map[string]string) kafka.Config {
	t.Helper()
	r := envconfig.FromMap(vars)
	cfg := kafka.LoadConfig(r)
	if err := r.Err(); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// createTopics creates a fresh set of Relay's topics on the real broker.
func createTopics(t *testing.T, cfg kafka.Config) record.Topics {
	t.Helper()
	names := testenv.Names(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	admin, err := kafka.NewClient(cfg, "test-admin", kafka.Instrumentation{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	if err := kafka.EnsureTopics(ctx, admin, cfg, kafka.Topics(cfg, names)); err != nil {
		t.Fatal(err)
	}
	return names
}

// TestEveryCodecReachesTheBroker produces with each setting to the real
// broker and reads the records back: the bodies and headers arrive byte for
// byte, in batches of the configured codec.
func TestEveryCodecReachesTheBroker(t *testing.T) {
	base := testenv.KafkaConfig(t)
	names := createTopics(t, base)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	// Attribute values of the record batch header (KIP-98).
	want := map[string]uint8{"none": 0, "gzip": 1, "snappy": 2, "lz4": 3, "zstd": 4}
	topics := []string{names.Events, names.Deliveries, names.DLQ, names.Tiers[0].Topic, names.Tiers[1].Topic}
	i := 0
	for codec, attr := range want {
		topic := topics[i]
		i++
		t.Run(codec, func(t *testing.T) {
			cfg := base
			cfg.Compression = codec
			if err := cfg.Validate(); err != nil {
				t.Fatal(err)
			}
			producer, err := kafka.NewClient(cfg, "codec-test-"+codec, kafka.Instrumentation{}, nil, kafka.ProducerOptions(cfg)...)
			if err != nil {
				t.Fatal(err)
			}
			defer producer.Close()
			var sent []*kgo.Record
			for n := 0; n < 20; n++ {
				body := []byte(fmt.Sprintf(`{"type":"payment.succeeded","n":%d,"pad":%q}`, n, strings.Repeat("abc", 300)))
				sent = append(sent, &kgo.Record{Topic: topic, Key: []byte(fmt.Sprint(n)), Value: body,
					Headers: []kgo.RecordHeader{{Key: "relay-event-id", Value: []byte(fmt.Sprintf("evt_%d", n))}}})
			}
			if err := producer.ProduceSync(ctx, sent...).FirstErr(); err != nil {
				t.Fatal(err)
			}

			consumer, err := kafka.NewClient(cfg, "codec-test-read-"+codec, kafka.Instrumentation{}, nil,
				kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
			if err != nil {
				t.Fatal(err)
			}
			defer consumer.Close()
			got := map[string]*kgo.Record{}
			for len(got) < len(sent) {
				fs := consumer.PollFetches(ctx)
				if err := ctx.Err(); err != nil {
					t.Fatalf("read %d of %d records: %v", len(got), len(sent), err)
				}
				fs.EachError(func(topic string, p int32, err error) { t.Fatalf("fetch %s/%d: %v", topic, p, err) })
				fs.EachRecord(func(r *kgo.Record) { got[string(r.Key)] = r })
			}
			for _, s := range sent {
				r := got[string(s.Key)]
				if !bytes.Equal(r.Value, s.Value) || len(r.Headers) != 1 || string(r.Headers[0].Value) != string(s.Headers[0].Value) {
					t.Fatalf("record %s came back changed", s.Key)
				}
				if c := r.Attrs.CompressionType(); c != attr {
					t.Fatalf("record %s was in a batch of codec %d, want %d (%s)", s.Key, c, attr, codec)
				}
			}
		})
	}
}
