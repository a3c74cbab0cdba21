package bench

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/relayhq/relay/pkg/signature"
)

// BaselineHandler is the bare net/http + HMAC server ingest is measured
// against: it reads the body, checks x-relay-signature in constant time and
// answers 202, with no dedup, no broker and no store.
func BaselineHandler(secret string) http.Handler {
	var n atomic.Int64
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		if err != nil {
			http.Error(w, "read", http.StatusBadRequest)
			return
		}
		if !validHMAC(secret, body, r.Header.Get(signature.HeaderRelaySignature)) {
			http.Error(w, "signature", http.StatusUnauthorized)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusAccepted)
		_, _ = io.WriteString(w, `{"event_id":"evt_`+strconv.FormatInt(n.Add(1), 10)+`","duplicate":false}`)
	})
}

func validHMAC(secret string, body []byte, sig string) bool {
	got, err := hex.DecodeString(sig)
	if err != nil {
		return false
	}
	m := hmac.New(sha256.New, []byte(secret))
	m.Write(body)
	return hmac.Equal(got, m.Sum(nil))
}

// ProxyHandler is the two-hop baseline of the end-to-end scenarios: it
// verifies the signature like BaselineHandler, POSTs the body to every
// target at once, and answers 202 once all have answered 2xx. It is Relay
// without the broker in between: ingest and deliver fused, synchronous.
func ProxyHandler(secret string, targets []string) http.Handler {
	return proxyHandler(secret, targets, proxyConnsPerTarget)
}

// proxyConnsPerTarget bounds the proxy's connections to each target host
// (the ten fan-out targets are paths on one sink, so they share it), as a
// production proxy's pool is bounded; deliver makes at most 256 requests at
// once by default. Unbounded, an overloaded fan-out step (up to 4,096
// requests in flight, each POSTing to ten targets) opened connections until
// the sink's process ran out of file descriptors, and the step failed on
// accept errors rather than on what the proxy could do.
const proxyConnsPerTarget = 1024

func proxyHandler(secret string, targets []string, connsPerTarget int) http.Handler {
	client := &http.Client{Timeout: 15 * time.Second, Transport: &http.Transport{
		MaxIdleConns: 4096, MaxIdleConnsPerHost: connsPerTarget, MaxConnsPerHost: connsPerTarget,
		IdleConnTimeout: 90 * time.Second,
		DialContext:     (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
	}}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		if err != nil || !validHMAC(secret, body, r.Header.Get(signature.HeaderRelaySignature)) {
			http.Error(w, "signature", http.StatusUnauthorized)
			return
		}
		var wg sync.WaitGroup
		var failed atomic.Bool
		for _, t := range targets {
			wg.Add(1)
			go func() {
				defer wg.Done()
				req, _ := http.NewRequestWithContext(r.Context(), http.MethodPost, t, bytes.NewReader(body))
				req.Header.Set("Content-Type", "application/json")
				resp, err := client.Do(req)
				if err != nil {
					failed.Store(true)
					return
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode/100 != 2 {
					failed.Store(true)
				}
			}()
		}
		wg.Wait()
		if failed.Load() {
			http.Error(w, "forward failed", http.StatusBadGateway)
			return
		}
		w.WriteHeader(http.StatusAccepted)
	})
}

// Sink is the endpoint of the end-to-end scenarios: it reads the run and
// sequence number the load generator put in each body and records the
// delivery's latency from when that request was due, once per endpoint path
// and request. Deliveries of other runs (stragglers of an earlier step that
// went through a retry tier) and repeats (at-least-once redeliveries) are
// not counted. delay, when set, makes it a slow endpoint.
type Sink struct {
	armed atomic.Pointer[sinkRun]
	delay time.Duration
	last  atomic.Int64 // unix nanoseconds of the latest request
}

// WaitQuiet returns once the sink has had no request for quiet, or after
// at most limit.
func (s *Sink) WaitQuiet(quiet, limit time.Duration) {
	end := time.Now().Add(limit)
	for time.Now().Before(end) {
		idle := time.Since(time.Unix(0, s.last.Load()))
		if idle >= quiet {
			return
		}
		time.Sleep(min(quiet-idle, time.Until(end)))
	}
}

type sinkRun struct {
	marker []byte // `"run":"<id>"`
	due    []time.Time
	rec    *Recorder
	mu     sync.Mutex
	seen   map[string]bool
	// repeats counts deliveries of a (path, request) seen before.
	repeats atomic.Int64
}

// Arm points the sink at a run: due[i] is when request i was due.
func (s *Sink) Arm(run string, due []time.Time, rec *Recorder) {
	s.armed.Store(&sinkRun{marker: []byte(`"run":"` + run + `"`), due: due, rec: rec, seen: map[string]bool{}})
}

// Repeats is how many deliveries of the armed run reached the sink again
// after their first.
func (s *Sink) Repeats() int {
	if run := s.armed.Load(); run != nil {
		return int(run.repeats.Load())
	}
	return 0
}

func (s *Sink) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.last.Store(time.Now().UnixNano())
	body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if s.delay > 0 {
		select {
		case <-time.After(s.delay):
		case <-r.Context().Done():
			return
		}
	}
	now := time.Now()
	if run := s.armed.Load(); run != nil && bytes.Contains(body[:min(len(body), 128)], run.marker) {
		if n, ok := seq(body); ok && n < len(run.due) && !run.due[n].IsZero() {
			key := r.URL.Path + "#" + strconv.Itoa(n)
			run.mu.Lock()
			first := !run.seen[key]
			run.seen[key] = true
			run.mu.Unlock()
			if first {
				run.rec.Observe(now.Sub(run.due[n]))
			} else {
				run.repeats.Add(1)
			}
		}
	}
	w.WriteHeader(http.StatusOK)
}

// seq finds `"n":<int>` in a body without a full JSON parse.
func seq(body []byte) (int, bool) {
	i := bytes.Index(body, []byte(`"n":`))
	if i < 0 {
		return 0, false
	}
	j := i + 4
	k := j
	for k < len(body) && body[k] >= '0' && body[k] <= '9' {
		k++
	}
	n, err := strconv.Atoi(string(body[j:k]))
	return n, err == nil
}

// serve runs h on a free loopback port until ctx ends.
func serve(ctx context.Context, h http.Handler) (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second, IdleTimeout: 90 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	go func() { <-ctx.Done(); _ = srv.Close() }()
	return "http://" + ln.Addr().String(), nil
}
