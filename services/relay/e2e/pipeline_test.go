package e2e

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"testing"
	"time"

	"github.com/relayhq/relay/pkg/archivefile"
	"github.com/relayhq/relay/pkg/testenv"
)

// s3vars points the archive service at the test S3 server, in a bucket of
// the test's own.
func s3vars(t *testing.T) map[string]string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return map[string]string{
		"RELAY_S3_ACCESS_KEY_ID":     "test",
		"RELAY_S3_SECRET_ACCESS_KEY": "test",
		"RELAY_S3_ENDPOINT":          testenv.S3Endpoint(t),
		"RELAY_S3_BUCKET":            "relay-e2e-" + hex.EncodeToString(b),
		"RELAY_S3_PATH_STYLE":        "true",
		"RELAY_ARCHIVE_MAX_WAIT":     "200ms",
	}
}

func (e *env) archivedLines() map[string]int {
	e.t.Helper()
	ctx := context.Background()
	c, err := archivefile.NewClient(ctx, archivefile.Config{Endpoint: e.vars["RELAY_S3_ENDPOINT"], Region: "us-east-1", PathStyle: true, Anonymous: true})
	if err != nil {
		e.t.Fatal(err)
	}
	r := archivefile.Reader{S3: c, Bucket: e.vars["RELAY_S3_BUCKET"]}
	objs, err := r.List(ctx, "events/")
	if err != nil {
		e.t.Fatal(err)
	}
	out := map[string]int{}
	for _, o := range objs {
		lines, err := r.Lines(ctx, o.Key)
		if err != nil {
			e.t.Fatal(err)
		}
		for _, l := range lines {
			out[l.EventID]++
		}
	}
	return out
}

func (e *env) counted(src string) int64 {
	e.t.Helper()
	var out struct {
		Data []struct {
			Count int64 `json:"count"`
		} `json:"data"`
	}
	if code := e.call("GET", "/sources/"+src+"/metrics", nil, &out); code != 200 {
		e.t.Fatalf("metrics: %d", code)
	}
	var n int64
	for _, d := range out.Data {
		n += d.Count
	}
	return n
}

// TestEveryAcceptedEventArchivedAndCountedOnce runs all four services: each
// accepted event is delivered, archived once and counted once, and the
// duplicates ingest rejected are none of those.
func TestEveryAcceptedEventArchivedAndCountedOnce(t *testing.T) {
	e := startServices(t, services{deliver: true, archive: true, count: true}, s3vars(t))
	rc := newReceiver(t, ok200)
	src := e.createSource("standard-webhooks")
	e.subscribe(src.ID, rc.URL, "*")
	accepted := map[string]bool{}
	for i := 0; i < 20; i++ {
		body := []byte(fmt.Sprintf(`{"type":"invoice.paid","n":%d}`, i))
		hdr := map[string]string{"Webhook-Id": fmt.Sprintf("msg_%d", i)}
		for try := 0; try < 3; try++ { // the sender retries: same webhook-id
			code, rep := e.send(src, "standard-webhooks", body, hdr)
			switch {
			case try == 0 && code == 202:
				accepted[rep.EventID] = true
			case try > 0 && code == 200 && rep.Duplicate && accepted[rep.EventID]:
			default:
				t.Fatalf("send %d try %d: %d %+v", i, try, code, rep)
			}
		}
	}
	testenv.Eventually(t, 60*time.Second, "20 archived, counted and delivered", func() bool {
		return len(e.archivedLines()) == 20 && e.counted(src.ID) == 20 && len(rc.byWebhookID()) == 20
	})
	time.Sleep(time.Second)
	for id, n := range e.archivedLines() {
		if !accepted[id] || n != 1 {
			t.Errorf("event %s archived %d times (accepted: %v)", id, n, accepted[id])
		}
	}
	for id, n := range rc.byWebhookID() {
		if !accepted[id] || n != 1 {
			t.Errorf("event %s delivered %d times", id, n)
		}
	}
	if n := e.counted(src.ID); n != 20 {
		t.Fatalf("counted %d, want 20", n)
	}
}
