package cli

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/relayhq/relay/pkg/envconfig"
	"github.com/relayhq/relay/pkg/kafka"
	"github.com/relayhq/relay/pkg/logging"
	"github.com/relayhq/relay/pkg/record"
	"github.com/relayhq/relay/pkg/testenv"
)

// relay tail reads with the services' Kafka settings, so it reaches a
// cluster that requires mutual TLS, as they do.
func TestTailReadsAMutualTLSCluster(t *testing.T) {
	env := testenv.KafkaTLSEnv(t)
	r := envconfig.FromMap(env)
	cfg := kafka.LoadConfig(r)
	if err := r.Err(); err != nil {
		t.Fatal(err)
	}
	names, err := cfg.Names()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cl, err := kafka.NewClient(cfg, "tail-test", kafka.Instrumentation{}, nil, kafka.ProducerOptions(cfg)...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if err := kafka.EnsureTopicsRetrying(ctx, cl, cfg, names, logging.Discard()); err != nil {
		t.Fatal(err)
	}
	ev := record.Event{ID: "evt_tailtest", SourceID: "src_tailtest", Type: "tail.test", ReceivedAt: time.Now(), ContentType: "application/json", Body: []byte(`{"type":"tail.test"}`)}
	if err := cl.ProduceSync(ctx, ev.Record(names.Events)).FirstErr(); err != nil {
		t.Fatal(err)
	}

	out := &testenv.LogBuffer{}
	a := &app{out: out, errOut: &bytes.Buffer{}, getenv: func(k string) string { return env[k] }}
	tctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { _, err := a.execute(tctx, []string{"tail", "--from-start"}); done <- err }()
	testenv.Eventually(t, 30*time.Second, "relay tail to print the event", func() bool { return strings.Contains(out.String(), "evt_tailtest tail.test") })
	stop()
	if err := <-done; err != nil {
		t.Fatalf("relay tail: %v", err)
	}
}
