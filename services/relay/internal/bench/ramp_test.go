package bench

import (
	"reflect"
	"testing"
	"time"
)

// TestRampNarrowsTheMaximum: the ramp doubles until a step fails, then
// halves the interval three times, and best picks the highest sustained step.
func TestRampNarrowsTheMaximum(t *testing.T) {
	for name, c := range map[string]struct {
		limit    float64 // the highest rate the fake system sustains
		want     []float64
		wantBest float64
	}{
		"between two doublings": {4700, []float64{500, 1000, 2000, 4000, 8000, 6000, 5000, 4500}, 4500},
		"just under a doubling": {7999, []float64{500, 1000, 2000, 4000, 8000, 6000, 7000, 7500}, 7500},
		"the first step fails":  {100, []float64{500}, 500},
		"never fails":           {1e9, []float64{500, 1000, 2000, 4000, 8000, 16000, 32000}, 32000},
	} {
		t.Run(name, func(t *testing.T) {
			var offered []float64
			steps := ramp(500, 32000, func() *Meter { return NewMeter(nil) }, nil, func(rate float64) Stats {
				offered = append(offered, rate)
				s := Stats{Offered: rate, Achieved: rate, Sent: int(rate), OK: int(rate), P99: time.Millisecond}
				if rate > c.limit {
					s.Achieved, s.P99 = c.limit, time.Second
				}
				return s
			})
			if !reflect.DeepEqual(offered, c.want) {
				t.Fatalf("rates tried = %v, want %v", offered, c.want)
			}
			if len(steps) != len(c.want) {
				t.Fatalf("%d steps reported, want %d", len(steps), len(c.want))
			}
			if b := best(steps); b.Offered != c.wantBest {
				t.Fatalf("best = %v/s, want %v/s", b.Offered, c.wantBest)
			}
		})
	}
}
