package dlq

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/relayhq/relay/pkg/record"
	"github.com/relayhq/relay/pkg/testenv"
)

// A redrive gives its lock back when it ends, so that the next redrive may
// start; when Redis refuses, the lock stays until it expires, and the log
// says why redrives are refused until then.
func TestUnlockFreesTheRedriveOrSaysWhyNot(t *testing.T) {
	rdb, mr := testenv.MiniRedis(t)
	log, logs := testenv.Logger()
	m := &Manager{
		Names:  record.Topics{DLQ: "relay.dlq"},
		Redis:  rdb,
		Log:    log,
		Budget: time.Minute,
	}
	ctx := context.Background()

	if err := rdb.Set(ctx, m.lockKey(), "someone-else", time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	m.unlock(ctx, "mine")
	if n, _ := rdb.Exists(ctx, m.lockKey()).Result(); n != 1 {
		t.Fatal("unlock released a lock another redrive holds")
	}
	if err := rdb.Set(ctx, m.lockKey(), "mine", time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	m.unlock(ctx, "mine")
	if n, _ := rdb.Exists(ctx, m.lockKey()).Result(); n != 0 {
		t.Fatal("unlock left its own lock behind")
	}
	if logs.String() != "" {
		t.Fatalf("unlocks that worked logged: %s", logs.String())
	}

	mr.Close()
	m.unlock(ctx, "mine")
	line := logs.String()
	for _, want := range []string{"level=WARN", "releasing the DLQ redrive lock failed", "expires_within=1m30s"} {
		if !strings.Contains(line, want) {
			t.Errorf("log %q lacks %q", line, want)
		}
	}
}
