package bench

import (
	"os"
	"strings"
	"testing"
)

func TestParseRewrites(t *testing.T) {
	info := map[string]map[string]string{
		"Persistence": {"loading": "0", "aof_rewrite_in_progress": "1"},
		"Stats":       {"total_connections_received": "3", "total_forks": "7"},
	}
	if forks, running, ok := parseRewrites(info); !ok || forks != 7 || !running {
		t.Fatalf("parseRewrites = %d, %v, %v; want 7, true, true", forks, running, ok)
	}
	if _, _, ok := parseRewrites(map[string]map[string]string{"Stats": {"total_forks": "7"}}); ok {
		t.Fatal("an INFO without aof_rewrite_in_progress was read as complete")
	}
	if _, _, ok := parseRewrites(map[string]map[string]string{"Persistence": {"aof_rewrite_in_progress": "0"}, "Stats": {"total_forks": "x"}}); ok {
		t.Fatal("a malformed total_forks was accepted")
	}
}

func TestMeterCountsRewrites(t *testing.T) {
	pids := map[string]int{"self": os.Getpid()}
	fake := func(forks *int64, running *bool) Rewrites {
		return func() (int64, bool, bool) { return *forks, *running, true }
	}
	for name, c := range map[string]struct {
		forks0, forks1     int64
		running0, running1 bool
		want               int
	}{
		"none":                {forks0: 3, forks1: 3, want: 0},
		"one started":         {forks0: 3, forks1: 4, running1: true, want: 1},
		"running at start":    {forks0: 3, forks1: 3, running0: true, want: 1},
		"running, then a new": {forks0: 3, forks1: 4, running0: true, want: 2},
	} {
		forks, running := c.forks0, c.running0
		m := NewMeter(pids).CountRewrites(fake(&forks, &running))
		forks, running = c.forks1, c.running1
		if got := m.Stop().Rewrites; got != c.want {
			t.Errorf("%s: %d rewrites, want %d", name, got, c.want)
		}
	}
	unknown := NewMeter(pids).CountRewrites(func() (int64, bool, bool) { return 0, false, false })
	if got := unknown.Stop().Rewrites; got != 0 {
		t.Fatalf("Redis unknown: %d rewrites", got)
	}
}

func TestNoteNamesRewrites(t *testing.T) {
	if got := note(Result{Note: "bare"}); got != "bare" {
		t.Fatalf("note without rewrites = %q", got)
	}
	got := note(Result{Note: "bare", Usage: Usage{Rewrites: 2}})
	if !strings.HasPrefix(got, "bare; ") || !strings.Contains(got, "AOF rewrite ×2") {
		t.Fatalf("note = %q", got)
	}
}
