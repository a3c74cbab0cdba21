package dlq

import (
	"testing"

	"github.com/relayhq/relay/pkg/record"
)

func TestFilterMatch(t *testing.T) {
	d := record.Delivery{Event: record.Event{SourceID: "src_a"}, SubscriptionID: "sub_a", DeadReason: record.DeadGone}
	for _, tc := range []struct {
		f    Filter
		want bool
	}{
		{Filter{}, true},
		{Filter{SourceID: "src_a", SubscriptionID: "sub_a", Reason: record.DeadGone}, true},
		{Filter{SourceID: "src_b"}, false},
		{Filter{SubscriptionID: "sub_b"}, false},
		{Filter{Reason: record.DeadRetriesExhausted}, false},
	} {
		if got := tc.f.match(d); got != tc.want {
			t.Errorf("%+v.match = %v, want %v", tc.f, got, tc.want)
		}
	}
}
