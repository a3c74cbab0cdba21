// Package lifecycle is the one contract every long-running part of Relay
// follows: a Worker runs until its context is cancelled and then returns nil.
// Run starts a service's workers in stages and stops them in order: ingress
// first, then consumers (which make their final commits), then whatever the
// earlier stages still needed.
package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Worker is a long-running part of a service.
type Worker interface {
	// Name identifies the worker in logs.
	Name() string
	// Run works until ctx is cancelled, then returns nil. It returns an error
	// only when it cannot go on; that stops the whole service.
	Run(ctx context.Context) error
}

type funcWorker struct {
	name string
	fn   func(context.Context) error
}

func (f funcWorker) Name() string                  { return f.name }
func (f funcWorker) Run(ctx context.Context) error { return f.fn(ctx) }

// Func adapts fn into a Worker.
func Func(name string, fn func(ctx context.Context) error) Worker { return funcWorker{name, fn} }

// ErrStoppedEarly is returned when a worker returns nil before it was asked to stop.
var ErrStoppedEarly = errors.New("stopped before shutdown")

// Run runs every worker of every stage until ctx is cancelled or a worker
// fails, then stops the stages in order: stage 0 is cancelled and waited for,
// then stage 1, and so on. It returns the first worker error, or nil after a
// clean shutdown.
func Run(ctx context.Context, log *slog.Logger, stages ...[]Worker) error {
	type stage struct {
		ctx    context.Context
		cancel context.CancelFunc
		wg     sync.WaitGroup
	}
	var (
		mu       sync.Mutex
		firstErr error
		failed   = make(chan struct{})
		once     sync.Once
	)
	fail := func(err error) {
		mu.Lock()
		if firstErr == nil {
			firstErr = err
		}
		mu.Unlock()
		once.Do(func() { close(failed) })
	}
	running := make([]*stage, len(stages))
	for i, workers := range stages {
		s := &stage{}
		// Stages outlive ctx on purpose: they are cancelled one by one below.
		s.ctx, s.cancel = context.WithCancel(context.WithoutCancel(ctx))
		running[i] = s
		for _, w := range workers {
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				err := w.Run(s.ctx)
				switch {
				case err != nil:
					fail(fmt.Errorf("%s: %w", w.Name(), err))
				case s.ctx.Err() == nil:
					fail(fmt.Errorf("%s: %w", w.Name(), ErrStoppedEarly))
				}
			}()
		}
	}
	select {
	case <-ctx.Done():
		log.Info("shutting down")
	case <-failed:
		log.Error("shutting down after a worker failed", "error", firstErr)
	}
	for i, s := range running {
		start := time.Now()
		s.cancel()
		s.wg.Wait()
		log.Debug("stage stopped", "stage", i, "took", time.Since(start))
	}
	mu.Lock()
	defer mu.Unlock()
	return firstErr
}

// HTTPTimeouts bound every phase of an HTTP exchange. A server without them
// can be held open forever by a slow client.
type HTTPTimeouts struct {
	// ReadHeader bounds reading the request line and headers.
	ReadHeader time.Duration
	// Read bounds reading the whole request, body included.
	Read time.Duration
	// Write bounds handling plus writing the response.
	Write time.Duration
	// Idle bounds a kept-alive connection waiting for its next request.
	Idle time.Duration
	// Shutdown bounds the graceful drain of in-flight requests.
	Shutdown time.Duration
	// DrainDelay is how long the server keeps serving once shutdown begins,
	// reporting itself draining (see Draining) and closing each connection
	// after its answer, so that a load balancer stops sending it requests
	// before it stops listening. Zero stops listening at once.
	DrainDelay time.Duration
	// MaxHeaderBytes bounds the request headers.
	MaxHeaderBytes int
}

// DefaultHTTPTimeouts are the timeouts of Relay's HTTP servers.
func DefaultHTTPTimeouts() HTTPTimeouts {
	return HTTPTimeouts{
		ReadHeader:     5 * time.Second,
		Read:           15 * time.Second,
		Write:          30 * time.Second,
		Idle:           90 * time.Second,
		Shutdown:       15 * time.Second,
		MaxHeaderBytes: 64 << 10,
	}
}

// HTTPServer is an http.Server run as a Worker.
type HTTPServer struct {
	name     string
	srv      *http.Server
	ln       net.Listener
	shutdown time.Duration
	drain    time.Duration
	draining atomic.Bool
}

var _ Worker = (*HTTPServer)(nil)

// NewHTTPServer listens on addr right away, so a port conflict fails at
// start-up and Addr reports the port chosen for ":0".
func NewHTTPServer(name, addr string, h http.Handler, t HTTPTimeouts, log *slog.Logger) (*HTTPServer, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("%s: listen on %s: %w", name, addr, err)
	}
	return &HTTPServer{
		name: name,
		ln:   ln,
		srv: &http.Server{
			Handler:           h,
			ReadHeaderTimeout: t.ReadHeader,
			ReadTimeout:       t.Read,
			WriteTimeout:      t.Write,
			IdleTimeout:       t.Idle,
			MaxHeaderBytes:    t.MaxHeaderBytes,
			ErrorLog:          slog.NewLogLogger(log.With("server", name).Handler(), slog.LevelWarn),
		},
		shutdown: t.Shutdown,
		drain:    t.DrainDelay,
	}, nil
}

// Name implements Worker.
func (s *HTTPServer) Name() string { return s.name }

// Addr is the address the server listens on.
func (s *HTTPServer) Addr() string { return s.ln.Addr().String() }

// Draining reports an error once shutdown has begun: a readiness check, so
// that load balancers take the server out while it still answers.
func (s *HTTPServer) Draining(context.Context) error {
	if s.draining.Load() {
		return errors.New("shutting down")
	}
	return nil
}

// Run serves until ctx is cancelled, keeps serving for the drain delay while
// Draining reports it, then drains in-flight requests for up to the shutdown
// timeout.
func (s *HTTPServer) Run(ctx context.Context) error {
	errc := make(chan error, 1)
	go func() { errc <- s.srv.Serve(s.ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	s.draining.Store(true)
	if s.drain > 0 {
		// Kept-alive clients (a proxy's pool) reconnect, and so find a
		// replica that is not going away.
		s.srv.SetKeepAlivesEnabled(false)
		select {
		case err := <-errc:
			return fmt.Errorf("serve: %w", err)
		case <-time.After(s.drain):
		}
	}
	sctx, cancel := context.WithTimeout(context.Background(), s.shutdown)
	defer cancel()
	if err := s.srv.Shutdown(sctx); err != nil {
		_ = s.srv.Close()
		return fmt.Errorf("graceful shutdown: %w", err)
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve: %w", err)
	}
	return nil
}

// Close releases the listener of a server that was never run.
func (s *HTTPServer) Close() error { return s.ln.Close() }

// FreeAddr returns a 127.0.0.1 address whose port is free now, for a
// process started next to listen on (the dev stack's services, test
// brokers). It is Relay's one such helper.
func FreeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// FreePort is FreeAddr's port.
func FreePort() (int, error) {
	addr, err := FreeAddr()
	if err != nil {
		return 0, err
	}
	_, p, _ := net.SplitHostPort(addr)
	return strconv.Atoi(p)
}
