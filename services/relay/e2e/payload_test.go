package e2e

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/relayhq/relay/pkg/testenv"
)

type eventView struct {
	ID             string          `json:"id"`
	Size           int             `json:"size"`
	Payload        json.RawMessage `json:"payload"`
	PayloadBase64  string          `json:"payload_base64"`
	PayloadExpired bool            `json:"payload_expired"`
}

func (e *env) event(src, evt string) eventView {
	e.t.Helper()
	var v eventView
	if code := e.call("GET", "/sources/"+src+"/events/"+evt, nil, &v); code != 200 {
		e.t.Fatalf("GET event %s: %d", evt, code)
	}
	return v
}

// deleteFromKafka deletes every record of topic, as its retention would.
func (e *env) deleteFromKafka(topic string) {
	e.t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(e.kcfg.Brokers...))
	if err != nil {
		e.t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	adm := kadm.NewClient(cl)
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err != nil {
		e.t.Fatal(err)
	}
	resp, err := adm.DeleteRecords(ctx, ends.Offsets())
	if err == nil {
		err = resp.Error()
	}
	if err != nil {
		e.t.Fatal(err)
	}
}

// TestPayloadsOutliveKafka: an event's body is read from Kafka while Kafka
// has it, and from the archive once Kafka has deleted it, byte for byte (a
// body that is not UTF-8 included); and a range replay delivers events only
// the archive still holds, each body as the sender sent it.
func TestPayloadsOutliveKafka(t *testing.T) {
	e := startServices(t, services{deliver: true, archive: true}, s3vars(t))
	src := e.createSource("relay")
	sent := map[string][]byte{}
	send := func(body []byte, contentType string) string {
		t.Helper()
		code, rep := e.send(src, "relay", body, map[string]string{"Content-Type": contentType})
		if code != 202 {
			t.Fatalf("send: %d %+v", code, rep)
		}
		sent[rep.EventID] = body
		return rep.EventID
	}
	binary := send([]byte{0x00, 0xff, 0xfe, 'r', 'e', 'l', 'a', 'y', 0x80, '\n'}, "application/octet-stream")
	jsonEvt := send([]byte(`{"type":"order.created","html":"<b>&</b>","n":1.50}`), "application/json")
	pretty := send([]byte("{\n  \"type\": \"order.paid\"\n}\n"), "application/json")
	check := func(evt string) {
		t.Helper()
		v := e.event(src.ID, evt)
		switch {
		case v.PayloadExpired:
			t.Fatalf("event %s: payload expired while Kafka or the archive holds it", evt)
		case v.PayloadBase64 != "":
			got, err := base64.StdEncoding.DecodeString(v.PayloadBase64)
			if err != nil || !bytes.Equal(got, sent[evt]) {
				t.Fatalf("event %s: payload %q, want %q", evt, got, sent[evt])
			}
		default:
			var a, b any
			if json.Unmarshal(v.Payload, &a) != nil || json.Unmarshal(sent[evt], &b) != nil || fmt.Sprint(a) != fmt.Sprint(b) {
				t.Fatalf("event %s: payload %s, want %s", evt, v.Payload, sent[evt])
			}
		}
	}
	for evt := range sent {
		check(evt)
	}
	testenv.Eventually(t, 60*time.Second, "every event archived", func() bool { return len(e.archivedLines()) == len(sent) })

	e.deleteFromKafka(e.names.Events)
	for evt := range sent {
		check(evt)
	}

	// A subscription created now gets the range from the archive: the
	// bodies byte for byte, each once.
	rc := newReceiver(t, ok200)
	e.subscribe(src.ID, rc.URL, "*")
	time.Sleep(2500 * time.Millisecond) // deliver's subscription cache
	var res struct {
		Events   int            `json:"events"`
		Queued   int            `json:"queued"`
		Skipped  map[string]int `json:"skipped"`
		Complete bool           `json:"complete"`
	}
	from := time.Now().Add(-time.Hour).UTC().Format(time.RFC3339)
	if code := e.call("POST", "/sources/"+src.ID+"/replay?from="+from, nil, &res); code != 202 || res.Queued != 3 || !res.Complete {
		t.Fatalf("range replay = %d %+v", code, res)
	}
	testenv.Eventually(t, 30*time.Second, "the replayed events delivered", func() bool { return len(rc.byWebhookID()) == 3 })
	for _, r := range rc.requests() {
		evt := r.Header.Get("Webhook-Id")
		if !bytes.Equal(r.Body, sent[evt]) {
			t.Fatalf("event %s delivered as %q, sent as %q", evt, r.Body, sent[evt])
		}
	}
	if got := rc.byWebhookID(); got[binary] != 1 || got[jsonEvt] != 1 || got[pretty] != 1 {
		t.Fatalf("deliveries %v", got)
	}
}

// TestRedisHoldsNoPayload sends a 64 KiB event through ingest and deliver and
// reads every key written for it: none holds a value longer than 1 KiB.
func TestRedisHoldsNoPayload(t *testing.T) {
	e := startStack(t, nil)
	rc := newReceiver(t, ok200)
	src := e.createSource("relay")
	sub := e.subscribe(src.ID, rc.URL, "*")
	body := []byte(`{"type":"big","pad":"` + strings.Repeat("p", 64<<10) + `"}`)
	code, rep := e.send(src, "relay", body, nil)
	if code != 202 {
		t.Fatalf("send: %d", code)
	}
	e.waitStatus(src.ID, rep.EventID, sub.ID, "delivered", 30*time.Second)
	rdb := testenv.Redis(t)
	ctx := context.Background()
	var keys []string
	var mu sync.Mutex
	// Every node's keys: a Redis Cluster spreads them over its masters.
	scan := func(ctx context.Context, node redis.UniversalClient) error {
		for _, pattern := range []string{"*" + src.ID + "*", "*" + rep.EventID + "*", "*" + sub.ID + "*"} {
			iter := node.Scan(ctx, 0, pattern, 1000).Iterator()
			for iter.Next(ctx) {
				mu.Lock()
				keys = append(keys, iter.Val())
				mu.Unlock()
			}
			if err := iter.Err(); err != nil {
				return err
			}
		}
		return nil
	}
	var err error
	if cc, ok := rdb.(*redis.ClusterClient); ok {
		err = cc.ForEachMaster(ctx, func(ctx context.Context, node *redis.Client) error { return scan(ctx, node) })
	} else {
		err = scan(ctx, rdb)
	}
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) == 0 {
		t.Fatal("no key found for the event")
	}
	for _, k := range keys {
		var values []string
		switch typ := rdb.Type(ctx, k).Val(); typ {
		case "string":
			values = []string{rdb.Get(ctx, k).Val()}
		case "hash":
			values = rdb.HVals(ctx, k).Val()
		case "zset":
			values = rdb.ZRange(ctx, k, 0, -1).Val()
		case "list":
			values = rdb.LRange(ctx, k, 0, -1).Val()
		case "set":
			values = rdb.SMembers(ctx, k).Val()
		case "none":
		default:
			t.Fatalf("key %s is a %s", k, typ)
		}
		for _, v := range values {
			if len(v) > 1<<10 {
				t.Fatalf("key %s holds a value of %d bytes", k, len(v))
			}
		}
	}
}
