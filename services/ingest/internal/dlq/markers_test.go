package dlq

import (
	"context"
	"reflect"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/relayhq/relay/pkg/record"
	"github.com/relayhq/relay/pkg/testenv"
)

// The markers of deliveries redriven out of order are read back as offsets
// within the range asked for; a marker that is not an offset is an error,
// not offset 0 (which would pass a never-redriven delivery as resolved).
func TestRedrivenMarkers(t *testing.T) {
	rdb, _ := testenv.MiniRedis(t)
	m := &Manager{Names: record.Topics{DLQ: "relay.dlq"}, Redis: rdb}
	ctx := context.Background()
	for _, off := range []int64{3, 7, 12} {
		rdb.ZAdd(ctx, m.markerKey(1), redis.Z{Score: float64(off), Member: off})
	}
	got, err := m.redriven(ctx, 1, 5, 12)
	if err != nil || !reflect.DeepEqual(got, map[int64]bool{7: true}) {
		t.Fatalf("redriven(1, [5, 12)) = %v, %v; want offset 7 only", got, err)
	}
	rdb.ZAdd(ctx, m.markerKey(1), redis.Z{Score: 9, Member: "nine"})
	if _, err := m.redriven(ctx, 1, 0, 100); err == nil || !strings.Contains(err.Error(), `"nine"`) {
		t.Fatalf("a marker that is not an offset: err = %v", err)
	}
}
