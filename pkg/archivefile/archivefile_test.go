package archivefile

import (
	"bytes"
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
		"json":   []byte(`{"id":820982911946154508,"nested":{"a":[1,2.5e10]}}`),
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
			// Exact numbers: 820982911946154508 does not survive float64.
			if string(payload) != string(body) {
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

// A line keeps its event's body byte for byte, whatever the body: the
// archive is where a payload is read from once Kafka has deleted it.
// Compact JSON stays JSON (readable in the object), HTML characters and
// all; any other body is base64.
func TestLinesKeepBodiesByteForByte(t *testing.T) {
	for name, tc := range map[string]struct {
		body   string
		asJSON bool
	}{
		"compact JSON":          {`{"a":"<b>&</b>","n":1.50,"u":"é\u2028"}`, true},
		"JSON with whitespace":  {"{\"a\": 1,\n  \"b\": [1, 2]}\n", false},
		"not UTF-8":             {"\x00\xff\xfe binary", false},
		"invalid UTF-8 in JSON": {"{\"a\":\"\xff\"}", false},
		"form":                  {"token=abc&x=1", false},
	} {
		t.Run(name, func(t *testing.T) {
			ev := record.Event{ID: "evt_1", SourceID: "src_1", Type: "t", ReceivedAt: time.Now(), Body: []byte(tc.body)}
			var buf bytes.Buffer
			if err := Encoder(&buf).Encode(NewLine(ev, nil, 0, 1)); err != nil {
				t.Fatal(err)
			}
			if n := bytes.Count(buf.Bytes(), []byte("\n")); n != 1 {
				t.Fatalf("the line holds %d newlines", n)
			}
			var back Line
			if err := json.Unmarshal(buf.Bytes(), &back); err != nil {
				t.Fatal(err)
			}
			if (back.PayloadJSON != nil) != tc.asJSON {
				t.Fatalf("kept as JSON: %v, want %v", back.PayloadJSON != nil, tc.asJSON)
			}
			got, err := back.Payload()
			if err != nil || string(got) != tc.body {
				t.Fatalf("payload %q, %v; want %q", got, err, tc.body)
			}
		})
	}
}
