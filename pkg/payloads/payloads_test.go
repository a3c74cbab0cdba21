package payloads

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/relayhq/relay/pkg/archivefile"
	"github.com/relayhq/relay/pkg/ids"
	"github.com/relayhq/relay/pkg/kafka"
	"github.com/relayhq/relay/pkg/logging"
	"github.com/relayhq/relay/pkg/record"
	"github.com/relayhq/relay/pkg/testenv"
)

// bodies are what senders send, byte for byte: compact JSON with HTML
// characters, JSON with whitespace, a body that is not UTF-8, an empty one.
var bodies = [][]byte{
	[]byte(`{"type":"a","html":"<b>&amp;</b>"}`),
	[]byte("{\n  \"type\": \"b\",\n  \"n\": 1.50\n}\n"),
	{0x00, 0xff, 0xfe, 'x', 0x80},
	{},
	bytes.Repeat([]byte("z"), 300<<10),
}

type fixture struct {
	cfg    kafka.Config
	cl     *kgo.Client
	names  record.Topics
	src    string
	events []record.Event
	refs   []Ref
}

// produce puts bodies on relay.events of a fresh deployment, all on
// partition 1, and returns where each went.
func produce(t *testing.T) *fixture {
	t.Helper()
	f := &fixture{cfg: testenv.KafkaConfig(t), src: ids.New(ids.Source)}
	f.names = testenv.Names(t, f.cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var err error
	f.cl, err = kafka.NewClient(f.cfg, "payloads-test", kafka.Instrumentation{}, nil,
		append(kafka.ProducerOptions(f.cfg), kgo.RecordPartitioner(kgo.ManualPartitioner()))...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.cl.Close)
	if err := kafka.EnsureTopics(ctx, f.cl, f.cfg, kafka.Topics(f.cfg, f.names)); err != nil {
		t.Fatal(err)
	}
	for i, body := range bodies {
		at := time.Now().Add(time.Duration(i) * time.Millisecond)
		ev := record.Event{ID: ids.NewAt(ids.Event, at), SourceID: f.src, Type: "t", ReceivedAt: at, Body: body,
			Forwarded: []record.ForwardedHeader{{Name: "X-Github-Event", Value: fmt.Sprint("push-", i)}}}
		rec := ev.Record(f.names.Events)
		rec.Partition = 1
		if err := f.cl.ProduceSync(ctx, rec).FirstErr(); err != nil {
			t.Fatal(err)
		}
		f.events = append(f.events, ev)
		f.refs = append(f.refs, Ref{ID: ev.ID, SourceID: f.src, ReceivedAt: at, Partition: rec.Partition, Offset: rec.Offset})
	}
	return f
}

func (f *fixture) check(t *testing.T, got map[string]Payload, which ...int) {
	t.Helper()
	if len(got) != len(which) {
		t.Fatalf("got %d payloads, want %d", len(got), len(which))
	}
	for _, i := range which {
		p, ok := got[f.events[i].ID]
		if !ok || !bytes.Equal(p.Body, f.events[i].Body) {
			t.Fatalf("event %d: %q (found %v), want %q", i, trim(p.Body), ok, trim(f.events[i].Body))
		}
		if len(p.Forwarded) != 1 || p.Forwarded[0] != f.events[i].Forwarded[0] {
			t.Fatalf("event %d: forwarded %v, want %v", i, p.Forwarded, f.events[i].Forwarded)
		}
	}
}

func trim(b []byte) []byte {
	if len(b) > 64 {
		return b[:64]
	}
	return b
}

// testArchive is a bucket of the test's own on the test S3 server.
func testArchive(t *testing.T, endpoint string) archivefile.Reader {
	t.Helper()
	c, err := archivefile.NewClient(context.Background(), archivefile.Config{Endpoint: endpoint, Region: "us-east-1", PathStyle: true, Anonymous: true})
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	r := archivefile.Reader{S3: c, Bucket: "relay-payloads-" + hex.EncodeToString(b)}
	if _, err := c.CreateBucket(context.Background(), &s3.CreateBucketInput{Bucket: aws.String(r.Bucket)}); err != nil && !strings.Contains(endpoint, "127.0.0.1:1") {
		t.Fatal(err)
	}
	return r
}

// archiveObject writes events as the archive service does: one object of a
// source's share of a partition batch, named by its first offset.
func archiveObject(t *testing.T, a archivefile.Reader, f *fixture, which ...int) {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	enc := archivefile.Encoder(zw)
	for _, i := range which {
		rec := f.events[i].Record(f.names.Events)
		headers := map[string]string{}
		for _, h := range rec.Headers {
			headers[h.Key] = string(h.Value)
		}
		if err := enc.Encode(archivefile.NewLine(f.events[i], headers, f.refs[i].Partition, f.refs[i].Offset)); err != nil {
			t.Fatal(err)
		}
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	first := f.refs[which[0]]
	put(t, a, archivefile.ObjectKey(f.src, first.ReceivedAt, first.Partition, first.Offset), buf.Bytes())
}

func put(t *testing.T, a archivefile.Reader, key string, body []byte) {
	t.Helper()
	if _, err := a.S3.PutObject(context.Background(), &s3.PutObjectInput{Bucket: aws.String(a.Bucket), Key: aws.String(key), Body: bytes.NewReader(body)}); err != nil {
		t.Fatal(err)
	}
}

// Payloads are read back byte for byte from Kafka at their coordinates, and
// from the archive once Kafka has deleted them; an event in neither is
// expired; a garbled archive object reads as expired, with a log line
// naming it.
func TestPayloadsFromKafkaThenArchive(t *testing.T) {
	f := produce(t)
	a := testArchive(t, testenv.S3Endpoint(t))
	log, logs := testenv.Logger()
	r := New(f.cl, f.names.Events, f.cfg.MaxMessageBytes(), a, log)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	all := []int{0, 1, 2, 3, 4}
	got, err := r.GetAll(ctx, f.refs)
	if err != nil {
		t.Fatal(err)
	}
	f.check(t, got, all...)
	if p, err := r.Get(ctx, f.refs[2]); err != nil || !bytes.Equal(p.Body, bodies[2]) {
		t.Fatalf("Get = %q, %v", p.Body, err)
	}

	// A record by its coordinates, on any topic; one past the log's end
	// is expired.
	rec, err := r.RecordAt(ctx, f.names.Events, f.refs[3].Partition, f.refs[3].Offset)
	if err != nil || !bytes.Equal(rec.Value, bodies[3]) || record.Header(rec, record.HeaderEventID) != f.refs[3].ID {
		t.Fatalf("RecordAt = %v, %v", rec, err)
	}
	if _, err := r.RecordAt(ctx, f.names.Events, f.refs[4].Partition, f.refs[4].Offset+100); !errors.Is(err, ErrExpired) {
		t.Fatalf("RecordAt past the end: %v", err)
	}

	// Kafka's retention deletes the first four; the archive holds the
	// first three (a batch) and not the fourth.
	archiveObject(t, a, f, 0, 1, 2)
	adm := kadm.NewClient(f.cl)
	var o kadm.Offsets
	o.Add(kadm.Offset{Topic: f.names.Events, Partition: 1, At: f.refs[4].Offset})
	if resp, err := adm.DeleteRecords(ctx, o); err != nil || resp.Error() != nil {
		t.Fatalf("delete records: %v %v", err, resp.Error())
	}
	got, err = r.GetAll(ctx, f.refs)
	if err != nil {
		t.Fatal(err)
	}
	f.check(t, got, 0, 1, 2, 4)
	if _, err := r.Get(ctx, f.refs[3]); !errors.Is(err, ErrExpired) {
		t.Fatalf("an event in neither Kafka nor the archive: %v", err)
	}
	if _, err := r.RecordAt(ctx, f.names.Events, f.refs[3].Partition, f.refs[3].Offset); !errors.Is(err, ErrExpired) {
		t.Fatalf("RecordAt of a record retention deleted: %v", err)
	}

	// A damaged object: expired, and the log names it.
	key := archivefile.ObjectKey(f.src, f.refs[0].ReceivedAt, 1, f.refs[0].Offset)
	put(t, a, key, []byte("not gzip at all"))
	if _, err := r.Get(ctx, f.refs[1]); !errors.Is(err, ErrExpired) {
		t.Fatalf("an event in a garbled object: %v", err)
	}
	if !strings.Contains(logs.String(), key) {
		t.Fatalf("the log does not name the garbled object %s: %s", key, logs.String())
	}

	// The archive unreachable: unavailable, not expired.
	down := New(f.cl, f.names.Events, f.cfg.MaxMessageBytes(), testArchive(t, "http://127.0.0.1:1"), log)
	if _, err := down.Get(ctx, f.refs[1]); !errors.Is(err, ErrArchiveUnavailable) {
		t.Fatalf("with S3 unreachable: %v", err)
	}
	if p, err := down.Get(ctx, f.refs[4]); err != nil || !bytes.Equal(p.Body, bodies[4]) {
		t.Fatalf("an event still in Kafka with S3 unreachable: %v", err)
	}
}

// With the broker unreachable, a payload is unavailable, not expired.
func TestPayloadsWithKafkaDown(t *testing.T) {
	broker := testenv.StartKafka(t)
	cfg := testenv.KafkaConfig(t)
	cfg.Brokers = []string{broker.Addr}
	cfg.DialTimeout = time.Second
	cl, err := kafka.NewClient(cfg, "payloads-down", kafka.Instrumentation{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	names := testenv.Names(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := kafka.EnsureTopics(ctx, cl, cfg, kafka.Topics(cfg, names)); err != nil {
		t.Fatal(err)
	}
	broker.Kill()
	r := New(cl, names.Events, cfg.MaxMessageBytes(), nil, logging.Discard())
	gctx, gcancel := context.WithTimeout(ctx, 10*time.Second)
	defer gcancel()
	if _, err := r.Get(gctx, Ref{ID: ids.New(ids.Event), Partition: 0, Offset: 0}); !errors.Is(err, ErrKafkaUnavailable) {
		t.Fatalf("with the broker down: %v", err)
	}
}
