// Package health serves the probes of every Relay service: /healthz (the
// process is alive), /readyz (its dependencies answer: broker, Redis, S3) and
// /metrics.
package health

import (
	"context"
	"encoding/json"
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
	Checks map[string]string `json:"checks"`
}

// ReadyHandler answers 200 when every check passes, else 503 with the
// failures. Checks named in degradedOnly are reported but never make the
// service unready: ingest keeps accepting webhooks without Redis (fail open),
// so a Redis outage must not take every replica out of its load balancer.
func ReadyHandler(cs Checks, degradedOnly ...string) http.HandlerFunc {
	soft := map[string]bool{}
	for _, n := range degradedOnly {
		soft[n] = true
	}
	return func(w http.ResponseWriter, r *http.Request) {
		failed := cs.Run(r.Context())
		rep := Report{Status: "ok", Checks: map[string]string{}}
		names := make([]string, 0, len(cs))
		for n := range cs {
			names = append(names, n)
		}
		sort.Strings(names)
		for _, n := range names {
			msg, bad := failed[n]
			switch {
			case !bad:
				rep.Checks[n] = "ok"
			case soft[n]:
				rep.Checks[n] = "degraded: " + msg
				if rep.Status == "ok" {
					rep.Status = "degraded"
				}
			default:
				rep.Checks[n] = msg
				rep.Status = "unavailable"
			}
		}
		w.Header().Set("Content-Type", "application/json")
		if rep.Status == "unavailable" {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		_ = json.NewEncoder(w).Encode(rep)
	}
}

// LiveHandler answers 200 while the process runs.
func LiveHandler(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write([]byte(`{"status":"ok"}` + "\n"))
}

// Mux returns the admin mux of a consumer service: /healthz, /readyz and /metrics.
func Mux(reg *prometheus.Registry, cs Checks) *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", LiveHandler)
	mux.Handle("GET /readyz", ReadyHandler(cs))
	mux.Handle("GET /metrics", telemetry.MetricsHandler(reg))
	return mux
}
