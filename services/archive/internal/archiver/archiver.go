// Package archiver batches relay.events per partition and writes each batch
// to S3 as one gzip NDJSON object per source, committing the batch's offsets
// only after every object is uploaded.
//
// A batch always starts at the partition's committed offset, and before its
// objects are written a small marker records where it ends. A batch redone
// after a crash (or an offset reset) finds the marker and ends at the same
// offset, so it rewrites the very same objects: no line is ever archived in
// two objects.
package archiver

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"
	"golang.org/x/sync/errgroup"

	"github.com/relayhq/relay/pkg/archivefile"
	"github.com/relayhq/relay/pkg/backoff"
	"github.com/relayhq/relay/pkg/kafka"
	"github.com/relayhq/relay/pkg/record"
)

// ObjectStore is the part of the S3 API the archiver uses.
type ObjectStore interface {
	PutObject(ctx context.Context, in *s3.PutObjectInput, opts ...func(*s3.Options)) (*s3.PutObjectOutput, error)
	GetObject(ctx context.Context, in *s3.GetObjectInput, opts ...func(*s3.Options)) (*s3.GetObjectOutput, error)
}

var _ ObjectStore = (*s3.Client)(nil)

// Limits bound a batch.
type Limits struct {
	MaxEvents int
	MaxBytes  int
	MaxWait   time.Duration
	// CallTimeout bounds each S3 call.
	CallTimeout time.Duration
}

// errAbandoned means a flush gave up so the group can rebalance; nothing of
// the batch was committed.
var errAbandoned = errors.New("flush abandoned for a rebalance")

type batch struct {
	partition int32
	started   time.Time
	// target is the last offset the batch must end at, from a marker of an
	// earlier attempt; -1 when this is the first attempt.
	target  int64
	bytes   int
	records []*kgo.Record
}

func (b *batch) first() int64 { return b.records[0].Offset }
func (b *batch) last() int64  { return b.records[len(b.records)-1].Offset }

// Archiver is the consumer loop. Create it with New, then hand Options to
// the client it consumes with.
type Archiver struct {
	consumer *kafka.Batches
	store    ObjectStore
	bucket   string
	topic    string
	lim      Limits
	log      *slog.Logger
	m        *metrics
	now      func() time.Time

	batches map[int32]*batch // touched by the poll loop and by rebalance callbacks, never at once
	mu      sync.Mutex
	healthy atomic.Bool
	lastErr atomic.Value // string
}

// New returns an Archiver writing to bucket.
func New(store ObjectStore, bucket, topic string, lim Limits, log *slog.Logger, reg prometheus.Registerer) *Archiver {
	a := &Archiver{store: store, bucket: bucket, topic: topic, lim: lim, log: log, m: newMetrics(reg), now: time.Now, batches: map[int32]*batch{}}
	a.healthy.Store(true)
	// Offsets are committed by hand, only after a batch's upload; a batch
	// of a partition revoked before its upload is dropped, and its next
	// owner redoes it.
	a.consumer = &kafka.Batches{Topic: topic, MaxRecords: 1000, Wait: a.pollWait, Handle: a.process, Log: log,
		Dropped: func(ps []int32) {
			a.mu.Lock()
			defer a.mu.Unlock()
			for _, p := range ps {
				delete(a.batches, p)
			}
		}}
	return a
}

// Options are the group options the archiver needs on its client.
func (a *Archiver) Options() []kgo.Opt { return a.consumer.Options() }

// SetClient sets the client the archiver consumes with.
func (a *Archiver) SetClient(cl *kgo.Client) { a.consumer.SetClient(cl) }

// Close closes the client, leaving the group: Run does it when it returns.
func (a *Archiver) Close() { a.consumer.Close() }

// Name implements lifecycle.Worker.
func (a *Archiver) Name() string { return "archiver" }

// Healthy reports whether the last S3 call succeeded, with the error if not.
func (a *Archiver) Healthy() error {
	if a.healthy.Load() {
		return nil
	}
	msg, _ := a.lastErr.Load().(string)
	return fmt.Errorf("cannot write to S3: %s", msg)
}

// Run consumes until ctx is cancelled. Batches not yet uploaded are dropped
// at shutdown; their records are read again on the next start.
func (a *Archiver) Run(ctx context.Context) error { return a.consumer.Run(ctx) }

// pollWait is how long a poll may wait: until the oldest batch is due, at
// most a second.
func (a *Archiver) pollWait() time.Duration {
	wait := min(a.lim.MaxWait, time.Second)
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, b := range a.batches {
		if d := b.started.Add(a.lim.MaxWait).Sub(a.now()); d < wait {
			wait = max(d, 10*time.Millisecond)
		}
	}
	return wait
}

func (a *Archiver) process(ctx context.Context, recs []*kgo.Record) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	for i, r := range recs {
		if err := a.add(ctx, r); err != nil {
			return a.abandon(err, recs[i:])
		}
	}
	now := a.now()
	for _, b := range a.batches {
		if b.target < 0 && now.Sub(b.started) >= a.lim.MaxWait {
			if err := a.flush(ctx, b); err != nil {
				return a.abandon(err, nil)
			}
		}
	}
	return nil
}

// abandon forgets every batch after a flush gave up and rewinds each
// partition to the first record not archived (the start of its batch, or
// the first record of this poll not yet looked at), so it is fetched again.
func (a *Archiver) abandon(err error, unprocessed []*kgo.Record) error {
	rewind := kafka.FirstOffsets(unprocessed)
	for p, b := range a.batches {
		if len(b.records) > 0 {
			rewind[p] = b.first() // before any record of this poll
		}
		delete(a.batches, p)
	}
	a.consumer.Rewind(rewind)
	return err
}

func (a *Archiver) add(ctx context.Context, r *kgo.Record) error {
	b := a.batches[r.Partition]
	if b != nil && b.target >= 0 && r.Offset > b.target {
		// The earlier attempt ended before this record.
		if err := a.flush(ctx, b); err != nil {
			return err
		}
		b = nil
	}
	if b == nil {
		b = &batch{partition: r.Partition, started: a.now(), target: -1}
		t, err := a.readMarker(ctx, r.Partition, r.Offset)
		if err != nil {
			return err
		}
		b.target = t
		a.batches[r.Partition] = b
	}
	b.records = append(b.records, r)
	b.bytes += len(r.Value)
	full := b.target < 0 && (len(b.records) >= a.lim.MaxEvents || b.bytes >= a.lim.MaxBytes)
	if full || (b.target >= 0 && r.Offset >= b.target) {
		return a.flush(ctx, b)
	}
	return nil
}

// readMarker returns the last offset of an earlier attempt at the batch
// starting at first, or -1.
func (a *Archiver) readMarker(ctx context.Context, p int32, first int64) (int64, error) {
	target := int64(-1)
	err := a.s3call(ctx, "read batch marker", func(ctx context.Context) error {
		out, err := a.store.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(a.bucket), Key: aws.String(archivefile.MarkerKey(a.topic, p, first))})
		var nsk *s3types.NoSuchKey
		if errors.As(err, &nsk) {
			return nil
		}
		if err != nil {
			return err
		}
		defer out.Body.Close()
		var m archivefile.Marker
		if err := json.NewDecoder(out.Body).Decode(&m); err != nil {
			return fmt.Errorf("marker: %w", err)
		}
		if m.First == first && m.Last >= first {
			target = m.Last
		}
		return nil
	})
	return target, err
}

// flush uploads a batch, then commits past it.
func (a *Archiver) flush(ctx context.Context, b *batch) error {
	start := a.now()
	if b.target < 0 {
		body, _ := json.Marshal(archivefile.Marker{First: b.first(), Last: b.last()})
		if err := a.put(ctx, archivefile.MarkerKey(a.topic, b.partition, b.first()), body, "application/json"); err != nil {
			return err
		}
	}
	type group struct {
		src   string
		at    time.Time
		lines []archivefile.Line
	}
	var order []string
	groups := map[string]*group{}
	for _, r := range b.records {
		ev, err := record.ParseEvent(r)
		if err != nil {
			a.log.Error("not archiving a malformed record", "partition", r.Partition, "offset", r.Offset, "error", err)
			continue
		}
		g := groups[ev.SourceID]
		if g == nil {
			g = &group{src: ev.SourceID, at: ev.ReceivedAt}
			groups[ev.SourceID] = g
			order = append(order, ev.SourceID)
		}
		headers := make(map[string]string, len(r.Headers))
		for _, h := range r.Headers {
			headers[h.Key] = string(h.Value)
		}
		g.lines = append(g.lines, archivefile.NewLine(ev, headers, r.Partition, r.Offset))
	}
	eg, ectx := errgroup.WithContext(ctx)
	eg.SetLimit(4)
	for _, src := range order {
		g := groups[src]
		eg.Go(func() error {
			body, err := encode(g.lines)
			if err != nil {
				return err
			}
			return a.put(ectx, archivefile.ObjectKey(g.src, g.at, b.partition, b.first()), body, "application/gzip")
		})
	}
	if err := eg.Wait(); err != nil {
		return err
	}
	last := b.records[len(b.records)-1]
	// A failed commit is only logged: the objects are written, and a re-run
	// overwrites them.
	a.consumer.Commit(ctx, last)
	delete(a.batches, b.partition)
	a.m.events.Add(float64(len(b.records)))
	a.m.batchDuration.Observe(a.now().Sub(start).Seconds())
	return nil
}

func encode(lines []archivefile.Line) ([]byte, error) {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	enc := archivefile.Encoder(zw)
	for _, l := range lines {
		if err := enc.Encode(l); err != nil {
			return nil, fmt.Errorf("encode archive line: %w", err)
		}
	}
	if err := zw.Close(); err != nil {
		return nil, fmt.Errorf("gzip: %w", err)
	}
	return buf.Bytes(), nil
}

func (a *Archiver) put(ctx context.Context, key string, body []byte, contentType string) error {
	return a.s3call(ctx, "upload "+key, func(ctx context.Context) error {
		_, err := a.store.PutObject(ctx, &s3.PutObjectInput{
			Bucket: aws.String(a.bucket), Key: aws.String(key), Body: bytes.NewReader(body),
			ContentType: aws.String(contentType), ContentLength: aws.Int64(int64(len(body))),
		})
		if err == nil {
			a.m.uploads.WithLabelValues("ok").Inc()
		}
		return err
	})
}

// s3call retries fn with backoff until it succeeds, ctx ends, or a
// rebalance is waiting after a failure. While it fails, the service reports
// itself unhealthy.
func (a *Archiver) s3call(ctx context.Context, what string, fn func(ctx context.Context) error) error {
	p := backoff.Policy{Initial: 200 * time.Millisecond, Max: 10 * time.Second, Failed: func(err error, failures int) bool {
		a.m.uploads.WithLabelValues("error").Inc()
		a.lastErr.Store(err.Error())
		if a.healthy.Swap(false) {
			a.m.healthy.Set(0)
		}
		if backoff.Every(failures, 10) {
			a.log.Warn("s3 call failed, retrying", "while", what, "error", err, "failures", failures)
		}
		return !a.consumer.Wanted()
	}}
	failures, err := p.Retry(ctx, func(ctx context.Context) error {
		cctx, cancel := context.WithTimeout(ctx, a.lim.CallTimeout)
		defer cancel()
		return fn(cctx)
	})
	switch {
	case err == nil:
		if !a.healthy.Swap(true) {
			a.m.healthy.Set(1)
			a.log.Info("s3 writable again", "after_failures", failures)
		}
		return nil
	case ctx.Err() != nil:
		return ctx.Err()
	default:
		return errAbandoned
	}
}

type metrics struct {
	uploads       *prometheus.CounterVec
	events        prometheus.Counter
	batchDuration prometheus.Histogram
	healthy       prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		uploads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "relay_archive_uploads_total", Help: "S3 calls by result: ok, or error (retried).",
		}, []string{"result"}),
		events: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "relay_archive_events_total", Help: "Events archived and committed.",
		}),
		batchDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "relay_archive_batch_flush_seconds", Help: "Time to upload and commit one batch.",
			Buckets: prometheus.ExponentialBuckets(0.005, 2.5, 12),
		}),
		healthy: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "relay_archive_s3_healthy", Help: "1 while S3 accepts writes, 0 while uploads fail.",
		}),
	}
	m.healthy.Set(1)
	m.uploads.WithLabelValues("ok")
	m.uploads.WithLabelValues("error")
	reg.MustRegister(m.uploads, m.events, m.batchDuration, m.healthy)
	return m
}
