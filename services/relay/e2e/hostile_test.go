package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/relayhq/relay/pkg/secretbox"
	"github.com/relayhq/relay/pkg/testenv"
	"github.com/relayhq/relay/services/relay/internal/procs"
)

// TestSlowBodiesPinNoMemory: 2,000 connections each declaring a 1 MiB body
// and sending a byte of it pin no memory for what they only declare, and
// senders of whole webhooks are served meanwhile. Ingest runs as its own
// process so that its memory is its own. Before, each such request made a
// buffer of its Content-Length before a byte arrived: 2,000 of them held
// 2 GiB.
func TestSlowBodiesPinNoMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("needs the real services")
	}
	const conns, limit = 2000, 256 << 20
	kcfg := testenv.KafkaConfig(t)
	addr := freePort(t)
	ingest := &procs.Proc{Name: "ingest", Bin: filepath.Join(binaries(t), "relay-ingest"), ReadyURL: "http://" + addr + "/readyz", Env: []string{
		"RELAY_HTTP_ADDR=" + addr,
		"RELAY_KAFKA_BROKERS=" + strings.Join(kcfg.Brokers, ","),
		"RELAY_KAFKA_TOPIC_PREFIX=" + kcfg.TopicPrefix,
		"RELAY_KAFKA_PARTITIONS=3",
		"RELAY_REDIS_ADDRS=" + testenv.RedisAddr(t),
		"RELAY_ADMIN_TOKEN=" + adminToken,
		"RELAY_SECRET_KEY=" + secretbox.GenerateKey(),
		// Long enough that no slow connection is cut off during the test.
		"RELAY_HTTP_READ_TIMEOUT=2m",
		"RELAY_HTTP_WRITE_TIMEOUT=3m",
		"RELAY_LOG_LEVEL=error",
		"OTEL_SDK_DISABLED=true",
	}}
	if err := ingest.Start(90 * time.Second); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ingest.Kill)
	e := &env{t: t, api: "http://" + addr}
	src := e.createSource("relay")

	var open []net.Conn
	t.Cleanup(func() {
		for _, c := range open {
			c.Close()
		}
	})
	for i := 0; i < conns; i++ {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		open = append(open, c)
		fmt.Fprintf(c, "POST /in/%s HTTP/1.1\r\nHost: relay\r\nContent-Type: application/json\r\nContent-Length: %d\r\nX-Relay-Signature: %s\r\n\r\n{",
			src.ID, 1<<20, strings.Repeat("0", 64))
	}
	metrics := "http://" + addr + "/metrics"
	testenv.Eventually(t, 60*time.Second, "ingest to be reading every slow body", func() bool {
		return metricValue(t, metrics, "relay_ingest_body_bytes") >= conns
	})

	// Whole webhooks are served meanwhile.
	for i := 0; i < 20; i++ {
		body := []byte(fmt.Sprintf(`{"type":"order.created","n":%d}`, i))
		if code, rep := e.send(src, "relay", body, nil); code != 202 {
			t.Fatalf("a whole webhook beside the slow ones: %d %+v", code, rep.Error)
		}
	}
	heap := metricValue(t, metrics, "go_memstats_heap_inuse_bytes")
	rss := processRSS(t, ingest.PID())
	t.Logf("with %d slow bodies open: heap in use %.0f MiB, RSS %.0f MiB", conns, heap/(1<<20), float64(rss)/(1<<20))
	if heap > limit || rss > limit {
		t.Fatalf("ingest holds %.0f MiB of heap, %.0f MiB resident for %d bodies that sent a byte each; want under %d MiB",
			heap/(1<<20), float64(rss)/(1<<20), conns, limit>>20)
	}
	// A slow body still gets its answer (its signature is wrong) once the
	// sender finishes it.
	c := open[0]
	if _, err := c.Write(bytes.Repeat([]byte(" "), 1<<20-1)); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(resp.Body)
	var answer ingestReply
	if resp.StatusCode != 401 || json.Unmarshal(raw, &answer) != nil || answer.Error == nil {
		t.Fatalf("the finished slow body: %d %s", resp.StatusCode, raw)
	}
}

// processRSS reads a process's resident set size from /proc.
func processRSS(t *testing.T, pid int) int64 {
	t.Helper()
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if f := strings.Fields(line); len(f) == 3 && f[0] == "VmRSS:" {
			kb, err := strconv.ParseInt(f[1], 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb << 10
		}
	}
	t.Fatalf("no VmRSS in /proc/%d/status", pid)
	return 0
}
