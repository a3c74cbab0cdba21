package health

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/relayhq/relay/pkg/telemetry"
)

func TestReadyz(t *testing.T) {
	broken := false
	mux := Mux(telemetry.NewRegistry(), Checks{
		"redis": func(context.Context) error { return nil },
		"kafka": func(context.Context) error {
			if broken {
				return errors.New("dial tcp: connection refused")
			}
			return nil
		},
	})
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
	h := ReadyHandler(Checks{
		"kafka": func(context.Context) error { return nil },
		"redis": func(context.Context) error { return errors.New("connection refused") },
	}, "redis")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/readyz", nil))
	var rep Report
	_ = json.Unmarshal(rec.Body.Bytes(), &rep)
	if rec.Code != 200 || rep.Status != "degraded" || rep.Checks["redis"] == "ok" {
		t.Fatalf("readyz with Redis down = %d %+v; want 200 degraded", rec.Code, rep)
	}
}
