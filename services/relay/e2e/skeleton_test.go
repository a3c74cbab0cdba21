package e2e

import (
	"bytes"
	"testing"
	"time"

	"github.com/relayhq/relay/pkg/signature"
)

// TestWalkingSkeleton sends one signed webhook along the real path, sender →
// ingest → Kafka → deliver → subscriber, and checks a bad signature is
// refused without producing anything.
func TestWalkingSkeleton(t *testing.T) {
	e := startStack(t, nil)
	rc := newReceiver(t, ok200)
	src := e.createSource("relay")
	sub := e.subscribe(src.ID, rc.URL+"/hook", "*")

	body := []byte(`{"type":"payment.succeeded","data":{"amount":4200,"currency":"eur"},"note":"bytes  kept\tas sent"}`)
	code, rep := e.send(src, "relay", body, nil)
	if code != 202 || rep.EventID == "" || rep.Duplicate {
		t.Fatalf("ingest = %d %+v", code, rep)
	}
	e.waitStatus(src.ID, rep.EventID, sub.ID, "delivered", 30*time.Second)
	got := rc.requests()
	if len(got) != 1 {
		t.Fatalf("receiver got %d requests, want exactly 1", len(got))
	}
	if !bytes.Equal(got[0].Body, body) {
		t.Fatalf("delivered body differs:\n got %q\nwant %q", got[0].Body, body)
	}
	if got[0].Header.Get("Webhook-Id") != rep.EventID || got[0].Header.Get("X-Relay-Attempt") != "1" {
		t.Fatalf("headers = %v", got[0].Header)
	}
	if err := (signature.StandardWebhooks{}).Verify(signature.Request{Header: got[0].Header, Body: got[0].Body}, []string{sub.Secret}, time.Now(), 0); err != nil {
		t.Fatalf("delivery signature does not verify with the subscription secret: %v", err)
	}

	before := e.endOffsets(e.names.Events)
	bad := e.createSource("relay")
	bad.Secret = "rsk_not_the_secret_of_this_source"
	if code, rep := e.send(bad, "relay", body, nil); code != 401 || rep.Error == nil || rep.Error.Code != "invalid_signature" {
		t.Fatalf("bad signature = %d %+v", code, rep)
	}
	unsigned := source{ID: src.ID}
	if code, rep := e.send(unsigned, "relay", body, nil); code != 401 || rep.Error == nil || rep.Error.Code != "missing_signature" {
		t.Fatalf("missing signature = %d %+v", code, rep)
	}
	if after := e.endOffsets(e.names.Events); after != before {
		t.Fatalf("rejected requests produced %d records", after-before)
	}
	// Nothing more arrives: still exactly one delivery.
	time.Sleep(time.Second)
	if n := len(rc.requests()); n != 1 {
		t.Fatalf("receiver got %d requests in the end, want 1", n)
	}
}
