package engine

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/relayhq/relay/pkg/delivery"
	"github.com/relayhq/relay/pkg/record"
	"github.com/relayhq/relay/pkg/testenv"
)

// An abandoned attempt gives its lease back so that the record's next owner
// starts at once; when Redis refuses, the lease stays until it lapses, and
// the operator is told why the next attempt waits.
func TestReleaseGivesTheLeaseBackOrSaysWhyNot(t *testing.T) {
	rdb, mr := testenv.MiniRedis(t)
	log, logs := testenv.Logger()
	e := &Engine{
		cfg:    Config{LeaseFor: 30 * time.Second},
		states: delivery.New(rdb, time.Hour),
		log:    log,
	}
	ctx := context.Background()
	d := record.Delivery{Event: record.Event{ID: "evt_release"}, Attempt: 1}
	begin := func(token string) string {
		t.Helper()
		out, _, err := e.states.Begin(ctx, d.ID, "sub_a", 1, token, e.cfg.LeaseFor)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}

	if out := begin("first"); out != delivery.Proceed {
		t.Fatalf("first begin: %s", out)
	}
	e.release(d, "sub_a", "first")
	if logs.String() != "" {
		t.Fatalf("a release that worked logged: %s", logs.String())
	}
	if out := begin("second"); out != delivery.Proceed {
		t.Fatalf("after the release another worker got %s, want the lease", out)
	}

	mr.Close()
	e.release(d, "sub_a", "second")
	line := logs.String()
	for _, want := range []string{"level=WARN", "releasing a delivery's lease failed", "event_id=evt_release", "subscription_id=sub_a", "lease=30s"} {
		if !strings.Contains(line, want) {
			t.Errorf("log %q lacks %q", line, want)
		}
	}
}
