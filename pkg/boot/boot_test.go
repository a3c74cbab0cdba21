package boot

import (
	"context"
	"errors"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/relayhq/relay/pkg/envconfig"
	"github.com/relayhq/relay/pkg/lifecycle"
)

// With RELAY_DEBUG_ADDR, pprof serves while the service runs and stops with
// it; the service's own error is what Run returns.
func TestDebugServerLivesWithTheService(t *testing.T) {
	addr, err := lifecycle.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	cfg := envconfig.FromMap(map[string]string{"RELAY_DEBUG_ADDR": addr, "OTEL_SDK_DISABLED": "true"})
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan int, 1)
	err = Run(ctx, "relay-test", cfg, io.Discard, func(ctx context.Context, env Env) error {
		resp, err := (&http.Client{Timeout: 5 * time.Second}).Get("http://" + addr + "/debug/pprof/")
		if err != nil {
			return err
		}
		resp.Body.Close()
		served <- resp.StatusCode
		cancel()
		<-ctx.Done()
		return errors.New("service said no")
	})
	if err == nil || err.Error() != "service said no" {
		t.Fatalf("Run = %v, want the service's error", err)
	}
	if code := <-served; code != http.StatusOK {
		t.Fatalf("pprof answered %d while the service ran", code)
	}
	if _, err := (&http.Client{Timeout: time.Second}).Get("http://" + addr + "/debug/pprof/"); err == nil {
		t.Fatal("pprof still serves after the service stopped")
	}
}
