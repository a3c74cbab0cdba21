package kafka

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Producer is what code that produces needs of a Kafka client.
type Producer interface {
	Produce(ctx context.Context, r *kgo.Record, promise func(*kgo.Record, error))
}

var _ Producer = (*kgo.Client)(nil)

// ProduceAndWait produces rs and waits until the broker has acknowledged or
// refused every one of them, returning the first error.
//
// It differs from kgo.Client.ProduceSync in one way that matters: it leaves
// the client's linger (RELAY_KAFKA_LINGER) in force while other records
// wait. ProduceSync drains the records' partitions at once, so in a service
// where every request waits for its own record, as ingest does, a linger
// would never apply and each request or two would still send a produce
// request of its own. Records produced while the producer is quiet are
// sent at once (sendIfAlone), as Nagle's algorithm sends a segment at once
// when none is unacknowledged: a linger with nothing to batch would only
// delay them.
func ProduceAndWait(ctx context.Context, p Producer, rs ...*kgo.Record) error {
	// franz-go calls every promise exactly once, also when ctx ends first.
	done := make(chan error, len(rs))
	promise := func(_ *kgo.Record, err error) { done <- err }
	for _, r := range rs {
		p.Produce(ctx, r, promise)
	}
	sendIfAlone(p, len(rs))
	var first error
	for range rs {
		if err := <-done; err != nil && first == nil {
			first = err
		}
	}
	return first
}

// buffering is the part of kgo.Client that says how many records it holds
// and sends them.
type buffering interface {
	BufferedProduceRecords() int64
	Flush(ctx context.Context) error
	OptValue(opt any) any
}

// ended is a context that has ended: Flush given it sends what lingers and
// returns at once, without waiting for the broker.
var ended = func() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}()

// pace is what sendIfAlone keeps of one producer: its linger, and when it
// was last given a record.
type pace struct {
	linger time.Duration
	last   atomic.Int64 // unix nanoseconds
}

var paces sync.Map // Producer -> *pace

// sendIfAlone sends the n records just produced at once when a linger
// would only delay them: the producer holds no other record (none in
// flight, none lingering), and none came within the last linger, so none
// is likely to come to share their batch. Otherwise they linger and go out
// with the next batch, which under load is what saves produce requests.
// It is Nagle's rule with the linger as its timer.
func sendIfAlone(p Producer, n int) {
	b, ok := p.(buffering)
	if !ok {
		return
	}
	v, ok := paces.Load(p)
	if !ok {
		linger, _ := b.OptValue(kgo.ProducerLinger).(time.Duration)
		v, _ = paces.LoadOrStore(p, &pace{linger: linger})
	}
	pc := v.(*pace)
	now := time.Now().UnixNano()
	quiet := time.Duration(now - pc.last.Swap(now))
	if pc.linger > 0 && quiet >= pc.linger && b.BufferedProduceRecords() <= int64(n) {
		_ = b.Flush(ended) // ends the lingers; the ended context makes it return at once
	}
}

// ProduceAsync produces r and returns the channel its outcome arrives on,
// exactly once (franz-go calls every promise, also when ctx, which bounds
// only the wait for buffer space, ends first). Like ProduceAndWait it leaves
// the client's linger in force while other records wait, and sends a record
// produced alone at once.
func ProduceAsync(ctx context.Context, p Producer, r *kgo.Record) <-chan error {
	done := make(chan error, 1)
	p.Produce(ctx, r, func(_ *kgo.Record, err error) { done <- err })
	sendIfAlone(p, 1)
	return done
}

// refusals are the produce errors that producing the same record again
// cannot cure: franz-go retries every transient error itself, so these reach
// the caller from the broker, or from the client before a byte is sent,
// and stay until an operator changes a topic, a limit or an ACL.
var refusals = []error{
	kerr.MessageTooLarge, kerr.RecordListTooLarge, kerr.InvalidRecord, kerr.CorruptMessage,
	kerr.TopicAuthorizationFailed, kerr.ClusterAuthorizationFailed, kerr.InvalidTopicException,
	kerr.PolicyViolation, kerr.UnsupportedForMessageFormat,
}

// Refused reports whether err is a refusal of a record that no retry of the
// same produce can overcome (a record or batch larger than its topic
// admits, a record the broker calls invalid, a principal that may not
// write). A caller must not retry such an error as if it were an outage:
// it says so loudly and waits for an operator.
func Refused(err error) bool {
	for _, r := range refusals {
		if errors.Is(err, r) {
			return true
		}
	}
	return false
}

// FlushAndClose waits up to 10 seconds for cl's buffered records to be
// acknowledged, then closes it: a service's last step, so that what it
// accepted is on the broker before it exits.
func FlushAndClose(cl *kgo.Client) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := cl.Flush(ctx)
	cl.Close()
	if err != nil {
		return fmt.Errorf("flush: %w", err)
	}
	return nil
}
