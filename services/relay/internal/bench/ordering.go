package bench

import (
	"context"
	"fmt"
	"strings"
	"time"
)

// orderingScenario measures ordered delivery against unordered on the same
// run: one source keyed by a JSON path, 1,000 keys, and two subscriptions
// to two sinks. First both are unordered; then the second is ordered. The
// first subscription's figures in the second run say what an ordered
// neighbour costs an unordered subscription; the second's, what ordering
// costs itself.
func (b *Bench) orderingScenario(ctx context.Context) error {
	const (
		rate = 500.0
		keys = 1000
		hot  = 10 // keys: 50 events/s each, so most wait behind their key's last
	)
	b.logf("scenario: ordered and unordered subscriptions of one source, %d and %d keys, %v events/s", keys, hot, rate)
	run := func(ordered bool, keys int) (plain, second Stats, err error) {
		sinks := [2]*Sink{{}, {}}
		var urls [2]string
		for i, s := range sinks {
			if urls[i], err = serve(ctx, s); err != nil {
				return plain, second, err
			}
		}
		r, err := b.startRelay([]string{"ingest", "deliver"}, nil)
		if err != nil {
			return plain, second, err
		}
		defer r.stop()
		var src struct {
			ID string `json:"id"`
		}
		if err := b.call(ctx, r.api, "POST", "/sources", map[string]any{
			"name": "bench-ordered", "verification": map[string]any{"scheme": "relay", "secret": b.secret},
			"ordering_key": map[string]any{"json_path": "key"},
		}, &src); err != nil {
			return plain, second, err
		}
		subs := []map[string]any{{"url": urls[0] + "/hook"}, {"url": urls[1] + "/hook", "ordered": ordered}}
		for _, s := range subs {
			if err := b.call(ctx, r.api, "POST", "/sources/"+src.ID+"/subscriptions", s, nil); err != nil {
				return plain, second, err
			}
		}
		time.Sleep(2500 * time.Millisecond) // deliver's subscription cache
		url := r.api + "/in/" + src.ID
		b.warmUp(ctx, url, b.secret, 2)
		sinks[0].WaitQuiet(b.quiet, time.Minute)
		sinks[1].WaitQuiet(b.quiet, time.Minute)
		stats := b.keyedRun(ctx, url, sinks, keys, rate, 3*b.cfg.Step, 30*time.Second)
		return stats[0], stats[1], nil
	}
	// A run thrown away first: the first run on a fresh broker pays for
	// its warm-up (the JVM's compilation above all), which would flatter
	// whichever run came second.
	if _, _, err := run(false, keys); err != nil {
		return err
	}
	neighbour, ordered, err := run(true, keys)
	if err != nil {
		return err
	}
	_, unordered, err := run(false, keys)
	if err != nil {
		return err
	}
	_, hotOrdered, err := run(true, hot)
	if err != nil {
		return err
	}
	note := fmt.Sprintf("%.0f events/s over %d keys, 1 KiB", rate, keys)
	b.add(Result{Scenario: "unordered subscription", System: "relay", Stats: unordered, Note: note + "; beside another unordered one"})
	b.add(Result{Scenario: "ordered subscription", System: "relay", Stats: ordered, Note: note + "; the same run as the next"})
	b.add(Result{Scenario: "unordered beside ordered", System: "relay", Stats: neighbour, Note: note})
	b.add(Result{Scenario: "ordered, 10 hot keys", System: "relay", Stats: hotOrdered, Note: fmt.Sprintf("%.0f events/s over %d keys: %.0f/s per key, one at a time", rate, hot, rate/hot)})
	b.report.Summary = append(b.report.Summary,
		Summary{"an ordered subscription, 1,000 keys: e2e p99", ordered.P99.Round(100 * time.Microsecond).String(), unordered.P99.Round(100*time.Microsecond).String() + " unordered",
			ratio(float64(ordered.P99), float64(unordered.P99)), "all delivered, sustained", ordered.Sustained() && ordered.Errors == 0},
		Summary{"an unordered subscription beside an ordered one: e2e p99", neighbour.P99.Round(100 * time.Microsecond).String(), unordered.P99.Round(100*time.Microsecond).String() + " beside an unordered one",
			ratio(float64(neighbour.P99), float64(unordered.P99)), "no slower (within 25%), all delivered", neighbour.Sustained() && neighbour.Errors == 0 && float64(neighbour.P99) <= 1.25*float64(unordered.P99)},
		Summary{"an ordered subscription, 10 keys of 50 events/s each: e2e p99", hotOrdered.P99.Round(100 * time.Microsecond).String(), unordered.P99.Round(100*time.Microsecond).String() + " unordered",
			ratio(float64(hotOrdered.P99), float64(unordered.P99)), "all delivered", hotOrdered.Errors == 0})
	return nil
}

// keyedRun offers rate/s events for dur, event i under key i mod keys, and
// measures each sink's deliveries (one per event), waiting up to drain for
// stragglers.
func (b *Bench) keyedRun(ctx context.Context, url string, sinks [2]*Sink, keys int, rate float64, dur, drain time.Duration) [2]Stats {
	total := int(rate * dur.Seconds())
	due := make([]time.Time, total)
	recs := [2]*Recorder{{}, {}}
	run := fmt.Sprintf("%x", time.Now().UnixNano())
	for i, s := range sinks {
		s.Arm(run, due, recs[i])
	}
	failures := make(chan struct{}, total)
	sent, shed := OpenLoop(ctx, rate, dur, 4096, func(ctx context.Context, i int, at time.Time) {
		due[i] = at
		head := fmt.Sprintf(`{"type":"bench.event","run":"%s","n":%d,"key":"k%d","pad":"`, run, i, i%keys)
		if !b.post(ctx, url, b.secret, []byte(head+strings.Repeat("x", max(1024-len(head)-2, 0))+`"}`)) {
			failures <- struct{}{}
		}
	})
	failed := len(failures)
	want := sent - failed
	deadline := time.Now().Add(drain)
	for (recs[0].Count() < want || recs[1].Count() < want) && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	var out [2]Stats
	for i, rec := range recs {
		out[i] = rec.Summarise(rate, sent, shed, dur)
		out[i].Errors = failed + max(0, want-rec.Count())
	}
	return out
}
