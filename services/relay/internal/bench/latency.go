package bench

import (
	"context"
	"fmt"
	"strconv"
	"sync/atomic"
	"time"
)

// latencyRates are the steps of the latency scenario, events/s.
var latencyRates = []float64{200, 500, 1000, 1500, 2000, 2500, 3000, 3500, 4000, 5000}

// latencyStep is one step of the latency scenario.
type latencyStep struct {
	Rate          float64
	E2E, Ingest   Stats
	Repeats       int
	Usage         Usage
	DeliveredLate int // not delivered within the step's 30 s drain
}

// sustained is the scenario's own test of a step: every accepted event
// delivered within 30 s of the step's end, none POSTed twice, and the
// end-to-end p99 under 250 ms.
func (s latencyStep) sustained() bool {
	return s.DeliveredLate == 0 && s.E2E.Errors == 0 && s.Repeats == 0 && s.E2E.P99 < 250*time.Millisecond
}

// keptUp reports whether a step delivered what it offered, however late.
func (s latencyStep) keptUp() bool {
	return s.DeliveredLate == 0 && s.E2E.Achieved >= 0.95*s.E2E.Offered
}

// latencyScenario measures what a user of one endpoint sees at each rate,
// Relay at its defaults: one open-loop generator (request i due at start +
// i/R, latency from the due time), one endpoint answering 200 at once,
// 1 KiB JSON events, 20 s steps, up to the first that does not keep up:
// the maximum. A step below it whose p99 is over a second is a cliff.
func (b *Bench) latencyScenario(ctx context.Context) error {
	b.logf("scenario: latency at each rate, defaults, one endpoint")
	sink := &Sink{}
	sinkURL, err := serve(ctx, sink)
	if err != nil {
		return err
	}
	r, url, err := b.up(ctx, []string{"ingest", "deliver"}, nil, []string{sinkURL + "/hook"})
	if err != nil {
		return err
	}
	defer r.stop()
	b.warmUp(ctx, url, b.secret, 1)
	var steps []latencyStep
	for _, rate := range latencyRates {
		b.settle(sink)()
		m := b.meter(merge(b.infra(), r.pids()))
		s := b.latencyRun(ctx, url, sink, rate, 20*time.Second, 30*time.Second)
		s.Usage = m.Stop()
		steps = append(steps, s)
		b.logf("  %.0f/s: e2e %v, ingest %v, repeats %d", rate, s.E2E, s.Ingest, s.Repeats)
		note := fmt.Sprintf("ingest p50 %s p99 %s", ms(s.Ingest.P50), ms(s.Ingest.P99))
		if s.Repeats > 0 {
			note += fmt.Sprintf("; %d POSTed twice", s.Repeats)
		}
		b.add(Result{Scenario: "latency step", System: "relay", Stats: s.E2E, Usage: s.Usage, Note: note})
		if !s.keptUp() {
			break // past the maximum: the steps below it say whether latency fell off a cliff
		}
	}
	peak := PeakRSS(r.procs["deliver"].PID())
	b.report.Summary = append(b.report.Summary, latencySummary(steps, peak)...)
	return nil
}

// latencySummary is the scenario's lines in the report's summary.
func latencySummary(steps []latencyStep, peakRSS int64) []Summary {
	if len(steps) == 0 {
		return nil
	}
	low := steps[0]
	var top latencyStep
	var most float64 // the maximum: the highest step that kept up
	repeats := 0
	for _, s := range steps {
		repeats += s.Repeats
		if s.sustained() {
			top = s
		}
		if s.keptUp() {
			most = max(most, s.Rate)
		}
	}
	cliff := ""
	for _, s := range steps {
		if s.Rate < most && s.E2E.P99 > time.Second && cliff == "" {
			cliff = fmt.Sprintf("%.0f/s: p99 %s", s.Rate, ms(s.E2E.P99))
		}
	}
	topText := "none"
	if top.Rate > 0 {
		topText = fmt.Sprintf("%.0f/s (p99 %s)", top.Rate, ms(top.E2E.P99))
	}
	if cliff == "" {
		cliff = "none"
	}
	next := steps[len(steps)-1] // the step after the highest sustained one
	for i, s := range steps {
		if s.Rate == top.Rate && i+1 < len(steps) {
			next = steps[i+1]
		}
	}
	return []Summary{
		{fmt.Sprintf("latency at %.0f/s, defaults: e2e p50 / p99", low.Rate), ms(low.E2E.P50) + " / " + ms(low.E2E.P99), "", "", "≤ 4 ms / ≤ 11 ms", low.E2E.P50 <= 4*time.Millisecond && low.E2E.P99 <= 11*time.Millisecond && low.sustained()},
		{fmt.Sprintf("latency at %.0f/s, defaults: ingest p50", low.Rate), ms(low.Ingest.P50), "", "", "≤ 3 ms", low.Ingest.P50 <= 3*time.Millisecond},
		{"defaults, one endpoint: highest step with e2e p99 < 250 ms", topText, "", fmt.Sprintf("next step %.0f/s: p99 %s", next.Rate, ms(next.E2E.P99)), "≥ 3,000/s", top.Rate >= 3000},
		{"defaults, one endpoint: a step below the maximum with p99 over 1 s", cliff, "", "", "none", cliff == "none"},
		{"latency steps: POSTed twice; deliver peak RSS", fmt.Sprintf("%d; %d MiB", repeats, peakRSS>>20), "", "", "0; < 300 MiB", repeats == 0 && peakRSS > 0 && peakRSS < 300<<20},
	}
}

func ms(d time.Duration) string {
	if d < 10*time.Millisecond {
		return strconv.FormatFloat(float64(d.Microseconds())/1000, 'f', 1, 64) + " ms"
	}
	return d.Round(time.Millisecond).String()
}

// latencyRun offers rate/s of 1 KiB events for dur and measures each
// event's ingest answer and its arrival at the sink, both from when it was
// due; it waits up to drain for the deliveries.
func (b *Bench) latencyRun(ctx context.Context, url string, sink *Sink, rate float64, dur, drain time.Duration) latencyStep {
	ingest := &Recorder{}
	var accepted atomic.Int64
	e2e := b.deliveryRunWith(ctx, sink, 1, rate, dur, drain, func(ctx context.Context, run string, i int, due time.Time) bool {
		ok := b.post(ctx, url, b.secret, sizedBody(run, i, 1024))
		if ok {
			accepted.Add(1)
			ingest.Observe(time.Since(due))
		} else {
			ingest.Fail()
		}
		return ok
	})
	s := latencyStep{Rate: rate, E2E: e2e, Repeats: sink.Repeats()}
	s.Ingest = ingest.Summarise(rate, int(accepted.Load()), 0, dur)
	s.DeliveredLate = e2e.Errors
	return s
}
