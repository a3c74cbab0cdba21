// Package health serves the probes of every Relay service: /healthz (the
// process is alive), /readyz (its dependencies answer: broker, Redis, S3) and
// /metrics.
package health

import (
	"context"
	"encoding/json"
	"log/slog"
	"maps"
	"net/http"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/relayhq/relay/pkg/telemetry"
)

// Check reports whether one dependency is usable.
type Check func(ctx context.Context) error

// Checks are named readiness checks.
type Checks map[string]Check

// Timeout bounds each readiness check.
const Timeout = 2 * time.Second

// Run runs every check concurrently and returns the failures by name.
func (cs Checks) Run(ctx context.Context) map[string]string {
	var mu sync.Mutex
	var wg sync.WaitGroup
	failed := map[string]string{}
	for name, c := range cs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cctx, cancel := context.WithTimeout(ctx, Timeout)
			defer cancel()
			if err := c(cctx); err != nil {
				mu.Lock()
				failed[name] = err.Error()
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return failed
}

// Report is the body of /readyz.
type Report struct {
	Status string            `json:"status"`
	Checks map[string]string `json:"checks,omitempty"`
}

// TTL is how long a Probe keeps its last report.
const TTL = time.Second

// Probe answers readiness from its checks, run at most once per TTL however
// often it is asked: a probe on a public port must not let anyone make
// Relay write to Redis and call the broker as often as they like. Checks
// named degraded-only are reported but never make the service unready:
// ingest keeps accepting webhooks without Redis (fail open), so a Redis
// outage must not take every replica out of its load balancer. Each change
// of a check's state is logged, with the error, since the public answer
// says no more than a word.
type Probe struct {
	checks Checks
	// live checks are cheap local state (a server draining), run at every
	// answer so that a change is seen at once.
	live Checks
	soft map[string]bool
	log  *slog.Logger
	now  func() time.Time

	mu  sync.Mutex
	at  time.Time
	rep Report
}

// NewProbe returns a probe of cs; log may be nil.
func NewProbe(cs Checks, log *slog.Logger, degradedOnly ...string) *Probe {
	soft := map[string]bool{}
	for _, n := range degradedOnly {
		soft[n] = true
	}
	return &Probe{checks: cs, soft: soft, log: log, now: time.Now}
}

// AddLive adds a check run at every answer rather than once per TTL: cheap,
// local state, such as a server draining at shutdown. Call it before the
// probe answers.
func (p *Probe) AddLive(name string, c Check) {
	if p.live == nil {
		p.live = Checks{}
	}
	p.live[name] = c
}

// Report returns the last report, running the checks first when it is older
// than TTL (the live checks every time). Concurrent callers share one run.
func (p *Probe) Report(ctx context.Context) Report {
	p.mu.Lock()
	defer p.mu.Unlock()
	if now := p.now(); p.rep.Status == "" || now.Sub(p.at) >= TTL {
		rep := p.run(ctx, p.checks)
		p.logChanges(p.rep, rep)
		p.rep, p.at = rep, p.now()
	}
	if len(p.live) == 0 {
		return p.rep
	}
	live := p.run(ctx, p.live)
	rep := Report{Status: p.rep.Status, Checks: maps.Clone(p.rep.Checks)}
	maps.Copy(rep.Checks, live.Checks)
	if live.Status == "unavailable" || (live.Status == "degraded" && rep.Status == "ok") {
		rep.Status = live.Status
	}
	return rep
}

func (p *Probe) run(ctx context.Context, checks Checks) Report {
	failed := checks.Run(ctx)
	rep := Report{Status: "ok", Checks: map[string]string{}}
	names := make([]string, 0, len(checks))
	for n := range checks {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		msg, bad := failed[n]
		switch {
		case !bad:
			rep.Checks[n] = "ok"
		case p.soft[n]:
			rep.Checks[n] = "degraded: " + msg
			if rep.Status == "ok" {
				rep.Status = "degraded"
			}
		default:
			rep.Checks[n] = msg
			rep.Status = "unavailable"
		}
	}
	return rep
}

func (p *Probe) logChanges(before, after Report) {
	if p.log == nil {
		return
	}
	for n, now := range after.Checks {
		was, known := before.Checks[n]
		switch {
		case now != "ok" && now != was:
			p.log.Warn("readiness check failing", "check", n, "error", now, "status", after.Status)
		case now == "ok" && known && was != "ok":
			p.log.Info("readiness check passing again", "check", n)
		}
	}
}

func (r Report) code() int {
	if r.Status == "unavailable" {
		return http.StatusServiceUnavailable
	}
	return http.StatusOK
}

// Handler answers 200 when every check passes, else 503, with each check's
// result: for an admin port, which the internet does not reach.
func (p *Probe) Handler() http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		rep := p.Report(r.Context())
		writeReport(w, rep.code(), rep)
	}
}

// StatusHandler answers as Handler does, with the status word alone: for a
// public port, where dependency errors (internal addresses among them) are
// nobody's business. They are in the log.
func (p *Probe) StatusHandler() http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		rep := p.Report(r.Context())
		writeReport(w, rep.code(), Report{Status: rep.Status})
	}
}

func writeReport(w http.ResponseWriter, code int, rep Report) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(rep)
}

// LiveHandler answers 200 while the process runs.
func LiveHandler(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write([]byte(`{"status":"ok"}` + "\n"))
}

// Mux returns the admin mux of a service: /healthz, /readyz (with each
// check's result) and /metrics.
func Mux(reg *prometheus.Registry, p *Probe) *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", LiveHandler)
	mux.Handle("GET /readyz", p.Handler())
	mux.Handle("GET /metrics", telemetry.MetricsHandler(reg))
	return mux
}
