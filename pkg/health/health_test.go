package health

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/relayhq/relay/pkg/telemetry"
	"github.com/relayhq/relay/pkg/testenv"
)

// clock is a settable time for probes under test.
type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func TestReadyz(t *testing.T) {
	broken := false
	p := NewProbe(Checks{
		"redis": func(context.Context) error { return nil },
		"kafka": func(context.Context) error {
			if broken {
				return errors.New("dial tcp: connection refused")
			}
			return nil
		},
	}, nil)
	c := &clock{t: time.Unix(1000, 0)}
	p.now = c.now
	mux := Mux(telemetry.NewRegistry(), p)
	get := func(path string) (*httptest.ResponseRecorder, Report) {
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		var rep Report
		_ = json.Unmarshal(rec.Body.Bytes(), &rep)
		return rec, rep
	}
	if rec, rep := get("/readyz"); rec.Code != 200 || rep.Status != "ok" {
		t.Fatalf("healthy readyz = %d %+v", rec.Code, rep)
	}
	broken = true
	c.t = c.t.Add(TTL)
	rec, rep := get("/readyz")
	if rec.Code != http.StatusServiceUnavailable || rep.Checks["kafka"] == "ok" || rep.Checks["redis"] != "ok" {
		t.Fatalf("broken readyz = %d %+v", rec.Code, rep)
	}
	if rec, _ := get("/healthz"); rec.Code != 200 {
		t.Fatalf("healthz = %d", rec.Code)
	}
	if rec, _ := get("/metrics"); rec.Code != 200 || rec.Body.Len() == 0 {
		t.Fatalf("metrics = %d", rec.Code)
	}
}

func TestDegradedChecksKeepTheServiceReady(t *testing.T) {
	h := NewProbe(Checks{
		"kafka": func(context.Context) error { return nil },
		"redis": func(context.Context) error { return errors.New("connection refused") },
	}, nil, "redis").Handler()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/readyz", nil))
	var rep Report
	_ = json.Unmarshal(rec.Body.Bytes(), &rep)
	if rec.Code != 200 || rep.Status != "degraded" || rep.Checks["redis"] == "ok" {
		t.Fatalf("readyz with Redis down = %d %+v; want 200 degraded", rec.Code, rep)
	}
}

// A probe on a public port answers a word, runs its checks at most once per
// TTL however often it is asked, and says what failed in its log, once.
func TestPublicProbe(t *testing.T) {
	var calls atomic.Int32
	log, logs := testenv.Logger()
	p := NewProbe(Checks{
		"kafka": func(context.Context) error {
			calls.Add(1)
			return errors.New("dial tcp 10.1.2.3:9092: connect: connection refused")
		},
	}, log)
	c := &clock{t: time.Unix(1000, 0)}
	p.now = c.now
	h := p.StatusHandler()
	var wg sync.WaitGroup
	for i := 0; i < 100; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/readyz", nil))
			if rec.Code != http.StatusServiceUnavailable || strings.TrimSpace(rec.Body.String()) != `{"status":"unavailable"}` {
				t.Errorf("public readyz = %d %s", rec.Code, rec.Body)
			}
		}()
	}
	wg.Wait()
	if n := calls.Load(); n != 1 {
		t.Fatalf("100 probes within the TTL ran the checks %d times", n)
	}
	c.t = c.t.Add(TTL)
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/readyz", nil))
	if n := calls.Load(); n != 2 {
		t.Fatalf("a probe after the TTL: the checks ran %d times in all, want 2", n)
	}
	if n := strings.Count(logs.String(), "readiness check failing"); n != 1 || !strings.Contains(logs.String(), "10.1.2.3:9092") {
		t.Fatalf("the failure logged %d times, want once with its error: %s", n, logs.String())
	}
}
