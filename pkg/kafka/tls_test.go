package kafka_test

import (
	"context"
	"maps"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/relayhq/relay/pkg/kafka"
	"github.com/relayhq/relay/pkg/logging"
	"github.com/relayhq/relay/pkg/testenv"
)

// TestMutualTLS: against an Apache Kafka broker whose client listener speaks
// only TLS and requires a client certificate, Relay's clients connect with
// RELAY_KAFKA_TLS_CA_FILE and the client certificate variables, create their
// topics and produce; leaving the client certificate out is refused.
func TestMutualTLS(t *testing.T) {
	vars := testenv.KafkaTLSEnv(t)
	cfg := loadConfig(t, vars)
	names, err := cfg.Names()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cl, err := kafka.NewClient(cfg, "tls-test", kafka.Instrumentation{}, nil, kafka.ProducerOptions(cfg)...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if err := kafka.EnsureTopicsRetrying(ctx, cl, cfg, names, logging.Discard()); err != nil {
		t.Fatalf("creating topics over mutual TLS: %v", err)
	}
	if err := cl.ProduceSync(ctx, &kgo.Record{Topic: names.Events, Value: []byte("over TLS")}).FirstErr(); err != nil {
		t.Fatalf("producing over mutual TLS: %v", err)
	}

	noCert := maps.Clone(vars)
	delete(noCert, "RELAY_KAFKA_TLS_CERT_FILE")
	delete(noCert, "RELAY_KAFKA_TLS_KEY_FILE")
	bare, err := kafka.NewClient(loadConfig(t, noCert), "tls-test-no-cert", kafka.Instrumentation{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer bare.Close()
	pctx, pcancel := context.WithTimeout(ctx, 10*time.Second)
	defer pcancel()
	if err := bare.Ping(pctx); err == nil {
		t.Fatal("a client without a certificate reached a broker that requires one")
	}
}
