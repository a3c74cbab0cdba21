package bench

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

// stateScenario measures what Redis holds per accepted event: its
// used_memory growth per event at a steady rate with one subscription
// delivered on the first attempt, with 1 KiB and with 16 KiB bodies (Redis
// holds no payload, so the two must be alike), and per further
// subscription; then a soak with short windows, whose memory must level off
// once the windows have passed; then how fast a single event is read back
// (its body from Kafka).
func (b *Bench) stateScenario(ctx context.Context) error {
	b.logf("scenario: Redis state per event, a soak with short windows, reading an event back")
	if b.rdb == nil {
		return fmt.Errorf("the state scenario needs Redis's address")
	}
	sink := &Sink{}
	sinkURL, err := serve(ctx, sink)
	if err != nil {
		return err
	}
	const rate, dur = 1000.0, 20 * time.Second
	perEvent := map[string]float64{}
	for _, c := range []struct {
		name       string
		subs, size int
	}{{"1 sub, 1 KiB", 1, 1 << 10}, {"1 sub, 16 KiB", 1, 16 << 10}, {"4 subs, 1 KiB", 4, 1 << 10}} {
		n, s, err := b.stateGrowth(ctx, sink, sinkURL, c.subs, c.size, rate, dur)
		if err != nil {
			return err
		}
		perEvent[c.name] = n
		b.add(Result{Scenario: "redis bytes per event", System: "relay", Stats: s, Note: fmt.Sprintf("%s: %.0f bytes/event (used_memory growth over the step)", c.name, n)})
	}
	one, big, four := perEvent["1 sub, 1 KiB"], perEvent["1 sub, 16 KiB"], perEvent["4 subs, 1 KiB"]
	further := (four - one) / 3
	b.report.Summary = append(b.report.Summary,
		Summary{"Redis per event, 1 subscription, 1 KiB", fmt.Sprintf("%.0f bytes", one), "", "", "≤ 800 bytes", one <= 800},
		Summary{"Redis per event, 16 KiB bodies against 1 KiB", fmt.Sprintf("%.0f bytes", big), fmt.Sprintf("%.0f bytes", one), ratio(big, one), "within 10%", big <= 1.1*one && big >= 0.9*one},
		Summary{"Redis per further subscription", fmt.Sprintf("%.0f bytes", further), "", "", "≤ 250 bytes", further <= 250},
	)

	flat, err := b.soak(ctx, sink, sinkURL)
	if err != nil {
		return err
	}
	b.report.Summary = append(b.report.Summary, flat)

	p99, err := b.readBack(ctx, sink, sinkURL)
	if err != nil {
		return err
	}
	b.report.Summary = append(b.report.Summary,
		Summary{"GET an event still in Kafka, at idle: p99", p99.Round(10 * time.Microsecond).String(), "", "", "≤ 20ms", p99 <= 20*time.Millisecond})
	return nil
}

// usedMemory is Redis's used_memory.
func (b *Bench) usedMemory(ctx context.Context) (int64, error) {
	info, err := b.rdb.InfoMap(ctx, "memory").Result()
	if err != nil {
		return 0, err
	}
	return strconv.ParseInt(info["Memory"]["used_memory"], 10, 64)
}

// stateGrowth empties Redis, runs a fresh Relay with subs subscriptions at rate for dur,
// bodies of size bytes, and returns Redis's used_memory growth per event,
// every delivery made, and the step's deliveries.
func (b *Bench) stateGrowth(ctx context.Context, sink *Sink, sinkURL string, subs, size int, rate float64, dur time.Duration) (float64, Stats, error) {
	// Each step starts from an empty Redis (the test environment's own), so
	// that every step meets Redis's hash-table doublings at the same key
	// counts: a doubling is a step in used_memory that would otherwise fall
	// into one step and not another.
	if err := b.rdb.FlushAll(ctx).Err(); err != nil {
		return 0, Stats{}, err
	}
	r, err := b.startRelay([]string{"ingest", "deliver"}, nil)
	if err != nil {
		return 0, Stats{}, err
	}
	defer r.stop()
	var targets []string
	for i := 0; i < subs; i++ {
		targets = append(targets, fmt.Sprintf("%s/hook/%d", sinkURL, i))
	}
	url, err := b.source(ctx, r, targets)
	if err != nil {
		return 0, Stats{}, err
	}
	// A warm-up fills the structures that do not grow per event (the
	// source's index, connections, scripts) before anything is counted.
	b.deliveryRunSized(ctx, url, b.secret, sink, subs, rate, 5*time.Second, 30*time.Second, size)
	sink.WaitQuiet(time.Second, time.Minute)
	before, err := b.usedMemory(ctx)
	if err != nil {
		return 0, Stats{}, err
	}
	s := b.deliveryRunSized(ctx, url, b.secret, sink, subs, rate, dur, 60*time.Second, size)
	sink.WaitQuiet(2*time.Second, time.Minute)
	after, err := b.usedMemory(ctx)
	if err != nil {
		return 0, Stats{}, err
	}
	if s.Errors > 0 {
		return 0, s, fmt.Errorf("%d of %d deliveries failed or never came", s.Errors, s.Sent)
	}
	events := float64(s.Sent) / float64(subs)
	return float64(after-before) / events, s, nil
}

// soak runs Relay at 1,000 events/s for Config.Soak with short windows
// (dedup 1m, event index and delivery state 2m), sampling Redis's
// used_memory, and summarises whether it levels off once the windows have
// passed: within 10% from the fourth minute on.
func (b *Bench) soak(ctx context.Context, sink *Sink, sinkURL string) (Summary, error) {
	r, err := b.startRelay([]string{"ingest", "deliver"}, map[string]string{
		"RELAY_EVENT_RETENTION": "2m", "RELAY_DELIVERY_STATE_RETENTION": "2m", "RELAY_RETRY_TIERS": "1s,2s,3s",
	})
	if err != nil {
		return Summary{}, err
	}
	defer r.stop()
	var src struct {
		ID string `json:"id"`
	}
	if err := b.call(ctx, r.api, "POST", "/sources", map[string]any{"name": "soak", "dedup_window": "1m", "verification": map[string]any{"scheme": "relay", "secret": b.secret}}, &src); err != nil {
		return Summary{}, err
	}
	if err := b.call(ctx, r.api, "POST", "/sources/"+src.ID+"/subscriptions", map[string]any{"url": sinkURL + "/hook/soak"}, nil); err != nil {
		return Summary{}, err
	}
	time.Sleep(2500 * time.Millisecond) // deliver's subscription cache
	url := r.api + "/in/" + src.ID
	b.logf("soak: 1000 events/s for %v with dedup 1m, index and state 2m", b.cfg.Soak)
	type sample struct {
		at   time.Duration
		used int64
	}
	var samples []sample
	start := time.Now()
	done := make(chan Stats, 1)
	go func() { done <- b.deliveryRun(ctx, url, b.secret, sink, 1, 1000, b.cfg.Soak, 30*time.Second) }()
	tick := time.NewTicker(10 * time.Second)
	defer tick.Stop()
	var s Stats
wait:
	for {
		select {
		case s = <-done:
			break wait
		case <-tick.C:
			if used, err := b.usedMemory(ctx); err == nil {
				samples = append(samples, sample{time.Since(start), used})
				b.logf("soak: %v used_memory %.1f MiB", time.Since(start).Round(time.Second), float64(used)/(1<<20))
			}
		}
	}
	var late []int64
	for _, x := range samples {
		if x.at >= 4*time.Minute {
			late = append(late, x.used)
		}
	}
	if len(late) < 2 {
		return Summary{"soak with short windows: used_memory after 4 min", "too short to tell", "", "", "flat within 10%", false}, nil
	}
	lo, hi := slices.Min(late), slices.Max(late)
	spread := float64(hi-lo) / float64(lo)
	b.add(Result{Scenario: "soak, short windows", System: "relay", Stats: s,
		Note: fmt.Sprintf("used_memory from 4 min: %.1f to %.1f MiB", float64(lo)/(1<<20), float64(hi)/(1<<20))})
	return Summary{"soak with short windows: used_memory after 4 min", fmt.Sprintf("%.1f–%.1f MiB", float64(lo)/(1<<20), float64(hi)/(1<<20)),
		"", fmt.Sprintf("%.1f%% spread", 100*spread), "flat within 10%", spread <= 0.10 && s.Errors == 0}, nil
}

// readBack sends events to a fresh Relay, then, idle, reads 200 of them
// back one at a time (each body from Kafka) and returns the p99 latency.
func (b *Bench) readBack(ctx context.Context, sink *Sink, sinkURL string) (time.Duration, error) {
	r, err := b.startRelay([]string{"ingest"}, nil)
	if err != nil {
		return 0, err
	}
	defer r.stop()
	url, err := b.source(ctx, r, nil)
	if err != nil {
		return 0, err
	}
	b.ingestRun(ctx, url, b.secret, 500, 2*time.Second)
	src := strings.TrimPrefix(url, r.api+"/in/")
	var page struct {
		Data []struct {
			ID string `json:"id"`
		} `json:"data"`
	}
	if err := b.call(ctx, r.api, "GET", "/sources/"+src+"/events?limit=200", nil, &page); err != nil {
		return 0, err
	}
	if len(page.Data) == 0 {
		return 0, fmt.Errorf("no event to read back")
	}
	time.Sleep(time.Second)
	rec := &Recorder{}
	for _, e := range page.Data {
		start := time.Now()
		req, err := http.NewRequestWithContext(ctx, "GET", r.api+"/sources/"+src+"/events/"+e.ID, nil)
		if err != nil {
			return 0, err
		}
		req.Header.Set("Authorization", "Bearer "+b.token)
		resp, err := b.client.Do(req)
		if err != nil {
			return 0, err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return 0, fmt.Errorf("GET event %s: HTTP %d", e.ID, resp.StatusCode)
		}
		rec.Observe(time.Since(start))
	}
	s := rec.Summarise(0, len(page.Data), 0, time.Second)
	b.add(Result{Scenario: "GET one event, idle", System: "relay", Stats: s, Note: "the body read from Kafka at its offset"})
	return s.P99, nil
}
