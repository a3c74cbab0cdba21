package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/relayhq/relay/pkg/archivefile"
	"github.com/relayhq/relay/pkg/delivery"
	"github.com/relayhq/relay/pkg/lifecycle"
	"github.com/relayhq/relay/pkg/secretbox"
	"github.com/relayhq/relay/pkg/signature"
	"github.com/relayhq/relay/pkg/testenv"
	"github.com/relayhq/relay/services/relay/internal/procs"
)

// The fault-injection tests run each service as its own process, on a Kafka
// broker and a redis-server of the test's own, kill or stop one of them by
// its PID under a steady load of signed events, and check that every event
// that got a 2xx is delivered, archived and counted, and that nothing
// recorded delivered is ever POSTed again.

var (
	buildOnce sync.Once
	binDir    string
	buildErr  error
)

// binaries builds the four service binaries once per test run.
func binaries(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		binDir, buildErr = os.MkdirTemp("", "relay-fault-bin-")
		if buildErr != nil {
			return
		}
		cmd := exec.Command("go", "build", "-o", binDir+string(os.PathSeparator),
			"github.com/relayhq/relay/services/ingest/cmd/relay-ingest",
			"github.com/relayhq/relay/services/deliver/cmd/relay-deliver",
			"github.com/relayhq/relay/services/archive/cmd/relay-archive",
			"github.com/relayhq/relay/services/count/cmd/relay-count")
		out, err := cmd.CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binDir
}

func freePort(t *testing.T) string {
	t.Helper()
	addr, err := lifecycle.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	return addr
}

// proc is one Relay service process of a test.
type proc struct {
	*procs.Proc
	t    *testing.T
	addr string // where /readyz answers
}

func (p *proc) start() {
	p.t.Helper()
	if err := p.Start(90 * time.Second); err != nil {
		p.t.Fatal(err)
	}
}

func (p *proc) kill() {
	if pid := p.PID(); pid != 0 {
		p.Kill()
		p.t.Logf("%s killed -9 (pid %d)", p.Name, pid)
	}
}

// faultStack is Relay as four processes on its own broker and Redis.
type faultStack struct {
	t                               *testing.T
	kafka, redis                    *testenv.Process
	ingest, deliver, archive, count *proc
	api                             string
	vars                            map[string]string
	rdb                             redis.UniversalClient
	reader                          archivefile.Reader
	bins                            string
}

// startFaultStack starts the four services as processes on a broker and a
// Redis of the test's own; extra overrides their settings.
func startFaultStack(t *testing.T, extra ...map[string]string) *faultStack {
	t.Helper()
	if testing.Short() {
		t.Skip("fault injection needs the real services")
	}
	s := &faultStack{t: t, kafka: testenv.StartKafka(t), redis: testenv.StartRedis(t), bins: binaries(t)}
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	s.vars = map[string]string{
		"RELAY_KAFKA_BROKERS":              s.kafka.Addr,
		"RELAY_KAFKA_PARTITIONS":           "3",
		"RELAY_KAFKA_SESSION_TIMEOUT":      "6s",
		"RELAY_KAFKA_DIAL_TIMEOUT":         "2s",
		"RELAY_REDIS_ADDRS":                s.redis.Addr,
		"RELAY_REDIS_DIAL_TIMEOUT":         "500ms",
		"RELAY_REDIS_READ_TIMEOUT":         "1s",
		"RELAY_REDIS_WRITE_TIMEOUT":        "1s",
		"RELAY_ADMIN_TOKEN":                adminToken,
		"RELAY_SECRET_KEY":                 secretbox.GenerateKey(),
		"RELAY_ALLOW_PRIVATE_DESTINATIONS": "true",
		"RELAY_RETRY_TIERS":                "1s,2s,4s,8s",
		"RELAY_PRODUCE_TIMEOUT":            "3s",
		"RELAY_DELIVERY_TIMEOUT":           "5s",
		"RELAY_S3_ENDPOINT":                testenv.S3Endpoint(t),
		"RELAY_S3_BUCKET":                  "relay-fault-" + hex.EncodeToString(b),
		"RELAY_S3_PATH_STYLE":              "true",
		"RELAY_S3_ACCESS_KEY_ID":           "test",
		"RELAY_S3_SECRET_ACCESS_KEY":       "test",
		"RELAY_S3_TIMEOUT":                 "5s",
		"RELAY_ARCHIVE_MAX_WAIT":           "500ms",
		"RELAY_LOG_LEVEL":                  "warn",
		"OTEL_SDK_DISABLED":                "true",
	}
	for _, e := range extra {
		for k, v := range e {
			s.vars[k] = v
		}
	}
	s.ingest = s.newProc("ingest")
	s.deliver = s.newProc("deliver")
	s.archive = s.newProc("archive")
	s.count = s.newProc("count")
	for _, p := range []*proc{s.ingest, s.deliver, s.archive, s.count} {
		p.start()
	}
	s.api = "http://" + s.ingest.addr
	s.rdb = redis.NewClient(&redis.Options{Addr: s.redis.Addr, DialTimeout: 500 * time.Millisecond, ReadTimeout: time.Second})
	t.Cleanup(func() { _ = s.rdb.Close() })
	c, err := archivefile.NewClient(context.Background(), archivefile.Config{Endpoint: s.vars["RELAY_S3_ENDPOINT"], Region: "us-east-1", PathStyle: true, Anonymous: true})
	if err != nil {
		t.Fatal(err)
	}
	s.reader = archivefile.Reader{S3: c, Bucket: s.vars["RELAY_S3_BUCKET"]}
	t.Cleanup(func() {
		if t.Failed() {
			for _, p := range []*proc{s.ingest, s.deliver, s.archive, s.count} {
				t.Logf("--- %s log ---\n%s", p.Name, p.Tail(40))
			}
		}
	})
	return s
}

// newProc returns one more process of service name ("deliver"), not yet
// started, on the stack's settings and an address of its own; it is killed
// when the test ends.
func (s *faultStack) newProc(name string) *proc {
	addrVar := "RELAY_ADMIN_ADDR"
	if name == "ingest" {
		addrVar = "RELAY_HTTP_ADDR"
	}
	addr := freePort(s.t)
	var env []string
	for k, v := range s.vars {
		env = append(env, k+"="+v)
	}
	p := &proc{t: s.t, addr: addr, Proc: &procs.Proc{
		Name: name, Bin: filepath.Join(s.bins, "relay-"+name), Env: append(env, addrVar+"="+addr), ReadyURL: "http://" + addr + "/readyz",
	}}
	s.t.Cleanup(p.kill)
	return p
}

// recorder is a healthy endpoint that records every webhook-id and checks,
// for every request, that Relay had not already recorded the pair delivered.
type recorder struct {
	srv        *http.Server
	ln         net.Listener
	addr       string
	store      *delivery.Store
	sub        atomic.Value // string
	mu         sync.Mutex
	seen       map[string]int
	violations []string
	down       atomic.Bool
	// flaky, when set, answers 503 to the first attempt of one event in
	// three; seen counts only the answers that delivered.
	flaky bool
}

func newRecorder(t *testing.T, rdb redis.UniversalClient) *recorder {
	r := &recorder{seen: map[string]int{}, store: delivery.New(rdb, time.Hour)}
	r.sub.Store("")
	r.addr = freePort(t)
	r.start(t)
	t.Cleanup(func() { r.stop() })
	return r
}

func (r *recorder) start(t *testing.T) {
	ln, err := net.Listen("tcp", r.addr)
	if err != nil {
		t.Fatal(err)
	}
	r.ln = ln
	r.srv = &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		id := req.Header.Get("Webhook-Id")
		_, _ = io.Copy(io.Discard, req.Body)
		ctx, cancel := context.WithTimeout(req.Context(), 500*time.Millisecond)
		st, ok, err := r.store.Get(ctx, id, r.sub.Load().(string))
		cancel()
		r.mu.Lock()
		if err == nil && ok && st.Status == delivery.StatusDelivered {
			r.violations = append(r.violations, fmt.Sprintf("%s POSTed again after Relay recorded it delivered (attempt %s)", id, req.Header.Get("X-Relay-Attempt")))
		}
		if r.flaky && req.Header.Get("X-Relay-Attempt") == "1" && len(id) > 0 && id[len(id)-1]%3 == 0 {
			r.mu.Unlock()
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		r.seen[id]++
		r.mu.Unlock()
		time.Sleep(10 * time.Millisecond) // in flight for a moment, like a real endpoint
		w.WriteHeader(200)
	})}
	go func() { _ = r.srv.Serve(ln) }()
}

// stop takes the endpoint down: connections are refused until start.
func (r *recorder) stop() {
	if r.srv != nil {
		_ = r.srv.Close()
		r.srv = nil
	}
}

func (r *recorder) snapshot() (map[string]int, []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	m := make(map[string]int, len(r.seen))
	for k, v := range r.seen {
		m[k] = v
	}
	return m, append([]string(nil), r.violations...)
}

// load sends signed events at a steady rate until stopped, recording which
// were accepted (2xx).
type load struct {
	s        *faultStack
	src      source
	rate     int
	mu       sync.Mutex
	sent     int
	accepted map[string]bool
	refused  map[int]int
	timeline map[int]string // second since start -> outcomes
	begun    time.Time
	stopc    chan struct{}
	wg       sync.WaitGroup
}

func (s *faultStack) startLoad(src source, rate int) *load {
	l := &load{s: s, src: src, rate: rate, accepted: map[string]bool{}, refused: map[int]int{}, timeline: map[int]string{}, begun: time.Now(), stopc: make(chan struct{})}
	l.wg.Add(1)
	go l.run()
	return l
}

func (l *load) run() {
	defer l.wg.Done()
	client := &http.Client{Timeout: 10 * time.Second}
	tick := time.NewTicker(time.Second / time.Duration(l.rate))
	defer tick.Stop()
	var inflight sync.WaitGroup
	defer inflight.Wait()
	for n := 0; ; n++ {
		select {
		case <-l.stopc:
			return
		case <-tick.C:
		}
		inflight.Add(1)
		go func() {
			defer inflight.Done()
			body := []byte(fmt.Sprintf(`{"type":"load.tick","n":%d}`, n))
			req, _ := http.NewRequest("POST", l.s.api+"/in/"+l.src.ID, bytes.NewReader(body))
			_ = (signature.Relay{}).Sign(req.Header, body, l.src.Secret, time.Now())
			req.Header.Set("X-Idempotency-Key", "load-"+strconv.Itoa(n))
			sentAt := int(time.Since(l.begun).Seconds())
			resp, err := client.Do(req)
			l.mu.Lock()
			defer l.mu.Unlock()
			l.sent++
			if err != nil {
				l.refused[0]++
				l.timeline[sentAt] += "x"
				return
			}
			if resp.StatusCode/100 == 2 {
				l.timeline[sentAt] += "."
			} else {
				l.timeline[sentAt] += "R"
			}
			defer resp.Body.Close()
			var rep ingestReply
			raw, _ := io.ReadAll(resp.Body)
			_ = jsonUnmarshal(raw, &rep)
			if resp.StatusCode/100 == 2 && rep.EventID != "" {
				l.accepted[rep.EventID] = true
			} else {
				l.refused[resp.StatusCode]++
			}
		}()
	}
}

func (l *load) stop() (sent int, accepted map[string]bool, refused map[int]int) {
	close(l.stopc)
	l.wg.Wait()
	l.mu.Lock()
	defer l.mu.Unlock()
	var b strings.Builder
	for sec := 0; sec <= int(time.Since(l.begun).Seconds()); sec++ {
		line := l.timeline[sec]
		fmt.Fprintf(&b, "  %3ds  %3d ok %3d refused\n", sec, strings.Count(line, "."), len(line)-strings.Count(line, "."))
	}
	l.s.t.Logf("load by the second it was sent:\n%s", b.String())
	return l.sent, l.accepted, l.refused
}

// verify waits until every accepted event is delivered, archived and
// counted, prints the evidence, and fails on any loss or repeat.
func (s *faultStack) verify(src source, rec *recorder, sent int, accepted map[string]bool, refused map[int]int) {
	t := s.t
	t.Helper()
	archivedOnce := func() (map[string]int, error) {
		objs, err := s.reader.SourceObjects(context.Background(), src.ID, time.Time{}, time.Time{})
		if err != nil {
			return nil, err
		}
		seen := map[string]int{}
		for _, o := range objs {
			lines, err := s.reader.Lines(context.Background(), o.Key)
			if err != nil {
				return nil, err
			}
			for _, l := range lines {
				seen[l.EventID]++
			}
		}
		return seen, nil
	}
	counted := func() int64 {
		e := &env{t: t, api: s.api}
		return e.counted(src.ID)
	}
	var delivered, archived map[string]int
	var count int64
	deadline := time.Now().Add(3 * time.Minute)
	for {
		delivered, _ = rec.snapshot()
		archived, _ = archivedOnce()
		count = counted()
		missing := 0
		for id := range accepted {
			if delivered[id] == 0 || archived[id] == 0 {
				missing++
			}
		}
		if missing == 0 && count >= int64(len(accepted)) {
			break
		}
		if time.Now().After(deadline) {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	time.Sleep(2 * time.Second) // anything late would be a duplicate
	delivered, violations := rec.snapshot()
	archived, _ = archivedOnce()
	count = counted()
	requests, dups, lostDelivery, lostArchive, extraArchive := 0, 0, 0, 0, 0
	for id, n := range delivered {
		requests += n
		if n > 1 {
			dups += n - 1
		}
		_ = id
	}
	for id := range accepted {
		if delivered[id] == 0 {
			lostDelivery++
		}
		if archived[id] == 0 {
			lostArchive++
		}
	}
	for _, n := range archived {
		if n > 1 {
			extraArchive += n - 1
		}
	}
	// A request answered 503 at RELAY_PRODUCE_TIMEOUT whose record the
	// broker took afterwards is an event all the same (a retry of it would
	// have found it): ingest counts those, and they may be delivered.
	late := int(metricValue(t, s.api+"/metrics", `relay_ingest_produce_late_total{outcome="accepted"}`))
	t.Logf("EVIDENCE %s: sent %d, accepted %d (and %d answered 503 but taken late), refused %v, delivered %d unique (%d requests, %d repeats), archived %d (%d twice), counted %d, POSTs after delivered %d",
		t.Name(), sent, len(accepted), late, refused, len(delivered), requests, dups, len(archived), extraArchive, count, len(violations))
	if lostDelivery > 0 {
		t.Errorf("%d accepted events were never delivered", lostDelivery)
	}
	if lostArchive > 0 {
		t.Errorf("%d accepted events were never archived", lostArchive)
	}
	if extraArchive > 0 {
		t.Errorf("%d archive lines are repeats", extraArchive)
	}
	if count < int64(len(accepted)) || count > int64(len(accepted)+late) {
		t.Errorf("counted %d events, accepted %d (and %d taken late)", count, len(accepted), late)
	}
	for _, v := range violations {
		t.Error(v)
	}
	var unasked []string
	for id := range delivered {
		if !accepted[id] {
			unasked = append(unasked, id)
		}
	}
	if len(unasked) > late {
		t.Errorf("delivered %d events that were never accepted (%v), and ingest took %d late", len(unasked), unasked, late)
	}
	if len(accepted) < 50 {
		t.Errorf("only %d events were accepted; the load did not run", len(accepted))
	}
}

func (s *faultStack) setup(rec *recorder) source {
	e := &env{t: s.t, api: s.api}
	src := e.createSource("relay")
	sub := e.subscribe(src.ID, "http://"+rec.addr+"/hook", "*")
	rec.sub.Store(sub.ID)
	time.Sleep(2500 * time.Millisecond) // deliver's subscription cache
	return src
}

func TestFaultKafkaKilledAndRestarted(t *testing.T) {
	s := startFaultStack(t)
	rec := newRecorder(t, s.rdb)
	src := s.setup(rec)
	l := s.startLoad(src, 40)
	time.Sleep(4 * time.Second)
	s.kafka.Kill()
	time.Sleep(5 * time.Second)
	s.kafka.Start()
	time.Sleep(6 * time.Second)
	sent, accepted, refused := l.stop()
	if refused[503] == 0 {
		t.Errorf("no request was refused with 503 while the broker was down: %v", refused)
	}
	s.verify(src, rec, sent, accepted, refused)
}

func TestFaultDeliverKilledMidFlight(t *testing.T) {
	s := startFaultStack(t)
	rec := newRecorder(t, s.rdb)
	src := s.setup(rec)
	l := s.startLoad(src, 60)
	time.Sleep(4 * time.Second)
	s.deliver.kill() // mid-flight: requests are in the air
	time.Sleep(2 * time.Second)
	s.deliver.start()
	time.Sleep(6 * time.Second)
	sent, accepted, refused := l.stop()
	s.verify(src, rec, sent, accepted, refused)
}

func TestFaultRedisStoppedAndStarted(t *testing.T) {
	redisFault(t, "Redis was down", func(s *faultStack) { s.redis.Kill() }, func(s *faultStack) { s.redis.Start() })
}

// TestFaultRedisRefusesWrites: Redis answering but refusing writes (here
// out of memory under noeviction) is an outage to Relay: deliver pauses
// until a write succeeds again, ingest accepts without dedup, and once Redis
// has room every accepted event is delivered, archived and counted once.
func TestFaultRedisRefusesWrites(t *testing.T) {
	maxmemory := func(v string) func(s *faultStack) {
		return func(s *faultStack) {
			if err := s.rdb.ConfigSet(context.Background(), "maxmemory", v).Err(); err != nil {
				t.Fatal(err)
			}
		}
	}
	redisFault(t, "Redis refused writes", maxmemory("1"), maxmemory("0"))
}

// redisFault runs the fault stack under load, breaks Redis with inject for
// 5 s, watching deliver pause, ingest fail open and stay ready, then mends
// it and checks that nothing accepted was lost or repeated.
func redisFault(t *testing.T, what string, inject, mend func(s *faultStack)) {
	s := startFaultStack(t)
	rec := newRecorder(t, s.rdb)
	src := s.setup(rec)
	l := s.startLoad(src, 40)
	time.Sleep(4 * time.Second)
	inject(s)
	paused, ingestUnready := false, 0
	for i := 0; i < 25; i++ { // 5s of outage, watching deliver pause
		time.Sleep(200 * time.Millisecond)
		if metricValue(t, "http://"+s.deliver.addr+"/metrics", "relay_deliver_paused") == 1 {
			paused = true
		}
		// Ingest fails open without Redis, so its load balancer must keep it.
		if resp, err := http.Get(s.api + "/readyz"); err == nil {
			if resp.StatusCode != http.StatusOK {
				ingestUnready++
			}
			resp.Body.Close()
		}
	}
	failOpen := metricValue(t, s.api+"/metrics", "relay_ingest_dedup_fail_open_total")
	mend(s)
	time.Sleep(6 * time.Second)
	sent, accepted, refused := l.stop()
	t.Logf("while %s: deliver paused=%v, ingest accepted %v events without dedup", what, paused, failOpen)
	if !paused {
		t.Errorf("deliver never reported itself paused while %s", what)
	}
	if failOpen == 0 {
		t.Errorf("ingest counted no fail-open acceptance while %s", what)
	}
	if ingestUnready > 0 {
		t.Errorf("ingest /readyz answered non-200 %d times while %s", ingestUnready, what)
	}
	s.verify(src, rec, sent, accepted, refused)
}

func TestFaultReceiverDownThenBack(t *testing.T) {
	s := startFaultStack(t)
	rec := newRecorder(t, s.rdb)
	src := s.setup(rec)
	l := s.startLoad(src, 40)
	time.Sleep(3 * time.Second)
	rec.stop()
	time.Sleep(5 * time.Second)
	rec.start(t)
	time.Sleep(3 * time.Second)
	sent, accepted, refused := l.stop()
	s.verify(src, rec, sent, accepted, refused)
}

// metricValue sums a metric's samples on a /metrics page (0 when absent).
func metricValue(t *testing.T, url, name string) float64 {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	var total float64
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name) || (len(line) > len(name) && line[len(name)] != ' ' && line[len(name)] != '{') {
			continue
		}
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err == nil {
			total += v
		}
	}
	return total
}
