package archive

import (
	"encoding/json"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	"github.com/relayhq/relay/pkg/record"
	"github.com/relayhq/relay/pkg/relaypb"
)

// TestLineMatchesProtoSchema: every line Relay writes parses as the
// ArchiveLine message of proto/relay/v1, with no unknown field.
func TestLineMatchesProtoSchema(t *testing.T) {
	at := time.Date(2026, 11, 29, 13, 4, 5, 123_000_000, time.UTC)
	for name, body := range map[string][]byte{
		"json":   []byte(`{"id": 820982911946154508, "nested": {"a": [1, 2.5e10]}}`),
		"binary": []byte("token=abc&x=\x00\xff"),
	} {
		t.Run(name, func(t *testing.T) {
			ev := record.Event{ID: "evt_1", SourceID: "src_1", Type: "orders/create", ReceivedAt: at, ContentType: "application/json", Body: body}
			b, err := json.Marshal(NewLine(ev, map[string]string{"relay-event-id": "evt_1"}, 2, 77))
			if err != nil {
				t.Fatal(err)
			}
			var msg relaypb.ArchiveLine
			if err := protojson.Unmarshal(b, &msg); err != nil {
				t.Fatalf("line does not match the proto schema: %v\n%s", err, b)
			}
			if msg.GetEventId() != "evt_1" || msg.GetOffset() != 77 || msg.GetPartition() != 2 || !msg.GetReceivedAt().AsTime().Equal(at) {
				t.Fatalf("parsed = %v", &msg)
			}
			var back Line
			if err := json.Unmarshal(b, &back); err != nil {
				t.Fatal(err)
			}
			payload, err := back.Payload()
			if err != nil {
				t.Fatal(err)
			}
			if name == "json" {
				// Exact numbers: 820982911946154508 does not survive float64.
				if string(payload) != `{"id":820982911946154508,"nested":{"a":[1,2.5e10]}}` {
					t.Fatalf("payload = %s", payload)
				}
			} else if string(payload) != string(body) {
				t.Fatalf("payload = %q", payload)
			}
		})
	}
}

func TestKeys(t *testing.T) {
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.FixedZone("x", 3600))
	k := ObjectKey("src_1", at, 4, 1234)
	if k != "events/source=src_1/dt=2026-01-02/hour=02/p4-o1234.ndjson.gz" {
		t.Fatalf("key = %s", k)
	}
	if p, o, ok := ParseObjectKey(k); !ok || p != 4 || o != 1234 {
		t.Fatalf("ParseObjectKey = %d %d %v", p, o, ok)
	}
	if MarkerKey("relay.events", 4, 1234) != "_relay/batches/relay.events/p4-o1234.json" {
		t.Fatal(MarkerKey("relay.events", 4, 1234))
	}
}
