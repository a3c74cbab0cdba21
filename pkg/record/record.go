// Package record defines Relay's Kafka topics and the records on them: topic
// names, header names (the same as the `header` options in
// proto/relay/v1/record.proto) and typed views of event and delivery records.
// Nothing else in Relay spells a topic or header name.
package record

import (
	"errors"
	"fmt"
	"net/textproto"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/twmb/franz-go/pkg/kgo"
)

// Topic names, before any RELAY_KAFKA_TOPIC_PREFIX.
const (
	// TopicEvents holds every accepted event, keyed by event id.
	TopicEvents = "relay.events"
	// TopicDeliveries holds replays and DLQ redrives (delay 0), keyed by subscription id.
	TopicDeliveries = "relay.deliveries"
	// TopicDLQ holds parked deliveries, keyed by subscription id.
	TopicDLQ = "relay.dlq"
	// RetryTopicPrefix starts the name of every delay-tier topic.
	RetryTopicPrefix = "relay.retry."
)

// Consumer group names, before any RELAY_KAFKA_TOPIC_PREFIX.
const (
	GroupDeliver      = "relay-deliver"
	GroupDeliverRetry = "relay-deliver-retry"
	GroupArchive      = "relay-archive"
	GroupCount        = "relay-count"
	// GroupRedrive holds, as committed offsets, how far relay.dlq has been redriven.
	GroupRedrive = "relay-dlq-redrive"
)

// Topics are the topic and group names of one Relay deployment. A prefix lets
// several deployments (or test runs) share a cluster without seeing each
// other's records.
type Topics struct {
	Prefix     string
	Events     string
	Deliveries string
	DLQ        string
	Tiers      []Tier
}

// NewTopics names the topics of a deployment with the given prefix and retry ladder.
func NewTopics(prefix string, delays []time.Duration) (Topics, error) {
	tiers, err := Tiers(delays)
	if err != nil {
		return Topics{}, err
	}
	for i := range tiers {
		tiers[i].Topic = prefix + tiers[i].Topic
	}
	return Topics{
		Prefix:     prefix,
		Events:     prefix + TopicEvents,
		Deliveries: prefix + TopicDeliveries,
		DLQ:        prefix + TopicDLQ,
		Tiers:      tiers,
	}, nil
}

// Group returns the name of a consumer group of this deployment.
func (t Topics) Group(base string) string { return t.Prefix + base }

// TierIndex returns the index of topic in the retry ladder, or -1.
func (t Topics) TierIndex(topic string) int {
	for i, tr := range t.Tiers {
		if tr.Topic == topic {
			return i
		}
	}
	return -1
}

// RetryInputs are the topics the retry consumer reads: every tier and relay.deliveries.
func (t Topics) RetryInputs() []string {
	out := []string{t.Deliveries}
	for _, tr := range t.Tiers {
		out = append(out, tr.Topic)
	}
	return out
}

// Header names. See proto/relay/v1/record.proto for their meaning.
const (
	HeaderEventID        = "relay-event-id"
	HeaderSourceID       = "relay-source-id"
	HeaderEventType      = "relay-event-type"
	HeaderReceivedAt     = "relay-received-at"
	HeaderContentType    = "content-type"
	HeaderTraceparent    = "traceparent"
	HeaderSubscriptionID = "relay-subscription-id"
	HeaderAttempt        = "relay-attempt"
	HeaderNotBefore      = "relay-not-before"
	HeaderLastStatus     = "relay-last-status"
	HeaderLastError      = "relay-last-error"
	HeaderDeadReason     = "relay-dead-reason"
	HeaderOrigin         = "relay-origin"
	HeaderTier           = "relay-tier"
	HeaderSlot           = "relay-slot"
	HeaderOrderingKey    = "relay-ordering-key"
	HeaderHeadSince      = "relay-head-since"
	// HeaderForwardedPrefix starts the header of each sender request header
	// a source forwards to its subscribers: relay-fwd-x-github-event.
	HeaderForwardedPrefix = "relay-fwd-"
)

// Origins of a delivery record (the relay-origin header).
const (
	OriginRetry    = "retry"
	OriginDeferred = "deferred"
	OriginReplay   = "replay"
	OriginRedrive  = "redrive"
	// OriginHeld is a first attempt held at fan-out because its
	// subscription could not be read: whether the event matches the
	// subscription is checked again once it can be.
	OriginHeld = "held"
	// OriginThrottled is a delivery waiting, without spending an attempt,
	// for the time its subscription's limiter reserved for it (Slot).
	OriginThrottled = "throttled"
	// OriginOrdered is the first attempt of an ordered delivery that
	// waited behind another event of its key and is now at the front.
	OriginOrdered = "ordered"
)

// Dead reasons (the relay-dead-reason header).
const (
	DeadRetriesExhausted     = "retries_exhausted"
	DeadNonRetryableStatus   = "non_retryable_status"
	DeadGone                 = "gone"
	DeadSubscriptionDisabled = "subscription_disabled"
)

// DeadReasons are every dead reason.
var DeadReasons = []string{DeadRetriesExhausted, DeadNonRetryableStatus, DeadGone, DeadSubscriptionDisabled}

// maxErrorLen bounds the relay-last-error header.
const maxErrorLen = 512

// Bounds on what a record's headers carry besides Relay's own, which ingest
// enforces on every event it accepts. Together they keep every record's
// headers within HeaderRoom, so a topic that admits a body of
// RELAY_MAX_BODY_BYTES plus HeaderRoom admits every record Relay writes.
const (
	// MaxForwarded is the most headers a source forwards.
	MaxForwarded = 20
	// MaxHeaderName bounds a forwarded header's name.
	MaxHeaderName = 256
	// MaxForwardedValue bounds a forwarded header's value: a record header
	// is not the place for a header as long as a body.
	MaxForwardedValue = 8 << 10
	// MaxContentType bounds the content-type header.
	MaxContentType = 1 << 10
	// MaxEventType bounds an event type.
	MaxEventType = 200
	// HeaderRoom is what a record may take beyond its body: its key, its
	// headers and the framing of both, with a wide margin over the largest
	// record these bounds allow (record_test.go builds it).
	HeaderRoom = 256 << 10
)

// ErrMalformed is wrapped by every parse error: the record lacks a header
// Relay needs or carries an unparsable one. Such a record can never be
// processed and is logged and skipped rather than retried forever.
var ErrMalformed = errors.New("malformed record")

// Event is a record on relay.events: the sender's body and what ingest knew
// about it.
type Event struct {
	ID          string
	SourceID    string
	Type        string
	ReceivedAt  time.Time
	ContentType string
	// Forwarded are the sender's request headers its source forwards to
	// subscribers, in the order the source names them.
	Forwarded []ForwardedHeader
	// OrderingKey is the event's ordering key, as its source names it
	// (package ordering); empty for none.
	OrderingKey string
	Body        []byte
}

// ForwardedHeader is one forwarded request header: its canonical name
// (X-Github-Event) and its value, several joined by ", ".
type ForwardedHeader struct {
	Name, Value string
}

// Record returns the record for e on the events topic. The traceparent
// header is left to the kotel hook, which writes the producing span's context.
func (e Event) Record(topic string) *kgo.Record {
	// An event with an ordering key is keyed by it, so that the events of
	// a key share a partition (kafka.StickyFor hashes it).
	key := e.ID
	if e.OrderingKey != "" {
		key = e.OrderingKey
	}
	return &kgo.Record{
		Topic:   topic,
		Key:     []byte(key),
		Value:   e.Body,
		Headers: e.headers(make([]kgo.RecordHeader, 0, 6)),
	}
}

func (e Event) headers(h []kgo.RecordHeader) []kgo.RecordHeader {
	h = append(h,
		kgo.RecordHeader{Key: HeaderEventID, Value: []byte(e.ID)},
		kgo.RecordHeader{Key: HeaderSourceID, Value: []byte(e.SourceID)},
		kgo.RecordHeader{Key: HeaderEventType, Value: []byte(e.Type)},
		kgo.RecordHeader{Key: HeaderReceivedAt, Value: strconv.AppendInt(nil, e.ReceivedAt.UnixMilli(), 10)},
	)
	if e.ContentType != "" {
		h = append(h, kgo.RecordHeader{Key: HeaderContentType, Value: []byte(e.ContentType)})
	}
	if e.OrderingKey != "" {
		h = append(h, kgo.RecordHeader{Key: HeaderOrderingKey, Value: []byte(e.OrderingKey)})
	}
	for _, f := range e.Forwarded {
		h = append(h, kgo.RecordHeader{Key: HeaderForwardedPrefix + strings.ToLower(f.Name), Value: []byte(f.Value)})
	}
	return h
}

// ParseEvent reads an Event from a record carrying event headers.
func ParseEvent(r *kgo.Record) (Event, error) {
	e := Event{Body: r.Value}
	var received string
	for _, h := range r.Headers {
		switch h.Key {
		case HeaderEventID:
			e.ID = string(h.Value)
		case HeaderSourceID:
			e.SourceID = string(h.Value)
		case HeaderEventType:
			e.Type = string(h.Value)
		case HeaderReceivedAt:
			received = string(h.Value)
		case HeaderContentType:
			e.ContentType = string(h.Value)
		case HeaderOrderingKey:
			e.OrderingKey = string(h.Value)
		default:
			if name, ok := strings.CutPrefix(h.Key, HeaderForwardedPrefix); ok && name != "" {
				e.Forwarded = append(e.Forwarded, ForwardedHeader{Name: textproto.CanonicalMIMEHeaderKey(name), Value: string(h.Value)})
			}
		}
	}
	switch {
	case e.ID == "":
		return e, fmt.Errorf("%w: no %s header", ErrMalformed, HeaderEventID)
	case e.SourceID == "":
		return e, fmt.Errorf("%w: no %s header", ErrMalformed, HeaderSourceID)
	}
	if received != "" {
		ms, err := strconv.ParseInt(received, 10, 64)
		if err != nil {
			return e, fmt.Errorf("%w: %s %q", ErrMalformed, HeaderReceivedAt, received)
		}
		e.ReceivedAt = time.UnixMilli(ms)
	} else {
		e.ReceivedAt = r.Timestamp
	}
	return e, nil
}

// Delivery is a record on a retry tier, relay.deliveries or relay.dlq: one
// event on its way to one subscription.
type Delivery struct {
	Event
	SubscriptionID string
	// Attempt is the attempt this record will make (retry and deliveries
	// topics) or the number of attempts made (DLQ).
	Attempt    int
	NotBefore  time.Time
	LastStatus int
	LastError  string
	DeadReason string
	Origin     string
	// Tier is how many tiers of the retry ladder the delivery has waited on:
	// 0 before the first (a first attempt, a replay, a redrive), k after the
	// k-th. A deferral keeps it, so that deferring spends no rung. It is -1
	// when a record does not say (one written before it was carried): its
	// topic then tells.
	Tier int
	// Slot is when a throttled delivery may be attempted, as its
	// subscription's limiter reserved it; zero for none.
	Slot time.Time
	// HeadSince is when an ordered delivery came to the front of its key's
	// queue: what a DLQ entry says about how long it held its key up.
	// Zero for an unordered one.
	HeadSince time.Time
}

// Record returns the record for d on topic. It is always a fresh record, so
// the kotel hook parents its span on the context it is produced with.
func (d Delivery) Record(topic string) *kgo.Record {
	h := d.Event.headers(make([]kgo.RecordHeader, 0, 12))
	h = append(h,
		kgo.RecordHeader{Key: HeaderSubscriptionID, Value: []byte(d.SubscriptionID)},
		kgo.RecordHeader{Key: HeaderAttempt, Value: strconv.AppendInt(nil, int64(d.Attempt), 10)},
		kgo.RecordHeader{Key: HeaderNotBefore, Value: strconv.AppendInt(nil, d.NotBefore.UnixMilli(), 10)},
		kgo.RecordHeader{Key: HeaderLastStatus, Value: strconv.AppendInt(nil, int64(d.LastStatus), 10)},
		kgo.RecordHeader{Key: HeaderTier, Value: strconv.AppendInt(nil, int64(max(d.Tier, 0)), 10)},
	)
	if d.LastError != "" {
		h = append(h, kgo.RecordHeader{Key: HeaderLastError, Value: []byte(TruncateError(d.LastError))})
	}
	if d.DeadReason != "" {
		h = append(h, kgo.RecordHeader{Key: HeaderDeadReason, Value: []byte(d.DeadReason)})
	}
	if d.Origin != "" {
		h = append(h, kgo.RecordHeader{Key: HeaderOrigin, Value: []byte(d.Origin)})
	}
	if !d.Slot.IsZero() {
		h = append(h, kgo.RecordHeader{Key: HeaderSlot, Value: strconv.AppendInt(nil, d.Slot.UnixMicro(), 10)})
	}
	if !d.HeadSince.IsZero() {
		h = append(h, kgo.RecordHeader{Key: HeaderHeadSince, Value: strconv.AppendInt(nil, d.HeadSince.UnixMilli(), 10)})
	}
	return &kgo.Record{Topic: topic, Key: []byte(d.SubscriptionID), Value: d.Body, Headers: h}
}

// ParseDelivery reads a Delivery from a record on a retry, deliveries or DLQ topic.
func ParseDelivery(r *kgo.Record) (Delivery, error) {
	ev, err := ParseEvent(r)
	if err != nil {
		return Delivery{}, err
	}
	d := Delivery{Event: ev, Tier: -1}
	attempt := false
	for _, h := range r.Headers {
		v := string(h.Value)
		switch h.Key {
		case HeaderSubscriptionID:
			d.SubscriptionID = v
		case HeaderAttempt:
			// 0 only on relay.dlq: a delivery parked before its first
			// attempt (its subscription disabled while it waited).
			if d.Attempt, err = strconv.Atoi(v); err != nil || d.Attempt < 0 {
				return d, fmt.Errorf("%w: %s %q", ErrMalformed, HeaderAttempt, v)
			}
			attempt = true
		case HeaderNotBefore:
			ms, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				return d, fmt.Errorf("%w: %s %q", ErrMalformed, HeaderNotBefore, v)
			}
			d.NotBefore = time.UnixMilli(ms)
		case HeaderLastStatus:
			// Informational (the DLQ listing shows it): one that does not
			// parse reads as 0, "no response", rather than making the whole
			// delivery unreadable, which would skip it.
			if d.LastStatus, err = strconv.Atoi(v); err != nil {
				d.LastStatus = 0
			}
		case HeaderLastError:
			d.LastError = v
		case HeaderDeadReason:
			d.DeadReason = v
		case HeaderOrigin:
			d.Origin = v
		case HeaderTier:
			if d.Tier, err = strconv.Atoi(v); err != nil || d.Tier < 0 {
				return d, fmt.Errorf("%w: %s %q", ErrMalformed, HeaderTier, v)
			}
		case HeaderSlot:
			us, err := strconv.ParseInt(v, 10, 64)
			if err != nil || us <= 0 {
				return d, fmt.Errorf("%w: %s %q", ErrMalformed, HeaderSlot, v)
			}
			d.Slot = time.UnixMicro(us)
		case HeaderHeadSince:
			// Informational, like the last status: unparsable reads as none.
			if ms, err := strconv.ParseInt(v, 10, 64); err == nil && ms > 0 {
				d.HeadSince = time.UnixMilli(ms)
			}
		}
	}
	if d.SubscriptionID == "" {
		return d, fmt.Errorf("%w: no %s header", ErrMalformed, HeaderSubscriptionID)
	}
	if !attempt {
		return d, fmt.Errorf("%w: no %s header", ErrMalformed, HeaderAttempt)
	}
	return d, nil
}

// TruncateError bounds an error message for a header or a stored state,
// cutting on a rune boundary.
func TruncateError(s string) string {
	if len(s) <= maxErrorLen {
		return s
	}
	cut := maxErrorLen
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut]
}

// Tier is one delay tier of the retry ladder.
type Tier struct {
	Delay time.Duration
	Topic string
}

// DefaultTierDelays are the delays of the default retry ladder: with the first
// attempt, 7 attempts over about 7h13m before a delivery is parked.
var DefaultTierDelays = []time.Duration{5 * time.Second, 30 * time.Second, 2 * time.Minute, 10 * time.Minute, time.Hour, 6 * time.Hour}

// Tiers returns the ladder for delays, which must be positive and strictly
// increasing (so each tier has its own topic and backoff grows).
func Tiers(delays []time.Duration) ([]Tier, error) {
	if len(delays) == 0 {
		return nil, errors.New("at least one retry tier is required")
	}
	out := make([]Tier, len(delays))
	for i, d := range delays {
		if d < time.Millisecond {
			return nil, fmt.Errorf("retry tier %d: delay %v is below 1ms", i+1, d)
		}
		if i > 0 && d <= delays[i-1] {
			return nil, fmt.Errorf("retry tier %d: delay %v is not longer than the tier before it (%v)", i+1, d, delays[i-1])
		}
		out[i] = Tier{Delay: d, Topic: RetryTopic(d)}
	}
	return out, nil
}

// RetryTopic returns the topic of the tier with delay d, such as relay.retry.5s.
func RetryTopic(d time.Duration) string { return RetryTopicPrefix + FormatDelay(d) }

// FormatDelay writes d in its largest whole unit: 6h, 10m, 5s, 250ms.
func FormatDelay(d time.Duration) string {
	switch {
	case d%time.Hour == 0:
		return strconv.FormatInt(int64(d/time.Hour), 10) + "h"
	case d%time.Minute == 0:
		return strconv.FormatInt(int64(d/time.Minute), 10) + "m"
	case d%time.Second == 0:
		return strconv.FormatInt(int64(d/time.Second), 10) + "s"
	default:
		return strconv.FormatInt(int64(d/time.Millisecond), 10) + "ms"
	}
}

// Header returns the value of the first header named key, or "".
func Header(r *kgo.Record, key string) string {
	for _, h := range r.Headers {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}
