package bench

import (
	"bytes"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/relayhq/relay/pkg/signature"
)

func TestSinkCountsEachDeliveryOfItsRunOnce(t *testing.T) {
	s := &Sink{}
	rec := &Recorder{}
	due := []time.Time{time.Now(), time.Now(), {}}
	s.Arm("current", due, rec)
	post := func(path string, b []byte) {
		w := httptest.NewRecorder()
		s.ServeHTTP(w, httptest.NewRequest(http.MethodPost, path, strings.NewReader(string(b))))
		if w.Code != http.StatusOK {
			t.Fatalf("sink answered %d", w.Code)
		}
	}
	post("/hook/0", body("current", 0))
	post("/hook/0", body("current", 0)) // a redelivery
	post("/hook/1", body("current", 0)) // the same event at another endpoint
	post("/hook/0", body("current", 1))
	post("/hook/0", body("earlier", 1)) // a straggler of an earlier step
	post("/hook/0", body("current", 2)) // never sent in this run
	post("/hook/0", body("current", 7)) // out of range
	post("/hook/0", []byte("not a bench body"))
	if got := rec.Count(); got != 3 {
		t.Fatalf("sink counted %d deliveries, want 3", got)
	}
	if s := rec.Summarise(1, 3, 0, time.Second); s.Max > time.Minute {
		t.Fatalf("a latency of %v was recorded", s.Max)
	}
}

func TestSinkWaitQuiet(t *testing.T) {
	s := &Sink{}
	s.WaitQuiet(time.Hour, time.Hour) // never hit, so quiet since 1970: returns at once
	s.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodPost, "/hook", strings.NewReader("{}")))
	start := time.Now()
	s.WaitQuiet(50*time.Millisecond, time.Hour)
	if waited := time.Since(start); waited < 40*time.Millisecond {
		t.Fatalf("WaitQuiet returned after %v, before the sink was quiet for 50ms", waited)
	}
}

// SampleProc counts the CPU of children that have ended: Redis forks for
// its AOF rewrites, and that work is part of what Redis costs.
func TestSampleProcCountsEndedChildren(t *testing.T) {
	// A child that burns CPU for a while, then is waited for.
	cmd := exec.Command("sh", "-c", "i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done")
	start, err := SampleProc(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	child := cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	after, err := SampleProc(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if child < 50*time.Millisecond {
		t.Fatalf("the child used only %v, too little to measure in clock ticks", child)
	}
	if after.CPU-start.CPU < child/2 {
		t.Fatalf("the child used %v, but the parent's sample grew by %v", child, after.CPU-start.CPU)
	}
}

// The proxy keeps at most its cap of connections open to a target host,
// however many requests are in flight: the rest wait for one.
func TestProxyBoundsConnectionsPerTarget(t *testing.T) {
	const limit, requests = 4, 16
	release := make(chan struct{})
	var mu sync.Mutex
	open, most, served := 0, 0, 0
	target := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		served++
		mu.Unlock()
		<-release
	}))
	target.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		mu.Lock()
		defer mu.Unlock()
		switch s {
		case http.StateNew:
			open++
			most = max(most, open)
		case http.StateClosed, http.StateHijacked:
			open--
		}
	}
	target.Start()
	defer target.Close()
	proxy := httptest.NewServer(proxyHandler("s", []string{target.URL + "/a", target.URL + "/b"}, limit))
	defer proxy.Close()
	var once sync.Once
	free := func() { once.Do(func() { close(release) }) }
	defer free() // before the servers close, which waits for their handlers

	body := []byte(`{"n":1}`)
	codes := make(chan int, requests)
	for range requests {
		go func() {
			req, _ := http.NewRequest(http.MethodPost, proxy.URL, bytes.NewReader(body))
			req.Header.Set(signature.HeaderRelaySignature, signature.HexHMAC("s", body))
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				codes <- 0
				return
			}
			resp.Body.Close()
			codes <- resp.StatusCode
		}()
	}
	// Each request POSTs to both paths: 32 forwards want a connection at once.
	deadline := time.Now().Add(10 * time.Second)
	for {
		mu.Lock()
		n := served
		mu.Unlock()
		if n >= limit || time.Now().After(deadline) {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond) // room for any connection beyond the cap to show up
	mu.Lock()
	if most != limit || served != limit {
		mu.Unlock()
		t.Fatalf("with every forward held at the target: %d connections at most, %d forwards served; want %d of each", most, served, limit)
	}
	mu.Unlock()
	free()
	for range requests {
		if c := <-codes; c != http.StatusAccepted {
			t.Fatalf("proxied request answered %d, want 202", c)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if most > limit || served != 2*requests {
		t.Fatalf("%d connections at most, %d forwards served; want at most %d and %d", most, served, limit, 2*requests)
	}
}
