package archive

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/relayhq/relay/pkg/archivefile"
	"github.com/relayhq/relay/pkg/envconfig"
	"github.com/relayhq/relay/pkg/ids"
	"github.com/relayhq/relay/pkg/kafka"
	"github.com/relayhq/relay/pkg/record"
	"github.com/relayhq/relay/pkg/testenv"
	"github.com/relayhq/relay/services/archive/internal/archiver"
)

type fixture struct {
	t      *testing.T
	kcfg   kafka.Config
	names  record.Topics
	s3url  string
	bucket string
	events map[string]record.Event
}

func newFixture(t *testing.T, s3url string) *fixture {
	kcfg := testenv.KafkaConfig(t)
	if s3url == "" {
		s3url = testenv.S3Endpoint(t)
	}
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return &fixture{t: t, kcfg: kcfg, names: testenv.Names(t, kcfg), s3url: s3url, bucket: "relay-test-" + hex.EncodeToString(b), events: map[string]record.Event{}}
}

func (f *fixture) config(extra map[string]string) Config {
	f.t.Helper()
	vars := map[string]string{
		"RELAY_KAFKA_BROKERS":        strings.Join(f.kcfg.Brokers, ","),
		"RELAY_KAFKA_TOPIC_PREFIX":   f.kcfg.TopicPrefix,
		"RELAY_KAFKA_PARTITIONS":     "3",
		"RELAY_S3_ENDPOINT":          f.s3url,
		"RELAY_S3_BUCKET":            f.bucket,
		"RELAY_S3_PATH_STYLE":        "true",
		"RELAY_S3_TIMEOUT":           "2s",
		"RELAY_ADMIN_ADDR":           "127.0.0.1:0",
		"RELAY_ARCHIVE_MAX_EVENTS":   "7",
		"RELAY_ARCHIVE_MAX_WAIT":     "300ms",
		"RELAY_S3_ACCESS_KEY_ID":     "test",
		"RELAY_S3_SECRET_ACCESS_KEY": "test",
	}
	for k, v := range extra {
		vars[k] = v
	}
	cfg, err := LoadConfig(envconfig.FromMap(vars))
	if err != nil {
		f.t.Fatal(err)
	}
	return cfg
}

// produce writes n events spread over sources.
func (f *fixture) produce(n int, sources ...string) {
	f.t.Helper()
	cl, err := kafka.NewClient(f.kcfg, "archive-test", kafka.Instrumentation{}, nil, kafka.ProducerOptions(f.kcfg)...)
	if err != nil {
		f.t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := kafka.EnsureTopics(ctx, cl, f.kcfg, kafka.Topics(f.kcfg, f.names)); err != nil {
		f.t.Fatal(err)
	}
	var recs []*kgo.Record
	for i := 0; i < n; i++ {
		body := fmt.Sprintf(`{"type":"order.created","n":%d,"big":820982911946154508}`, i)
		if i%5 == 0 {
			body = fmt.Sprintf("form=%d&x=\x01", i) // not JSON: archived as base64
		}
		ev := record.Event{ID: ids.New(ids.Event), SourceID: sources[i%len(sources)], Type: "order.created", ReceivedAt: time.Now(), ContentType: "application/json", Body: []byte(body)}
		f.events[ev.ID] = ev
		recs = append(recs, ev.Record(f.names.Events))
	}
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		f.t.Fatal(err)
	}
}

func (f *fixture) run(cfg Config, store func(*s3.Client) archiver.ObjectStore) (stop func()) {
	f.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	svc, err := newService(ctx, cfg, testenv.Deps(), store)
	if err != nil {
		cancel()
		f.t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	stopped := false
	stop = func() {
		if !stopped {
			stopped = true
			cancel()
			if err := <-done; err != nil {
				f.t.Errorf("archive stopped with: %v", err)
			}
		}
	}
	f.t.Cleanup(stop)
	return stop
}

// archived reads every line of the bucket and counts each event id.
func (f *fixture) archived() (map[string]int, map[string]archivefile.Line) {
	f.t.Helper()
	ctx := context.Background()
	client, err := archivefile.NewClient(ctx, archivefile.Config{Endpoint: f.s3url, Region: "us-east-1", PathStyle: true, Anonymous: true})
	if err != nil {
		f.t.Fatal(err)
	}
	r := archivefile.Reader{S3: client, Bucket: f.bucket}
	objs, err := r.List(ctx, "events/")
	if err != nil {
		f.t.Fatal(err)
	}
	counts, lines := map[string]int{}, map[string]archivefile.Line{}
	for _, o := range objs {
		ls, err := r.Lines(ctx, o.Key)
		if err != nil {
			f.t.Fatal(err)
		}
		for _, l := range ls {
			counts[l.EventID]++
			lines[l.EventID] = l
			if !strings.HasPrefix(o.Key, archivefile.SourcePrefix(l.SourceID)) {
				f.t.Fatalf("line of %s in object %s", l.SourceID, o.Key)
			}
			if _, first, _ := archivefile.ParseObjectKey(o.Key); l.Offset < first {
				f.t.Fatalf("offset %d below the object's first offset %d", l.Offset, first)
			}
		}
	}
	return counts, lines
}

func (f *fixture) waitArchived(within time.Duration) map[string]archivefile.Line {
	f.t.Helper()
	var lines map[string]archivefile.Line
	testenv.Eventually(f.t, within, "every event to be archived", func() bool {
		var counts map[string]int
		counts, lines = f.archived()
		return len(counts) >= len(f.events)
	})
	counts, lines := f.archived()
	for id, n := range counts {
		if n != 1 {
			f.t.Errorf("event %s is in %d lines", id, n)
		}
		if _, ok := f.events[id]; !ok {
			f.t.Errorf("unknown event %s archived", id)
		}
	}
	return lines
}

func TestArchiveHoldsEveryEventOnce(t *testing.T) {
	f := newFixture(t, "")
	srcA, srcB := ids.New(ids.Source), ids.New(ids.Source)
	f.produce(60, srcA, srcB)
	f.run(f.config(nil), nil)
	lines := f.waitArchived(60 * time.Second)
	for id, ev := range f.events {
		l := lines[id]
		payload, err := l.Payload()
		if err != nil || string(payload) != strings.ReplaceAll(string(ev.Body), " ", "") {
			t.Fatalf("payload of %s = %q, %v; sent %q", id, payload, err, ev.Body)
		}
		if l.SourceID != ev.SourceID || l.EventType != ev.Type || !l.ReceivedAt.Equal(ev.ReceivedAt.Truncate(time.Millisecond)) || l.Headers[record.HeaderEventID] != id {
			t.Fatalf("line = %+v", l)
		}
	}
}

// crashingStore stops the archiver once the first batch's data objects (one
// per source) are written, before its offsets are committed: a crash
// between upload and commit.
type crashingStore struct {
	*s3.Client
	after   int32
	puts    atomic.Int32
	crash   func()
	crashed atomic.Bool
}

func (c *crashingStore) PutObject(ctx context.Context, in *s3.PutObjectInput, opts ...func(*s3.Options)) (*s3.PutObjectOutput, error) {
	out, err := c.Client.PutObject(ctx, in, opts...)
	if err == nil && strings.HasPrefix(*in.Key, "events/") && c.puts.Add(1) == c.after {
		// The object is stored, but the process "dies" before it hears so:
		// the flush fails and nothing is committed.
		c.crashed.Store(true)
		c.crash()
		return nil, errors.New("crashed after the upload")
	}
	return out, err
}

func TestCrashBetweenUploadAndCommitDuplicatesNothing(t *testing.T) {
	f := newFixture(t, "")
	// One partition, two sources alternating: the first batch (7 events)
	// makes one object per source.
	f.kcfg.Partitions = 1
	f.produce(30, ids.New(ids.Source), ids.New(ids.Source))
	ctx, cancel := context.WithCancel(context.Background())
	cs := &crashingStore{crash: cancel, after: 2}
	svc, err := newService(ctx, f.config(map[string]string{"RELAY_KAFKA_PARTITIONS": "1"}), testenv.Deps(),
		func(c *s3.Client) archiver.ObjectStore { cs.Client = c; return cs })
	if err != nil {
		t.Fatal(err)
	}
	if err := svc.Run(ctx); err != nil {
		t.Fatal(err)
	}
	if !cs.crashed.Load() {
		t.Fatal("the archiver never uploaded")
	}
	counts, _ := f.archived()
	if len(counts) == 0 {
		t.Fatal("nothing was uploaded before the crash")
	}
	// Restart with one-event batches: without the marker the redone batch
	// would hold one source's first event only, leave the other source's
	// first object in place, and archive its lines a second time.
	f.run(f.config(map[string]string{"RELAY_ARCHIVE_MAX_EVENTS": "1", "RELAY_KAFKA_PARTITIONS": "1"}), nil)
	f.waitArchived(60 * time.Second)
}

// flakyS3 serves gofakes3, answering 503 to everything while down.
type flakyS3 struct {
	down atomic.Bool
	h    http.Handler
}

func (f *flakyS3) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if f.down.Load() {
		http.Error(w, "<Error><Code>ServiceUnavailable</Code></Error>", http.StatusServiceUnavailable)
		return
	}
	f.h.ServeHTTP(w, r)
}

func TestS3DownThenUpLosesNothing(t *testing.T) {
	fs3 := &flakyS3{h: gofakes3.New(s3mem.New(), gofakes3.WithAutoBucket(true)).Server()}
	srv := httptest.NewServer(fs3)
	defer srv.Close()
	f := newFixture(t, srv.URL)
	src := ids.New(ids.Source)
	f.produce(10, src)
	cfg := f.config(nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	svc, err := newService(ctx, cfg, testenv.Deps(), nil)
	if err != nil {
		t.Fatal(err)
	}
	fs3.down.Store(true)
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	f.produce(20, src)
	testenv.Eventually(t, 30*time.Second, "the service to report S3 unhealthy", func() bool {
		resp, err := http.Get("http://" + svc.AdminAddr() + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusServiceUnavailable
	})
	fs3.down.Store(false)
	f.waitArchived(60 * time.Second)
	testenv.Eventually(t, 10*time.Second, "the service to report healthy again", func() bool {
		resp, err := http.Get("http://" + svc.AdminAddr() + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
