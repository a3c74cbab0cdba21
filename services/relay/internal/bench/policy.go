package bench

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"time"
)

// policyScenario measures what subscriptions' delivery policies cost:
// deliver's throughput with 100 filtered subscriptions on one source
// against 100 glob-only ones, and a throttled subscription (5/s, a backlog
// of 10,000) beside an unthrottled one on the same source, whose latency
// must not move.
func (b *Bench) policyScenario(ctx context.Context) error {
	if err := b.filterCost(ctx); err != nil {
		return err
	}
	return b.throttledNeighbour(ctx)
}

// withSubscriptions starts ingest and deliver and a source whose
// subscriptions are subs (request bodies), and returns its ingest URL.
func (b *Bench) withSubscriptions(ctx context.Context, subs []map[string]any) (*relay, string, error) {
	r, err := b.startRelay([]string{"ingest", "deliver"}, nil)
	if err != nil {
		return nil, "", err
	}
	url, err := b.source(ctx, r, nil)
	if err != nil {
		r.stop()
		return nil, "", err
	}
	src := url[strings.LastIndex(url, "/")+1:]
	for _, s := range subs {
		if err := b.call(ctx, r.api, "POST", "/sources/"+src+"/subscriptions", s, nil); err != nil {
			r.stop()
			return nil, "", err
		}
	}
	time.Sleep(2500 * time.Millisecond) // deliver's subscription cache
	return r, url, nil
}

// filterExpr is a typical filter over the bench body: it reads the body
// and matches every event, so that both runs make the same deliveries.
const filterExpr = `type == "bench.event" && data.n >= 0 && size(data.run) > 0`

func (b *Bench) filterCost(ctx context.Context) error {
	b.logf("scenario: 100 subscriptions on one source, globs only and with a filter each")
	sink := &Sink{}
	sinkURL, err := serve(ctx, sink)
	if err != nil {
		return err
	}
	// Each runs the ramp, then a fixed rate both sustain, to compare the
	// CPU a delivery costs as well as the maxima (which a ramp step can
	// move by a tenth either way).
	run := func(filter string) (measured, measured, error) {
		var subs []map[string]any
		for i := range 100 {
			s := map[string]any{"url": fmt.Sprintf("%s/hook/%d", sinkURL, i), "events": "bench.*"}
			if filter != "" {
				s["filter"] = filter
			}
			subs = append(subs, s)
		}
		r, url, err := b.withSubscriptions(ctx, subs)
		if err != nil {
			return measured{}, measured{}, err
		}
		defer r.stop()
		b.warmUp(ctx, url, b.secret, 100)
		steps := ramp(5, 400, b.meterFor(merge(b.infra(), r.pids())), b.settle(sink), func(rate float64) Stats {
			return b.deliveryRun(ctx, url, b.secret, sink, 100, rate, b.cfg.Step, 10*time.Second)
		})
		b.settle(sink)()
		m := b.meter(merge(b.infra(), r.pids()))
		fixed := b.deliveryRun(ctx, url, b.secret, sink, 100, 30, 3*b.cfg.Step, 10*time.Second)
		return best(steps), measured{Stats: fixed, Usage: m.Stop()}, nil
	}
	globs, globsFixed, err := run("")
	if err != nil {
		return err
	}
	filtered, filteredFixed, err := run(filterExpr)
	if err != nil {
		return err
	}
	perK := func(m measured) float64 { return 1000 * m.Usage.Cores["deliver"] / max(m.Achieved, 1) }
	b.add(Result{Scenario: "100 glob subscriptions max", System: "relay", Stats: globs.Stats, Usage: globs.Usage, Note: "deliveries/s; 100 per event"})
	b.add(Result{Scenario: "100 filtered subscriptions max", System: "relay", Stats: filtered.Stats, Usage: filtered.Usage, Note: "filter: " + filterExpr})
	b.add(Result{Scenario: "100 glob subscriptions, fixed", System: "relay", Stats: globsFixed.Stats, Usage: globsFixed.Usage,
		Note: fmt.Sprintf("deliver %.3f ms of CPU per delivery", perK(globsFixed))})
	b.add(Result{Scenario: "100 filtered subscriptions, fixed", System: "relay", Stats: filteredFixed.Stats, Usage: filteredFixed.Usage,
		Note: fmt.Sprintf("deliver %.3f ms of CPU per delivery", perK(filteredFixed))})
	b.report.Summary = append(b.report.Summary,
		Summary{"100 filtered subscriptions vs 100 glob-only: max deliveries/s", fmt.Sprintf("%.0f/s", filtered.Achieved), fmt.Sprintf("%.0f/s", globs.Achieved),
			ratio(filtered.Achieved, globs.Achieved), "≥ 90% of glob-only", filtered.Achieved >= 0.9*globs.Achieved},
		Summary{"the same at 3,000 deliveries/s: deliver's CPU per delivery", fmt.Sprintf("%.3f ms", perK(filteredFixed)), fmt.Sprintf("%.3f ms", perK(globsFixed)),
			ratio(perK(filteredFixed), perK(globsFixed)), "≤ 110% of glob-only", perK(filteredFixed) <= 1.1*perK(globsFixed)})
	return nil
}

// counter counts the requests it answers.
type counter struct{ n atomic.Int64 }

func (c *counter) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	c.n.Add(1)
	w.WriteHeader(http.StatusNoContent)
}

func (b *Bench) throttledNeighbour(ctx context.Context) error {
	const (
		rate    = 500.0
		backlog = 10000
		limit   = 5
	)
	b.logf("scenario: a subscription throttled to %d/s with a backlog of %d beside an unthrottled one, %v/s", limit, backlog, rate)
	sink := &Sink{}
	sinkURL, err := serve(ctx, sink)
	if err != nil {
		return err
	}
	limited := &counter{}
	limitedURL, err := serve(ctx, limited)
	if err != nil {
		return err
	}
	// The same two subscriptions, the second throttled or not: what
	// throttling costs its neighbour, beyond what a neighbour costs.
	measure := func(throttled bool) (Stats, Usage, string, error) {
		second := map[string]any{"url": limitedURL + "/limited"}
		if throttled {
			second["rate_limit"] = map[string]any{"per_second": limit}
		}
		subs := []map[string]any{{"url": sinkURL + "/hook"}, second}
		r, url, err := b.withSubscriptions(ctx, subs)
		if err != nil {
			return Stats{}, Usage{}, "", err
		}
		defer r.stop()
		b.warmUp(ctx, url, b.secret, 1)
		// The backlog, which the first subscription takes at once.
		b.deliveryRun(ctx, url, b.secret, sink, 1, 2000, backlog/2000*time.Second, 30*time.Second)
		b.settle(sink)()
		admin := strings.TrimSuffix(r.procs["deliver"].ReadyURL, "/readyz") + "/metrics"
		got0 := limited.n.Load()
		m := b.meter(merge(b.infra(), r.pids()))
		start := time.Now()
		s := b.deliveryRun(ctx, url, b.secret, sink, 1, rate, 3*b.cfg.Step, 10*time.Second)
		u := m.Stop()
		took := time.Since(start)
		if !throttled {
			return s, u, "", nil
		}
		lag := metric(ctx, admin, `relay_consumer_lag{group="`+r.prefix+`relay-deliver",topic="`+r.prefix+`relay.events"}`)
		paced := float64(limited.n.Load()-got0) / took.Seconds()
		throttledN := metric(ctx, admin, `relay_deliver_throttled_total{reason="rate_limit"}`)
		return s, u, fmt.Sprintf("the throttled one got %.1f/s meanwhile (limit %d/s); relay.events lag after %.0f; %.0f holds; deliver peak RSS %d MiB",
			paced, limit, lag, throttledN, PeakRSS(r.procs["deliver"].PID())>>20), nil
	}
	alone, u1, _, err := measure(false)
	if err != nil {
		return err
	}
	beside, u2, note, err := measure(true)
	if err != nil {
		return err
	}
	b.add(Result{Scenario: "beside an unthrottled subscription", System: "relay", Stats: alone, Usage: u1, Note: fmt.Sprintf("%.0f events/s, after a burst of %d", rate, backlog)})
	b.add(Result{Scenario: "beside one throttled to 5/s", System: "relay", Stats: beside, Usage: u2, Note: note})
	b.report.Summary = append(b.report.Summary,
		Summary{"a 5/s subscription with 10,000 waiting: its neighbour's e2e p99", beside.P99.Round(100 * time.Microsecond).String(), alone.P99.Round(100*time.Microsecond).String() + " beside an unthrottled one",
			ratio(float64(beside.P99), float64(alone.P99)), "no slower (within 25%), all delivered", beside.Sustained() && beside.Errors == 0 && float64(beside.P99) <= 1.25*float64(alone.P99)})
	return nil
}
