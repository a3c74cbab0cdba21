package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/relayhq/relay/pkg/signature"
	"github.com/relayhq/relay/pkg/testenv"
)

// Deliver scales out and in under a steady load: three replicas share the
// partitions; one is killed -9 and restarted, one more joins, one leaves
// gracefully, all mid-run, with three subscriptions (one flaky). Every
// (event, subscription) pair is delivered, and no pair is POSTed again once
// Relay recorded it delivered.
func TestScaleDeliverReplicasJoinLeaveAndCrash(t *testing.T) {
	s := startFaultStack(t, map[string]string{"RELAY_KAFKA_PARTITIONS": "6", "RELAY_REVOKE_WAIT": "3s"})
	recs := []*recorder{newRecorder(t, s.rdb), newRecorder(t, s.rdb), newRecorder(t, s.rdb)}
	recs[2].flaky = true
	e := &env{t: t, api: s.api}
	src := e.createSource("relay")
	for _, r := range recs {
		r.sub.Store(e.subscribe(src.ID, "http://"+r.addr+"/hook", "*").ID)
	}
	d1, d2, d3 := s.deliver, s.newProc("deliver"), s.newProc("deliver")
	d2.start()
	d3.start()
	time.Sleep(2500 * time.Millisecond) // deliver's subscription cache

	l := s.startLoad(src, 50)
	time.Sleep(4 * time.Second)
	d1.kill() // mid-flight
	time.Sleep(2 * time.Second)
	d1.start()
	time.Sleep(2 * time.Second)
	d4 := s.newProc("deliver")
	d4.start()
	time.Sleep(3 * time.Second)
	if err := d2.Stop(30 * time.Second); err != nil {
		t.Errorf("deliver stopped gracefully: %v", err)
	}
	t.Logf("deliver replica %s stopped gracefully", d2.Name)
	time.Sleep(4 * time.Second)
	sent, accepted, refused := l.stop()

	// The first subscription's endpoint also proves archive and count.
	s.verify(src, recs[0], sent, accepted, refused)
	for i, r := range recs[1:] {
		waitDelivered(t, r, accepted, fmt.Sprintf("subscription %d", i+2))
	}
}

// waitDelivered waits until r has had every accepted event delivered, then
// fails on any event missing or POSTed after Relay recorded it delivered.
func waitDelivered(t *testing.T, r *recorder, accepted map[string]bool, what string) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		seen, _ := r.snapshot()
		missing := 0
		for id := range accepted {
			if seen[id] == 0 {
				missing++
			}
		}
		if missing == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	time.Sleep(2 * time.Second)
	seen, violations := r.snapshot()
	missing, repeats := 0, 0
	for id := range accepted {
		if seen[id] == 0 {
			missing++
		}
		if seen[id] > 1 {
			repeats += seen[id] - 1
		}
	}
	t.Logf("EVIDENCE %s: %d accepted, %d delivered, %d delivered again before it was recorded, %d POSTs after recorded delivered", what, len(accepted), len(accepted)-missing, repeats, len(violations))
	if missing > 0 {
		t.Errorf("%s: %d accepted events were never delivered", what, missing)
	}
	for _, v := range violations {
		t.Errorf("%s: %s", what, v)
	}
}

// One of three brokers is killed -9 and restarted under load: no event
// accepted with 202 is lost, and ingest refuses (503) only around the
// leader elections. It needs the three-broker test cluster
// (RELAY_TEST_KAFKA_NODES=3, make test-scale).
func TestScaleBrokerOfThreeKilledAndRestarted(t *testing.T) {
	if testing.Short() {
		t.Skip("needs the real services")
	}
	node := os.Getenv("RELAY_TEST_KAFKA_NODE_2")
	pids := strings.Split(os.Getenv("RELAY_TEST_KAFKA_PIDS"), ",")
	if node == "" || len(pids) < 3 {
		if testenv.CI() && os.Getenv("RELAY_TEST_SCALE") != "" {
			t.Fatal("the scale run needs the three-broker cluster (RELAY_TEST_KAFKA_NODES=3)")
		}
		t.Skip("needs the three-broker cluster: make test-scale")
	}
	e := startServices(t, services{deliver: true}, nil)
	rec := newRecorder(t, testenv.Redis(t))
	src := e.createSource("relay")
	rec.sub.Store(e.subscribe(src.ID, "http://"+rec.addr+"/hook", "*").ID)
	time.Sleep(2500 * time.Millisecond)

	s := &faultStack{t: t, api: e.api}
	l := s.startLoad(src, 50)
	time.Sleep(4 * time.Second)
	pid, _ := strconv.Atoi(pids[1])
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatalf("kill -9 broker 2 (pid %d): %v", pid, err)
	}
	t.Logf("broker 2 killed -9 (pid %d)", pid)
	time.Sleep(6 * time.Second)
	restart := exec.Command(filepath.Join(os.Getenv("RELAY_TEST_SCRIPTS"), "kafka.sh"), append([]string{"start-node"}, strings.Fields(node)...)...)
	logf, err := os.Create(filepath.Join(t.TempDir(), "kafka-2.log"))
	if err != nil {
		t.Fatal(err)
	}
	restart.Stdout, restart.Stderr = logf, logf
	if err := restart.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = restart.Process.Kill(); _ = restart.Wait() })
	t.Logf("broker 2 restarted (pid %d)", restart.Process.Pid)
	time.Sleep(10 * time.Second)
	sent, accepted, refused := l.stop()

	waitDelivered(t, rec, accepted, "broker of three killed")
	refusedTotal := 0
	for _, n := range refused {
		refusedTotal += n
	}
	t.Logf("EVIDENCE %s: sent %d, accepted %d, refused %v", t.Name(), sent, len(accepted), refused)
	// Only the records on partitions broker 2 led fail, until the
	// controller fences it (broker.session.timeout.ms, 9 s by default) and
	// their leaders are elected elsewhere: a third of the load for that
	// long. Then nothing is refused.
	if refusedTotal > sent/4 {
		t.Errorf("%d of %d requests refused: more than the leader elections explain", refusedTotal, sent)
	}
	l.mu.Lock()
	for sec := 17; sec < 20; sec++ {
		if line := l.timeline[sec]; strings.Count(line, ".") != len(line) {
			t.Errorf("second %d, 7 s after the restart, still had refusals: %q", sec, line)
		}
	}
	l.mu.Unlock()
	if len(accepted) < sent*4/5 {
		t.Errorf("only %d of %d accepted", len(accepted), sent)
	}
}

// Two ingest replicas behind nginx, with the repository's own load balancer
// config (deploy/nginx): a sender's retries of one webhook, spread over both
// replicas, give one event.
func TestScaleTwoIngestReplicasBehindNginx(t *testing.T) {
	s := startFaultStack(t)
	second := s.newProc("ingest")
	second.start()
	lb := startNginx(t, s.ingest.addr, second.addr)
	e := &env{t: t, api: s.api}
	src := e.createSource("relay")
	body := []byte(`{"type":"order.paid","id":"ord_1"}`)
	ids := map[string]int{}
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	for i := 0; i < 100; i++ {
		req, _ := http.NewRequestWithContext(context.Background(), "POST", lb+"/in/"+src.ID, bytes.NewReader(body))
		_ = (signature.Relay{}).Sign(req.Header, body, src.Secret, time.Now())
		req.Header.Set("X-Idempotency-Key", "same-retry")
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var rep ingestReply
		if resp.StatusCode/100 != 2 || jsonUnmarshal(raw, &rep) != nil {
			t.Fatalf("request %d: HTTP %d %s", i, resp.StatusCode, raw)
		}
		ids[rep.EventID]++
	}
	if len(ids) != 1 {
		t.Fatalf("100 identical requests over two replicas gave %d events: %v", len(ids), ids)
	}
	// Both replicas answered some of them: nginx spread the requests.
	for _, p := range []*proc{s.ingest, second} {
		if n := requestsServed(t, p.addr); n < 10 {
			t.Errorf("ingest at %s answered %d inbound requests, want a share of the 100", p.addr, n)
		}
	}
}

// requestsServed is how many inbound webhooks an ingest replica answered,
// from its metrics.
func requestsServed(t *testing.T, addr string) int {
	t.Helper()
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	n := 0
	for _, line := range strings.Split(string(raw), "\n") {
		if strings.HasPrefix(line, "relay_http_requests_total{") && strings.Contains(line, `route="/in/:source_id"`) {
			f := strings.Fields(line)
			v, _ := strconv.ParseFloat(f[len(f)-1], 64)
			n += int(v)
		}
	}
	return n
}

// startNginx runs Debian's nginx with deploy/nginx/nginx.conf, its upstream
// pointed at the given ingest replicas, and returns its base URL.
func startNginx(t *testing.T, replicas ...string) string {
	t.Helper()
	bin, err := exec.LookPath("nginx")
	if err != nil {
		bin = "/usr/sbin/nginx"
		if _, err := os.Stat(bin); err != nil {
			if testenv.CI() {
				t.Fatal("nginx is missing (scripts/install-deps.sh installs it)")
			}
			t.Skip("nginx is missing: scripts/install-deps.sh")
		}
	}
	conf, err := os.ReadFile(filepath.Join(os.Getenv("RELAY_TEST_SCRIPTS"), "..", "deploy", "nginx", "nginx.conf"))
	if err != nil {
		t.Fatal(err)
	}
	c := string(conf)
	for i, r := range replicas {
		c = strings.Replace(c, fmt.Sprintf("server ingest-%d:8080", i+1), "server "+r, 1)
	}
	addr := freePort(t)
	c = strings.Replace(c, "listen 8080;", "listen "+addr+";", 1)
	c = strings.Replace(c, "worker_processes auto;", "worker_processes 1;", 1)
	if strings.Contains(c, "ingest-1:") || !strings.Contains(c, "listen "+addr) {
		t.Fatalf("deploy/nginx/nginx.conf no longer has the upstream and listen lines this test rewrites:\n%s", c)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "nginx.conf"), []byte(c), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-p", dir, "-c", filepath.Join(dir, "nginx.conf"),
		"-g", "daemon off; pid "+filepath.Join(dir, "nginx.pid")+"; error_log "+filepath.Join(dir, "error.log")+";")
	out := &bytes.Buffer{}
	cmd.Stdout, cmd.Stderr = out, out
	// Its workers are processes of their own: the whole group is stopped,
	// and the output pipes are not waited on past a few seconds.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("nginx output:\n%s", out)
		}
	})
	url := "http://" + addr
	probe := &http.Client{Timeout: 2 * time.Second}
	testenv.Eventually(t, 10*time.Second, "nginx to answer", func() bool {
		resp, err := probe.Get(url + "/nginx-health")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
	return url
}
