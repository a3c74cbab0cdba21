package bench

import (
	"testing"
	"time"
)

func TestLatencySummary(t *testing.T) {
	step := func(rate float64, p50, p99 time.Duration, late int) latencyStep {
		return latencyStep{Rate: rate, E2E: Stats{Offered: rate, Achieved: rate, P50: p50, P99: p99}, Ingest: Stats{P50: 2 * time.Millisecond}, DeliveredLate: late}
	}
	ms := time.Millisecond
	met := latencySummary([]latencyStep{
		step(200, 3*ms, 9*ms, 0), step(1000, 5*ms, 20*ms, 0), step(3000, 8*ms, 200*ms, 0), step(3500, 9*ms, 2*time.Second, 0),
	}, 200<<20)
	for _, s := range met {
		if !s.Pass {
			t.Errorf("%s: %s, not met", s.Scenario, s.Relay)
		}
	}
	// The maximum, 2000/s, may be slow; 1000/s below it may not.
	cliff := latencySummary([]latencyStep{
		step(200, 5*ms, 30*ms, 0), step(1000, 5*ms, 1500*ms, 0), step(1500, 5*ms, 100*ms, 0), step(2000, 5*ms, 3*time.Second, 0), step(2500, 5*ms, 9*time.Second, 50),
	}, 400<<20)
	for i, want := range []bool{false, true, false, false, false} {
		if cliff[i].Pass != want {
			t.Errorf("%s: %s, met %v, want %v", cliff[i].Scenario, cliff[i].Relay, cliff[i].Pass, want)
		}
	}
	if cliff[2].Relay != "1500/s (p99 100ms)" || cliff[3].Relay != "1000/s: p99 1.5s" {
		t.Errorf("top %q, cliff %q", cliff[2].Relay, cliff[3].Relay)
	}
}
