package kafka_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/relayhq/relay/pkg/kafka"
	"github.com/relayhq/relay/pkg/testenv"
)

// asyncProducer answers each record from its own goroutine, after the
// caller has moved on. It fails the records whose value is "fail" at once
// and acknowledges the others well after, so that a caller returning on the
// first error would return before them.
type asyncProducer struct {
	wg       sync.WaitGroup
	answered atomic.Int32
}

func (p *asyncProducer) Produce(_ context.Context, r *kgo.Record, promise func(*kgo.Record, error)) {
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		if string(r.Value) == "fail" {
			p.answered.Add(1)
			promise(r, errors.New("refused: "+r.Topic))
			return
		}
		time.Sleep(50 * time.Millisecond)
		p.answered.Add(1)
		promise(r, nil)
	}()
}

func TestProduceAndWaitWaitsForEveryRecord(t *testing.T) {
	p := &asyncProducer{}
	recs := []*kgo.Record{{Topic: "a", Value: []byte("ok")}, {Topic: "b", Value: []byte("fail")}, {Topic: "c", Value: []byte("ok")}}
	err := kafka.ProduceAndWait(context.Background(), p, recs...)
	if err == nil || err.Error() != "refused: b" {
		t.Fatalf("error %v, want the failed record's", err)
	}
	if n := p.answered.Load(); n != 3 {
		t.Fatalf("returned after %d of 3 answers", n)
	}
	if err := kafka.ProduceAndWait(context.Background(), p, recs[0], recs[2]); err != nil {
		t.Fatalf("all acknowledged, got %v", err)
	}
	if err := kafka.ProduceAndWait(context.Background(), p); err != nil {
		t.Fatalf("no records, got %v", err)
	}
	p.wg.Wait()
}

func TestLingerSetting(t *testing.T) {
	load := func(v string) kafka.Config {
		vars := map[string]string{}
		if v != "" {
			vars["RELAY_KAFKA_LINGER"] = v
		}
		return loadConfig(t, vars)
	}
	if got := load("").Linger; got != 2*time.Millisecond {
		t.Fatalf("default linger %v, want 2ms", got)
	}
	for _, v := range []string{"0s", "1ms", "100ms", "1s"} {
		if err := load(v).Validate(); err != nil {
			t.Fatalf("%s refused: %v", v, err)
		}
	}
	for _, v := range []string{"-1ms", "2s"} {
		err := load(v).Validate()
		if err == nil || !strings.Contains(err.Error(), "RELAY_KAFKA_LINGER") {
			t.Fatalf("%s: error %v does not name the variable", v, err)
		}
	}
}

// TestProduceAndWaitSharesBatches is why ingest does not use ProduceSync:
// records produced while others wait must reach the real broker in one
// batch, where ProduceSync would send each on its own at once. And a record
// produced by a quiet producer must go at once rather than linger with
// nothing: the linger here is 5 s, twice as long as the record is given.
func TestProduceAndWaitSharesBatches(t *testing.T) {
	cfg := testenv.KafkaConfig(t)
	names := createTopics(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	cfg.Linger = 5 * time.Second
	var batches, records atomic.Int32
	hook := batchHook(func(m kgo.ProduceBatchMetrics) {
		batches.Add(1)
		records.Add(int32(m.NumRecords))
	})
	producer, err := kafka.NewClient(cfg, "linger-test", kafka.Instrumentation{}, nil,
		append(kafka.ProducerOptions(cfg), kgo.RecordPartitioner(kafka.StickyFor(cfg.Linger, names.Events)), kgo.WithHooks(hook))...)
	if err != nil {
		t.Fatal(err)
	}
	defer producer.Close()
	// A first record (ProduceSync sends it at once) loads the topic's
	// partitions and the producer's id, so that the records below are
	// partitioned, and start lingering, as soon as they are produced.
	if err := producer.ProduceSync(ctx, &kgo.Record{Topic: names.Events, Value: []byte("warm-up")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 10*time.Second, "the warm-up batch's hook", func() bool { return records.Load() == 1 })
	// A quiet producer's record goes at once.
	alone := make(chan error, 1)
	go func() {
		alone <- kafka.ProduceAndWait(ctx, producer, &kgo.Record{Topic: names.Events, Value: []byte("alone")})
	}()
	select {
	case err := <-alone:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(2500 * time.Millisecond):
		t.Fatal("a record produced by a quiet producer lingered")
	}
	// The batch hook may run after the promise: count from zero only once
	// it has seen the first batch.
	testenv.Eventually(t, 10*time.Second, "the first batch's hook", func() bool { return records.Load() == 2 })
	batches.Store(0)
	records.Store(0)

	// Two records produced right after it: the producer is not quiet, so
	// they linger and share a batch, which the test then sends.
	errs := make(chan error, 2)
	for _, v := range []string{"first", "second"} {
		go func() {
			errs <- kafka.ProduceAndWait(ctx, producer, &kgo.Record{Topic: names.Events, Key: []byte(v), Value: []byte(v)})
		}()
	}
	for producer.BufferedProduceRecords() < 2 {
		time.Sleep(time.Millisecond)
	}
	if err := producer.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	testenv.Eventually(t, 10*time.Second, "both records' batch hook", func() bool { return records.Load() >= 2 })
	if b, r := batches.Load(), records.Load(); b != 1 || r != 2 {
		t.Fatalf("%d records went out in %d batches, want 2 in 1", r, b)
	}
}

type batchHook func(kgo.ProduceBatchMetrics)

func (h batchHook) OnProduceBatchWritten(_ kgo.BrokerMetadata, _ string, _ int32, m kgo.ProduceBatchMetrics) {
	h(m)
}
