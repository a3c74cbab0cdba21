package lifecycle

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestRunStopsStagesInOrder(t *testing.T) {
	var mu sync.Mutex
	var order []string
	record := func(name string) Worker {
		return Func(name, func(ctx context.Context) error {
			<-ctx.Done()
			mu.Lock()
			order = append(order, name)
			mu.Unlock()
			return nil
		})
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() {
		done <- Run(ctx, slog.New(slog.NewTextHandler(io.Discard, nil)), []Worker{record("http")}, []Worker{record("consumer")}, []Worker{record("producer")})
	}()
	time.Sleep(20 * time.Millisecond)
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run = %v", err)
	}
	if got := order; len(got) != 3 || got[0] != "http" || got[1] != "consumer" || got[2] != "producer" {
		t.Fatalf("stop order = %v", got)
	}
}

func TestRunReturnsFirstFailureAndStopsTheRest(t *testing.T) {
	boom := errors.New("boom")
	stopped := make(chan struct{})
	err := Run(context.Background(), slog.New(slog.NewTextHandler(io.Discard, nil)),
		[]Worker{Func("bad", func(context.Context) error { return boom })},
		[]Worker{Func("good", func(ctx context.Context) error { <-ctx.Done(); close(stopped); return nil })},
	)
	if !errors.Is(err, boom) {
		t.Fatalf("Run = %v, want boom", err)
	}
	select {
	case <-stopped:
	default:
		t.Fatal("the healthy worker was not stopped")
	}
}

func TestRunFlagsWorkerThatStopsEarly(t *testing.T) {
	err := Run(context.Background(), slog.New(slog.NewTextHandler(io.Discard, nil)),
		[]Worker{Func("quitter", func(context.Context) error { return nil })})
	if !errors.Is(err, ErrStoppedEarly) {
		t.Fatalf("Run = %v, want ErrStoppedEarly", err)
	}
}

func TestHTTPServerServesAndDrains(t *testing.T) {
	srv, err := NewHTTPServer("test", "127.0.0.1:0", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "ok")
	}), DefaultHTTPTimeouts(), slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- srv.Run(ctx) }()
	resp, err := http.Get("http://" + srv.Addr())
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "ok" {
		t.Fatalf("body = %q", body)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run = %v", err)
	}
	if _, err := http.Get("http://" + srv.Addr()); err == nil {
		t.Fatal("server still answers after shutdown")
	}
}

// With a drain delay, a server told to stop keeps answering, reports itself
// draining and closes each connection after its answer; then it stops.
func TestHTTPServerDrainDelay(t *testing.T) {
	timeouts := DefaultHTTPTimeouts()
	timeouts.DrainDelay = 3 * time.Second // far longer than the one request made during it
	srv, err := NewHTTPServer("test", "127.0.0.1:0", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "ok")
	}), timeouts, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- srv.Run(ctx) }()
	if err := srv.Draining(ctx); err != nil {
		t.Fatalf("Draining before shutdown = %v", err)
	}
	cancel()
	for srv.Draining(context.Background()) == nil {
		time.Sleep(time.Millisecond)
	}
	resp, err := http.Get("http://" + srv.Addr())
	if err != nil {
		t.Fatalf("a request during the drain delay: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "ok" || !resp.Close {
		t.Fatalf("during the drain: body %q, connection closed after it %v; want ok and closed", body, resp.Close)
	}
	if err := <-done; err != nil {
		t.Fatalf("Run = %v", err)
	}
	if _, err := http.Get("http://" + srv.Addr()); err == nil {
		t.Fatal("server still answers after the drain")
	}
}

func TestClosersCloseLastFirstOnce(t *testing.T) {
	var logs bytes.Buffer
	c := NewClosers(slog.New(slog.NewTextHandler(&logs, nil)))
	var order []string
	c.Add("redis", func() error { order = append(order, "redis"); return nil })
	c.Add("kafka", func() error { order = append(order, "kafka"); return errors.New("broker gone") })
	c.Add("listener", func() error { order = append(order, "listener"); return net.ErrClosed })
	if err := c.Fail(errors.New("boom")); err == nil || err.Error() != "boom" {
		t.Fatalf("Fail = %v", err)
	}
	c.Close()
	if strings.Join(order, ",") != "listener,kafka,redis" {
		t.Fatalf("closed %v, want each once, last first", order)
	}
	if out := logs.String(); !strings.Contains(out, "closing kafka failed") || strings.Contains(out, "listener") {
		t.Fatalf("log: %s", out)
	}
}
