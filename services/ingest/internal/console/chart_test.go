package console

import (
	"testing"
	"time"

	"github.com/relayhq/relay/pkg/counters"
)

func TestBuildChart(t *testing.T) {
	today := time.Date(2026, 12, 7, 15, 0, 0, 0, time.UTC)
	data := []counters.DayCount{
		{Day: "2026-12-07", Type: "order.paid", Count: 100},
		{Day: "2026-12-07", Type: "order.refunded", Count: 10},
		{Day: "2026-12-06", Type: "order.paid", Count: 50},
		{Day: "2026-12-05", Type: "a", Count: 1}, {Day: "2026-12-05", Type: "b", Count: 1}, {Day: "2026-12-05", Type: "c", Count: 1}, {Day: "2026-12-05", Type: "d", Count: 1},
		{Day: "2026-12-05", Type: "e", Count: 1},            // the sixth type: "other types"
		{Day: "2026-11-01", Type: "order.paid", Count: 999}, // before the chart's days
	}
	c := buildChart(data, today, 3)
	if c.Total != 165 || c.Max != 110 {
		t.Fatalf("total %d, max %d; want 165 and 110", c.Total, c.Max)
	}
	if len(c.Bars) != 3 || c.Bars[0].Day != "2026-12-05" || c.Bars[2].Day != "2026-12-07" || c.Bars[2].Label != "07" {
		t.Fatalf("bars %+v", c.Bars)
	}
	if len(c.Legend) != maxSeries+1 || c.Legend[0].Name != "order.paid" || c.Legend[0].Total != 150 ||
		c.Legend[1].Name != "order.refunded" || c.Legend[maxSeries].Name != "other types" || c.Legend[maxSeries].Total != 2 {
		t.Fatalf("legend %+v", c.Legend)
	}
	// The busiest day fills the plot; segments stack from its bottom.
	last := c.Bars[2]
	if len(last.Segments) != 2 || last.Segments[0].H+last.Segments[1].H != plotH || last.Segments[0].Y+last.Segments[0].H != plotTop+plotH {
		t.Fatalf("segments %+v", last.Segments)
	}
	// A count too small for a pixel still shows.
	for _, s := range c.Bars[0].Segments {
		if s.H < 1 {
			t.Fatalf("segment %+v has no height", s)
		}
	}
	if empty := buildChart(nil, today, 14); empty.Total != 0 || len(empty.Bars) != 14 || len(empty.Bars[0].Segments) != 0 {
		t.Fatalf("empty chart %+v", empty)
	}
}
