package inbound

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/relayhq/relay/pkg/ids"
	"github.com/relayhq/relay/pkg/logging"
	"github.com/relayhq/relay/pkg/redisconn"
	"github.com/relayhq/relay/pkg/testenv"
	"github.com/relayhq/relay/services/ingest/internal/dedup"
	"github.com/relayhq/relay/services/ingest/internal/eventstore"
)

// TestBookkeepNamesTheEvent: bookkeeping stores the accepted event's id
// under the dedup key for the window, even when the pending marker is gone
// (it expired during a slow produce) and after Redis lost its script cache
// (a restart).
func TestBookkeepNamesTheEvent(t *testing.T) {
	rdb, _ := testenv.MiniRedis(t)
	a := New(Config{}, Deps{
		Events: eventstore.New(rdb, time.Hour), Dedup: dedup.New(rdb, nil, 5*time.Second, 100*time.Millisecond),
		Pipe: redisconn.Direct{Client: rdb}, Registry: prometheus.NewRegistry(), Logger: logging.Discard(),
	})
	ctx := context.Background()
	src := ids.New(ids.Source)
	key := dedup.Key(src, "idem:k")
	claim, _, err := a.dedup.Acquire(ctx, key, "evt_x")
	if err != nil || claim == nil {
		t.Fatal(err)
	}
	if err := rdb.ScriptFlush(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	if err := rdb.Del(ctx, key).Err(); err != nil {
		t.Fatal(err)
	}
	a.bookkeep(ctx, claim, time.Hour, eventstore.Event{ID: ids.New(ids.Event), SourceID: src, ReceivedAt: time.Now(), Body: []byte("{}")})
	if got, _ := rdb.Get(ctx, key).Result(); got != "evt_x" {
		t.Fatalf("dedup key holds %q after bookkeeping, want the event id", got)
	}
	if ttl := rdb.PTTL(ctx, key).Val(); ttl <= 59*time.Minute || ttl > time.Hour {
		t.Fatalf("dedup key expires in %v, want the one-hour window", ttl)
	}
}
