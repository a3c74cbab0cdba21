package record

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/relayhq/relay/pkg/relaypb"
	"github.com/twmb/franz-go/pkg/kgo"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// TestHeaderNamesMatchProto keeps the Go constants and the proto schema equal:
// a header renamed in one place and not the other fails here.
func TestHeaderNamesMatchProto(t *testing.T) {
	want := map[string]string{
		"relay.v1.EventHeaders.event_id":           HeaderEventID,
		"relay.v1.EventHeaders.source_id":          HeaderSourceID,
		"relay.v1.EventHeaders.event_type":         HeaderEventType,
		"relay.v1.EventHeaders.received_at":        HeaderReceivedAt,
		"relay.v1.EventHeaders.content_type":       HeaderContentType,
		"relay.v1.EventHeaders.traceparent":        HeaderTraceparent,
		"relay.v1.EventHeaders.forwarded":          HeaderForwardedPrefix,
		"relay.v1.EventHeaders.ordering_key":       HeaderOrderingKey,
		"relay.v1.DeliveryHeaders.subscription_id": HeaderSubscriptionID,
		"relay.v1.DeliveryHeaders.attempt":         HeaderAttempt,
		"relay.v1.DeliveryHeaders.not_before":      HeaderNotBefore,
		"relay.v1.DeliveryHeaders.last_status":     HeaderLastStatus,
		"relay.v1.DeliveryHeaders.last_error":      HeaderLastError,
		"relay.v1.DeliveryHeaders.dead_reason":     HeaderDeadReason,
		"relay.v1.DeliveryHeaders.origin":          HeaderOrigin,
		"relay.v1.DeliveryHeaders.tier":            HeaderTier,
		"relay.v1.DeliveryHeaders.slot":            HeaderSlot,
		"relay.v1.DeliveryHeaders.head_since":      HeaderHeadSince,
	}
	seen := 0
	for _, msg := range []protoreflect.MessageDescriptor{
		(&relaypb.EventHeaders{}).ProtoReflect().Descriptor(),
		(&relaypb.DeliveryHeaders{}).ProtoReflect().Descriptor(),
	} {
		fields := msg.Fields()
		for i := 0; i < fields.Len(); i++ {
			f := fields.Get(i)
			name := string(f.FullName())
			got, _ := proto.GetExtension(f.Options(), relaypb.E_Header).(string)
			if want[name] == "" {
				t.Errorf("proto field %s has no Go constant in package record", name)
				continue
			}
			if got != want[name] {
				t.Errorf("%s: proto header %q, Go constant %q", name, got, want[name])
			}
			seen++
		}
	}
	if seen != len(want) {
		t.Errorf("checked %d proto fields, have %d Go constants", seen, len(want))
	}
}

func TestEventRoundTrip(t *testing.T) {
	at := time.UnixMilli(1_700_000_000_000)
	e := Event{ID: "evt_1", SourceID: "src_1", Type: "payment.succeeded", ReceivedAt: at, ContentType: "application/json", Body: []byte(`{"a":1}`),
		Forwarded: []ForwardedHeader{{"X-Github-Event", "push"}, {"X-Hub-Signature-256", "sha256=ab"}}}
	r := e.Record(TopicEvents)
	if got := Header(r, "relay-fwd-x-github-event"); got != "push" {
		t.Fatalf("forwarded header on the record = %q, want it under relay-fwd-x-github-event", got)
	}
	if r.Topic != TopicEvents || string(r.Key) != "evt_1" {
		t.Fatalf("topic/key = %s/%s", r.Topic, r.Key)
	}
	got, err := ParseEvent(r)
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != e.ID || got.SourceID != e.SourceID || got.Type != e.Type || !got.ReceivedAt.Equal(at) || got.ContentType != e.ContentType || string(got.Body) != string(e.Body) {
		t.Fatalf("round trip = %+v", got)
	}
	if len(got.Forwarded) != 2 || got.Forwarded[0] != e.Forwarded[0] || got.Forwarded[1] != e.Forwarded[1] {
		t.Fatalf("forwarded headers round trip = %v, want %v", got.Forwarded, e.Forwarded)
	}
	// An event with an ordering key is keyed by it, so that its key's
	// events share a partition; one without, by its id.
	keyed := e
	keyed.OrderingKey = "cus_1"
	if r := keyed.Record(TopicEvents); string(r.Key) != "cus_1" {
		t.Fatalf("a keyed event's record key = %q", r.Key)
	} else if back, err := ParseEvent(r); err != nil || back.OrderingKey != "cus_1" {
		t.Fatalf("ordering key round trip = %q (%v)", back.OrderingKey, err)
	}
	// A delivery of the event (a retry, the DLQ) carries them on.
	d, err := ParseDelivery(Delivery{Event: got, SubscriptionID: "sub_1", Attempt: 2}.Record(TopicDLQ))
	if err != nil || len(d.Forwarded) != 2 || d.Forwarded[1] != e.Forwarded[1] {
		t.Fatalf("a delivery's forwarded headers = %v (%v)", d.Forwarded, err)
	}
}

func TestDeliveryRoundTrip(t *testing.T) {
	d := Delivery{
		Event:          Event{ID: "evt_1", SourceID: "src_1", Type: "t", ReceivedAt: time.UnixMilli(5), OrderingKey: "cus_9", Body: []byte("x")},
		SubscriptionID: "sub_1", Attempt: 3, NotBefore: time.UnixMilli(99), LastStatus: 503,
		LastError: strings.Repeat("é", 400), DeadReason: DeadRetriesExhausted, Origin: OriginRetry, Tier: 2,
		Slot: time.UnixMicro(1_765_000_000_123_456), HeadSince: time.UnixMilli(77),
	}
	r := d.Record(RetryTopic(30 * time.Second))
	if r.Topic != "relay.retry.30s" || string(r.Key) != "sub_1" {
		t.Fatalf("topic/key = %s/%s", r.Topic, r.Key)
	}
	got, err := ParseDelivery(r)
	if err != nil {
		t.Fatal(err)
	}
	if got.SubscriptionID != "sub_1" || got.Attempt != 3 || got.NotBefore.UnixMilli() != 99 || got.LastStatus != 503 || got.DeadReason != d.DeadReason || got.Origin != OriginRetry || got.Tier != 2 || !got.Slot.Equal(d.Slot) ||
		got.OrderingKey != "cus_9" || !got.HeadSince.Equal(d.HeadSince) {
		t.Fatalf("round trip = %+v", got)
	}
	if len(got.LastError) > maxErrorLen || !strings.HasPrefix(d.LastError, got.LastError) {
		t.Fatalf("last error not truncated on a rune boundary: %d bytes", len(got.LastError))
	}

	// The last status is only shown: a damaged one must not make the
	// delivery unreadable, which would skip it.
	for i, h := range r.Headers {
		if h.Key == HeaderLastStatus {
			r.Headers[i].Value = []byte("5x3")
		}
	}
	if got, err = ParseDelivery(r); err != nil || got.LastStatus != 0 || got.Attempt != 3 {
		t.Fatalf("with a damaged last status: %+v, %v; want it read, with last status 0", got, err)
	}

	// A record written before the tier was carried does not say: -1, and
	// its topic tells.
	var older []kgo.RecordHeader
	for _, h := range r.Headers {
		if h.Key != HeaderTier {
			older = append(older, h)
		}
	}
	r.Headers = older
	if got, err = ParseDelivery(r); err != nil || got.Tier != -1 {
		t.Fatalf("without a tier header: %+v, %v; want tier -1", got, err)
	}
}

func TestParseRejectsMalformed(t *testing.T) {
	cases := map[string]*kgo.Record{
		"no event id":  {Headers: []kgo.RecordHeader{{Key: HeaderSourceID, Value: []byte("src")}}},
		"no source id": {Headers: []kgo.RecordHeader{{Key: HeaderEventID, Value: []byte("evt")}}},
		"bad received": {Headers: []kgo.RecordHeader{{Key: HeaderEventID, Value: []byte("e")}, {Key: HeaderSourceID, Value: []byte("s")}, {Key: HeaderReceivedAt, Value: []byte("x")}}},
	}
	for name, r := range cases {
		t.Run(name, func(t *testing.T) {
			if _, err := ParseEvent(r); !errors.Is(err, ErrMalformed) {
				t.Fatalf("err = %v, want ErrMalformed", err)
			}
		})
	}
	ev := Event{ID: "e", SourceID: "s"}.Record(TopicEvents)
	if _, err := ParseDelivery(ev); !errors.Is(err, ErrMalformed) {
		t.Fatalf("event record parsed as a delivery: %v", err)
	}
}

func TestTiers(t *testing.T) {
	tiers, err := Tiers(DefaultTierDelays)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, tr := range tiers {
		names = append(names, tr.Topic)
	}
	if got := strings.Join(names, " "); got != "relay.retry.5s relay.retry.30s relay.retry.2m relay.retry.10m relay.retry.1h relay.retry.6h" {
		t.Fatalf("topics = %s", got)
	}
	if RetryTopic(1500*time.Millisecond) != "relay.retry.1500ms" {
		t.Fatalf("sub-second tier name = %s", RetryTopic(1500*time.Millisecond))
	}
	for name, bad := range map[string][]time.Duration{
		"empty": nil, "not increasing": {time.Second, time.Second}, "zero": {0},
	} {
		if _, err := Tiers(bad); err == nil {
			t.Errorf("%s: Tiers accepted %v", name, bad)
		}
	}
}

func TestTopicsWithPrefix(t *testing.T) {
	tp, err := NewTopics("t1.", []time.Duration{time.Second, 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if tp.Events != "t1.relay.events" || tp.DLQ != "t1.relay.dlq" || tp.Tiers[1].Topic != "t1.relay.retry.2s" || tp.Group(GroupDeliver) != "t1.relay-deliver" {
		t.Fatalf("names = %+v", tp)
	}
	if tp.TierIndex("t1.relay.retry.2s") != 1 || tp.TierIndex("relay.retry.2s") != -1 || tp.TierIndex(tp.Deliveries) != -1 {
		t.Fatal("TierIndex is wrong")
	}
	if got := tp.RetryInputs(); len(got) != 3 || got[0] != tp.Deliveries {
		t.Fatalf("RetryInputs = %v", got)
	}
}

// TestLargestRecordFitsHeaderRoom builds the largest record the bounds
// allow, a DLQ record of an event with every header at its limit, and
// checks that all it carries beyond its body fits in HeaderRoom: topics are
// sized by it, and a record over it would be refused by the broker for good.
func TestLargestRecordFitsHeaderRoom(t *testing.T) {
	ev := Event{
		ID: "evt_" + strings.Repeat("x", 40), SourceID: "src_" + strings.Repeat("x", 40),
		Type: strings.Repeat("t", MaxEventType), ReceivedAt: time.Now(),
		ContentType: strings.Repeat("c", MaxContentType), Body: []byte("{}"),
	}
	for i := 0; i < MaxForwarded; i++ {
		name := fmt.Sprintf("%03d", i) + strings.Repeat("n", MaxHeaderName-3)
		ev.Forwarded = append(ev.Forwarded, ForwardedHeader{Name: name, Value: strings.Repeat("v", MaxForwardedValue)})
	}
	d := Delivery{
		Event: ev, SubscriptionID: "sub_" + strings.Repeat("x", 40), Attempt: 1 << 30, NotBefore: time.Now(),
		LastStatus: 599, LastError: strings.Repeat("e", 4*maxErrorLen), DeadReason: DeadRetriesExhausted, Origin: OriginRedrive,
	}
	r := d.Record(TopicDLQ)
	// The kotel hook adds a traceparent; count a generous one.
	r.Headers = append(r.Headers, kgo.RecordHeader{Key: HeaderTraceparent, Value: make([]byte, 256)})
	// A record's wire form beyond its value: length, attributes, timestamp
	// and offset deltas, key, and per header two lengths, each a varint of
	// at most 5 bytes.
	extra := 5 + 1 + 10 + 5 + 5 + len(r.Key) + 5 + 5
	for _, h := range r.Headers {
		extra += 5 + len(h.Key) + 5 + len(h.Value)
	}
	if extra > HeaderRoom {
		t.Fatalf("the largest record takes %d bytes beyond its body; HeaderRoom is %d", extra, HeaderRoom)
	}
}

// A delivery parked before its first attempt says 0 attempts on relay.dlq
// and must read back (a redrive makes its attempt 1); a negative or absent
// attempt is malformed.
func TestParkedBeforeItsFirstAttempt(t *testing.T) {
	d := Delivery{Event: Event{ID: "evt_1", SourceID: "src_1", Type: "t", Body: []byte("x")}, SubscriptionID: "sub_1", DeadReason: DeadSubscriptionDisabled}
	r := d.Record("relay.dlq")
	if got, err := ParseDelivery(r); err != nil || got.Attempt != 0 {
		t.Fatalf("attempt 0: %+v, %v", got, err)
	}
	set := func(v string) *kgo.Record {
		c := *r
		c.Headers = nil
		for _, h := range r.Headers {
			if h.Key == HeaderAttempt {
				if v == "" {
					continue
				}
				h.Value = []byte(v)
			}
			c.Headers = append(c.Headers, h)
		}
		return &c
	}
	for _, v := range []string{"-1", "x", ""} {
		if _, err := ParseDelivery(set(v)); !errors.Is(err, ErrMalformed) {
			t.Errorf("attempt %q: %v, want malformed", v, err)
		}
	}
}
