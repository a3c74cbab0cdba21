// Package payloads reads events' bodies where they live: on relay.events at
// the partition and offset the event index records, and, once Kafka's
// retention has deleted them, in the S3 archive. Redis holds none.
package payloads

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/relayhq/relay/pkg/archivefile"
	"github.com/relayhq/relay/pkg/record"
)

// ErrExpired means neither Kafka nor the archive holds the event any more
// (or the archive's copy cannot be read): the events API answers its
// metadata with payload_expired.
var ErrExpired = errors.New("payload expired")

// ErrKafkaUnavailable and ErrArchiveUnavailable wrap the errors of a store
// that could not be asked: the caller answers 503 and the reader retries.
var (
	ErrKafkaUnavailable   = errors.New("kafka unavailable")
	ErrArchiveUnavailable = errors.New("archive unavailable")
)

// Ref is where an event is: its id, source and received time (which name
// its archive object) and its place on relay.events.
type Ref struct {
	ID         string
	SourceID   string
	ReceivedAt time.Time
	Partition  int32
	Offset     int64
}

// Payload is an event's body and the headers of its record.
type Payload struct {
	Body      []byte
	Forwarded []record.ForwardedHeader
}

// Broker is what the reader needs of a Kafka client: metadata, and a way to
// ask one broker.
type Broker interface {
	RequestCachedMetadata(ctx context.Context, req *kmsg.MetadataRequest, limit time.Duration) (*kmsg.MetadataResponse, error)
	Broker(id int) *kgo.Broker
}

// Archive finds an archived event's line.
type Archive interface {
	Find(ctx context.Context, src string, receivedAt time.Time, partition int32, offset int64) (archivefile.Line, error)
}

// Reader reads payloads. It is safe for concurrent use.
type Reader struct {
	cl    Broker
	topic string
	// maxBytes bounds one fetch: at least one whole batch of Relay's largest.
	maxBytes int32
	archive  Archive
	log      *slog.Logger
}

// New returns a Reader of topic (relay.events) through cl, falling back to
// arc (nil: none) once Kafka has deleted an event. maxBytes is the topics'
// max.message.bytes.
func New(cl Broker, topic string, maxBytes int, arc Archive, log *slog.Logger) *Reader {
	return &Reader{cl: cl, topic: topic, maxBytes: int32(maxBytes), archive: arc, log: log}
}

// Get returns the payload of one event: from Kafka, else from the archive.
func (r *Reader) Get(ctx context.Context, ref Ref) (Payload, error) {
	got, err := r.GetAll(ctx, []Ref{ref})
	if err != nil {
		return Payload{}, err
	}
	p, ok := got[ref.ID]
	if !ok {
		return Payload{}, ErrExpired
	}
	return p, nil
}

// GetAll returns the payloads of refs by event id, reading each partition's
// events from Kafka in order, a fetch of up to maxBytes at a time, and those
// Kafka no longer has from the archive. An event found in neither is left
// out of the map. The error is a store that could not be asked.
func (r *Reader) GetAll(ctx context.Context, refs []Ref) (map[string]Payload, error) {
	out := make(map[string]Payload, len(refs))
	byPartition := map[int32][]Ref{}
	for _, ref := range refs {
		byPartition[ref.Partition] = append(byPartition[ref.Partition], ref)
	}
	var gone []Ref
	for p, want := range byPartition {
		slices.SortFunc(want, func(a, b Ref) int { return cmp.Compare(a.Offset, b.Offset) })
		missing, err := r.fromKafka(ctx, p, want, out)
		if err != nil {
			return nil, err
		}
		gone = append(gone, missing...)
	}
	for _, ref := range gone {
		p, err := r.fromArchive(ctx, ref)
		switch {
		case errors.Is(err, ErrExpired):
			continue
		case err != nil:
			return nil, err
		}
		out[ref.ID] = p
	}
	return out, nil
}

// fromKafka reads the events of want (one partition, by offset) into out
// and returns those Kafka no longer has.
func (r *Reader) fromKafka(ctx context.Context, partition int32, want []Ref, out map[string]Payload) ([]Ref, error) {
	var gone []Ref
	for len(want) > 0 {
		recs, logStart, err := r.fetch(ctx, r.topic, partition, want[0].Offset)
		if err != nil {
			return nil, err
		}
		if len(recs) == 0 {
			// Below the log's start: deleted by retention. Every wanted
			// event below it went too; fetch on from there for the rest.
			i := 0
			for i < len(want) && want[i].Offset < logStart {
				gone = append(gone, want[i])
				i++
			}
			if i == 0 {
				// At or past the end of the log: an offset Kafka never had.
				gone = append(gone, want...)
				break
			}
			want = want[i:]
			continue
		}
		last := recs[len(recs)-1].Offset
		i := 0
		for _, rec := range recs {
			for i < len(want) && want[i].Offset < rec.Offset {
				gone = append(gone, want[i]) // a hole where it should be
				i++
			}
			if i < len(want) && want[i].Offset == rec.Offset {
				if p, ok := payloadOf(rec, want[i]); ok {
					out[want[i].ID] = p
				} else {
					gone = append(gone, want[i])
				}
				i++
			}
		}
		for i < len(want) && want[i].Offset <= last {
			gone = append(gone, want[i])
			i++
		}
		want = want[i:]
	}
	return gone, nil
}

// payloadOf checks that rec is ref's event and returns its payload.
func payloadOf(rec *kgo.Record, ref Ref) (Payload, bool) {
	ev, err := record.ParseEvent(rec)
	if err != nil || ev.ID != ref.ID {
		return Payload{}, false
	}
	return Payload{Body: rec.Value, Forwarded: ev.Forwarded}, true
}

// fetch asks the partition's leader for the records from offset on, up to
// maxBytes. No records and no error means offset is outside the log:
// logStart says where it starts.
func (r *Reader) fetch(ctx context.Context, topic string, partition int32, offset int64) ([]*kgo.Record, int64, error) {
	for tries := 0; ; tries++ {
		// Leaders are cached for a while; a refusal below refreshes them.
		limit := 30 * time.Second
		if tries > 0 {
			limit = 0
		}
		leader, topicID, err := r.leader(ctx, topic, partition, limit)
		if err != nil {
			return nil, 0, err
		}
		req := kmsg.NewPtrFetchRequest()
		req.MaxWaitMillis = 0
		req.MinBytes = 1
		req.MaxBytes = r.maxBytes
		req.SessionEpoch = -1
		t := kmsg.NewFetchRequestTopic()
		t.Topic, t.TopicID = topic, topicID
		pr := kmsg.NewFetchRequestTopicPartition()
		pr.Partition, pr.FetchOffset, pr.PartitionMaxBytes = partition, offset, r.maxBytes
		t.Partitions = append(t.Partitions, pr)
		req.Topics = append(req.Topics, t)
		resp, err := r.cl.Broker(int(leader)).Request(ctx, req)
		if err != nil {
			return nil, 0, fmt.Errorf("%w: fetch %s/%d at %d: %v", ErrKafkaUnavailable, topic, partition, offset, err)
		}
		fr := resp.(*kmsg.FetchResponse)
		if err := kerr.ErrorForCode(fr.ErrorCode); err != nil {
			return nil, 0, fmt.Errorf("%w: fetch %s/%d at %d: %v", ErrKafkaUnavailable, topic, partition, offset, err)
		}
		if len(fr.Topics) != 1 || len(fr.Topics[0].Partitions) != 1 {
			return nil, 0, fmt.Errorf("%w: fetch %s/%d at %d: an answer about other partitions", ErrKafkaUnavailable, topic, partition, offset)
		}
		rp := &fr.Topics[0].Partitions[0]
		fp, _ := kgo.ProcessFetchPartition(kgo.ProcessFetchPartitionOpts{Offset: offset, Topic: topic, Partition: partition}, rp, kgo.DefaultDecompressor(), nil)
		switch {
		case errors.Is(fp.Err, kerr.OffsetOutOfRange):
			// Brokers need not say where the log starts with this error.
			start, err := r.logStart(ctx, topic, leader, partition)
			return nil, start, err
		case fp.Err != nil && kerr.IsRetriable(fp.Err) && tries == 0:
			continue // a leader that moved: ask the new one
		case fp.Err != nil:
			return nil, 0, fmt.Errorf("%w: fetch %s/%d at %d: %v", ErrKafkaUnavailable, topic, partition, offset, fp.Err)
		}
		if len(fp.Records) == 0 && offset < rp.HighWatermark {
			// A batch larger than maxBytes (the topic's limit was raised
			// past this reader's): nothing is returned for it.
			return nil, 0, fmt.Errorf("%w: fetch %s/%d at %d: a batch larger than %d bytes (RELAY_MAX_BODY_BYTES)", ErrKafkaUnavailable, topic, partition, offset, r.maxBytes)
		}
		if len(fp.Records) == 0 {
			return nil, rp.LogStartOffset, nil // at or past the end
		}
		return fp.Records, rp.LogStartOffset, nil
	}
}

// logStart asks the partition's leader where its log starts now.
func (r *Reader) logStart(ctx context.Context, topic string, leader, partition int32) (int64, error) {
	req := kmsg.NewPtrListOffsetsRequest()
	t := kmsg.NewListOffsetsRequestTopic()
	t.Topic = topic
	p := kmsg.NewListOffsetsRequestTopicPartition()
	p.Partition, p.Timestamp = partition, -2 // the earliest offset
	t.Partitions = append(t.Partitions, p)
	req.Topics = append(req.Topics, t)
	resp, err := r.cl.Broker(int(leader)).Request(ctx, req)
	if err != nil {
		return 0, fmt.Errorf("%w: log start of %s/%d: %v", ErrKafkaUnavailable, topic, partition, err)
	}
	lr := resp.(*kmsg.ListOffsetsResponse)
	if len(lr.Topics) != 1 || len(lr.Topics[0].Partitions) != 1 {
		return 0, fmt.Errorf("%w: log start of %s/%d: an answer about other partitions", ErrKafkaUnavailable, topic, partition)
	}
	lp := lr.Topics[0].Partitions[0]
	if err := kerr.ErrorForCode(lp.ErrorCode); err != nil {
		return 0, fmt.Errorf("%w: log start of %s/%d: %v", ErrKafkaUnavailable, topic, partition, err)
	}
	return lp.Offset, nil
}

// leader returns the partition's leader and the topic's id, from metadata
// at most limit old.
func (r *Reader) leader(ctx context.Context, topic string, partition int32, limit time.Duration) (int32, [16]byte, error) {
	req := kmsg.NewPtrMetadataRequest()
	t := kmsg.NewMetadataRequestTopic()
	t.Topic = kmsg.StringPtr(topic)
	req.Topics = append(req.Topics, t)
	resp, err := r.cl.RequestCachedMetadata(ctx, req, limit)
	if err != nil {
		return 0, [16]byte{}, fmt.Errorf("%w: metadata of %s: %v", ErrKafkaUnavailable, topic, err)
	}
	for _, mt := range resp.Topics {
		if mt.Topic == nil || *mt.Topic != topic {
			continue
		}
		if err := kerr.ErrorForCode(mt.ErrorCode); err != nil {
			return 0, [16]byte{}, fmt.Errorf("%w: metadata of %s: %v", ErrKafkaUnavailable, topic, err)
		}
		for _, mp := range mt.Partitions {
			if mp.Partition == partition && mp.Leader >= 0 {
				return mp.Leader, mt.TopicID, nil
			}
		}
	}
	return 0, [16]byte{}, fmt.Errorf("%w: no leader for %s/%d", ErrKafkaUnavailable, topic, partition)
}

// RecordAt returns the record at offset of topic's partition, read from
// Kafka alone (it serves any of Relay's topics, which the archive does
// not): ErrExpired when the log no longer has it (retention) or never had.
func (r *Reader) RecordAt(ctx context.Context, topic string, partition int32, offset int64) (*kgo.Record, error) {
	recs, _, err := r.fetch(ctx, topic, partition, offset)
	if err != nil {
		return nil, err
	}
	for _, rec := range recs {
		if rec.Offset == offset {
			return rec, nil
		}
		if rec.Offset > offset {
			break // compacted or a transaction marker: not there
		}
	}
	return nil, ErrExpired
}

// fromArchive reads an event Kafka no longer has from the archive.
func (r *Reader) fromArchive(ctx context.Context, ref Ref) (Payload, error) {
	if r.archive == nil {
		return Payload{}, ErrExpired
	}
	line, err := r.archive.Find(ctx, ref.SourceID, ref.ReceivedAt, ref.Partition, ref.Offset)
	switch {
	case errors.Is(err, archivefile.ErrNotArchived):
		return Payload{}, ErrExpired
	case errors.Is(err, archivefile.ErrGarbled):
		r.log.ErrorContext(ctx, "archived event unreadable; answered as expired", "event_id", ref.ID, "error", err)
		return Payload{}, ErrExpired
	case err != nil:
		return Payload{}, fmt.Errorf("%w: %v", ErrArchiveUnavailable, err)
	}
	body, err := line.Payload()
	if err != nil || line.EventID != ref.ID {
		r.log.ErrorContext(ctx, "archived event unreadable; answered as expired", "event_id", ref.ID, "partition", ref.Partition, "offset", ref.Offset, "error", err)
		return Payload{}, ErrExpired
	}
	// The line keeps every record header, by name: read it as the record.
	rec := &kgo.Record{Value: body}
	for k, v := range line.Headers {
		rec.Headers = append(rec.Headers, kgo.RecordHeader{Key: k, Value: []byte(v)})
	}
	slices.SortFunc(rec.Headers, func(a, b kgo.RecordHeader) int { return cmp.Compare(a.Key, b.Key) })
	ev, err := record.ParseEvent(rec)
	if err != nil {
		r.log.ErrorContext(ctx, "archived event unreadable; answered as expired", "event_id", ref.ID, "error", err)
		return Payload{}, ErrExpired
	}
	return Payload{Body: body, Forwarded: ev.Forwarded}, nil
}
