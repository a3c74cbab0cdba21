package kafka

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/relayhq/relay/pkg/record"
)

func TestMaxMessageBytesIsTheBatchLimit(t *testing.T) {
	cfg := Config{MaxBodyBytes: 1 << 20}
	if got, want := cfg.MaxMessageBytes(), 1<<20+record.HeaderRoom; got != want {
		t.Fatalf("MaxMessageBytes %d, want %d", got, want)
	}
	// The producers' batch limit and the topics' max.message.bytes are one
	// number: a producer allowed more than its topics admit is refused by
	// the broker for good.
	cl, err := kgo.NewClient(ProducerOptions(cfg)...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if got := cl.OptValue(kgo.ProducerBatchMaxBytes); got != int32(cfg.MaxMessageBytes()) {
		t.Fatalf("ProducerBatchMaxBytes %v, want %d", got, cfg.MaxMessageBytes())
	}
	// A consumer must take the largest batch a topic admits.
	cfg.MaxBodyBytes = 16 << 20
	cons, err := kgo.NewClient(ConsumerOptions(cfg, "g", "t")...)
	if err != nil {
		t.Fatal(err)
	}
	defer cons.Close()
	if got := cons.OptValue(kgo.FetchMaxPartitionBytes); got != int32(cfg.MaxMessageBytes()) {
		t.Fatalf("FetchMaxPartitionBytes %v, want %d", got, cfg.MaxMessageBytes())
	}
}

func TestTopicsBelow(t *testing.T) {
	tests := []struct {
		name   string
		limits map[string]int
		need   int
		want   []string
	}{
		{"none reported", nil, 100, nil},
		{"all enough", map[string]int{"a": 100, "b": 200}, 100, nil},
		{"some below, sorted", map[string]int{"c": 99, "a": 1, "b": 100}, 100, []string{"a", "c"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := topicsBelow(tt.limits, tt.need); !slices.Equal(got, tt.want) {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestRequestLimitError(t *testing.T) {
	cfg := Config{MaxBodyBytes: 1 << 20}
	val := func(s string) *string { return &s }
	tests := []struct {
		name    string
		configs []kadm.Config
		want    string
	}{
		{"not reported", nil, ""},
		{"kafka's default", []kadm.Config{{Key: configKafkaRequestMax, Value: val("104857600")}}, ""},
		{"kafka lowered", []kadm.Config{{Key: configKafkaRequestMax, Value: val("1048576")}}, "socket.request.max.bytes"},
		{"redpanda lowered", []kadm.Config{{Key: configRedpandaRequestMax, Value: val("1000000")}}, "kafka_request_max_bytes"},
		{"sensitive, no value", []kadm.Config{{Key: configKafkaRequestMax, Sensitive: true}}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := requestLimitError("1", tt.configs, cfg)
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("unexpected error %v", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), "RELAY_MAX_BODY_BYTES")):
				t.Fatalf("error %v, want one naming %s and RELAY_MAX_BODY_BYTES", err, tt.want)
			}
		})
	}
}

func TestRefused(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"none", nil, false},
		{"batch too large, as franz-go wraps it", fmt.Errorf("%w (uncompressed_bytes=1174557)", kerr.MessageTooLarge), true},
		{"invalid record", kerr.InvalidRecord, true},
		{"not allowed to write", kerr.TopicAuthorizationFailed, true},
		{"deadline", context.DeadlineExceeded, false},
		{"leader moving", kerr.NotLeaderForPartition, false},
		{"client closed", kgo.ErrClientClosed, false},
		{"retries exhausted", kgo.ErrRecordRetries, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Refused(tt.err); got != tt.want {
				t.Fatalf("Refused(%v) = %v, want %v", tt.err, got, tt.want)
			}
		})
	}
}
