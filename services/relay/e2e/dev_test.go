package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/relayhq/relay/pkg/signature"
)

// devProcess is `relay dev` run as a newcomer runs it, on free ports.
type devProcess struct {
	t        *testing.T
	cmd      *exec.Cmd
	api      string
	token    string
	receiver string
	kafka    string
	done     chan error
}

var bannerLine = regexp.MustCompile(`^\s+(API|Receiver|Kafka)\s+(\S+?)(/\?mode\S*)?(\s+admin token: (\S+)|\s+kcat .*)?$`)

func startDev(t *testing.T, dataDir string, env ...string) *devProcess {
	t.Helper()
	bin := os.Getenv("RELAY_TEST_BIN")
	if testing.Short() || bin == "" {
		t.Skip("needs the relay binary: run through make test (scripts/testenv.sh builds it)")
	}
	args := []string{"dev", "--kafka-port", "0", "--s3-addr", "127.0.0.1:0", "--receiver-addr", "127.0.0.1:0"}
	if dataDir != "" {
		args = append(args, "--data-dir", dataDir)
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(),
		"RELAY_HTTP_ADDR=127.0.0.1:0", "RELAY_RETRY_TIERS=1s,2s,4s", "RELAY_ADMIN_TOKEN=", "RELAY_API=",
		"RELAY_DELIVER_ADMIN_ADDR=127.0.0.1:0", "RELAY_ARCHIVE_ADMIN_ADDR=127.0.0.1:0", "RELAY_COUNT_ADMIN_ADDR=127.0.0.1:0")
	cmd.Env = append(cmd.Env, env...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	logf, err := os.Create(filepath.Join(t.TempDir(), "dev.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	d := &devProcess{t: t, cmd: cmd, done: make(chan error, 1)}
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			line := sc.Text()
			if m := bannerLine.FindStringSubmatch(line); m != nil {
				switch m[1] {
				case "API":
					d.api, d.token = m[2], m[5]
				case "Receiver":
					d.receiver = m[2]
				case "Kafka":
					d.kafka = m[2]
				}
			}
			if strings.HasPrefix(line, "Next, in another terminal") {
				close(ready)
			}
		}
		_, _ = io.Copy(io.Discard, stdout)
	}()
	go func() { d.done <- cmd.Wait() }()
	select {
	case <-ready:
	case err := <-d.done:
		out, _ := os.ReadFile(logf.Name())
		t.Fatalf("relay dev exited: %v\n%s", err, out)
	case <-time.After(60 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatal("relay dev printed no banner within 60s")
	}
	if d.api == "" || d.token == "" || d.receiver == "" {
		t.Fatalf("could not read the banner: api=%q token=%q receiver=%q", d.api, d.token, d.receiver)
	}
	t.Cleanup(func() { d.stop() })
	return d
}

// stop sends Ctrl-C and waits for the ordered shutdown.
func (d *devProcess) stop() {
	if d.cmd == nil {
		return
	}
	_ = d.cmd.Process.Signal(syscall.SIGINT)
	select {
	case err := <-d.done:
		if err != nil {
			d.t.Errorf("relay dev exited with %v after Ctrl-C", err)
		}
	case <-time.After(60 * time.Second):
		_ = d.cmd.Process.Kill()
		d.t.Error("relay dev did not stop within 60s of Ctrl-C")
	}
	d.cmd = nil
}

func (d *devProcess) relay(args ...string) (string, error) {
	cmd := exec.Command(os.Getenv("RELAY_TEST_BIN"), args...)
	cmd.Env = append(os.Environ(), "RELAY_API="+d.api, "RELAY_ADMIN_TOKEN="+d.token)
	out, err := cmd.CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

// TestDemoScript runs the README's walkthrough (scripts/demo.sh) against
// `relay dev`, so the README cannot drift from the product.
func TestDemoScript(t *testing.T) {
	d := startDev(t, "")
	scripts := os.Getenv("RELAY_TEST_SCRIPTS")
	cmd := exec.Command(filepath.Join(scripts, "demo.sh"))
	cmd.Env = append(os.Environ(), "RELAY_API="+d.api, "RELAY_ADMIN_TOKEN="+d.token, "RELAY_RECEIVER_URL="+d.receiver, "RELAY_BIN="+os.Getenv("RELAY_TEST_BIN"))
	out, err := cmd.CombinedOutput()
	t.Logf("scripts/demo.sh:\n%s", out)
	if err != nil || !strings.Contains(string(out), "demo: OK") {
		t.Fatalf("the demo failed: %v", err)
	}
}

// TestDevRestartKeepsState: with a data directory, sources, events, dedup
// keys and secrets survive a restart of relay dev.
func TestDevRestartKeepsState(t *testing.T) {
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Skip("redis-server is not on the PATH: relay dev keeps Redis in memory without it")
	}
	dir := t.TempDir()
	d := startDev(t, dir)
	ids, err := d.relay("sources", "create", "--name", "persist", "--format", "{{.id}} {{.secret}}")
	if err != nil {
		t.Fatalf("%v: %s", err, ids)
	}
	src, secret, _ := strings.Cut(ids, " ")
	evt, err := d.relay("send", "--source", src, "--secret", secret, "--type", "a.b", "--idempotency-key", "k1", "--format", "{{.event_id}}")
	if err != nil {
		t.Fatalf("%v: %s", err, evt)
	}
	d.stop()

	d = startDev(t, dir)
	if out, err := d.relay("sources", "get", src); err != nil {
		t.Fatalf("the source is gone after a restart: %v %s", err, out)
	}
	if out, err := d.relay("events", "get", "--source", src, evt); err != nil || !strings.Contains(out, `"a.b"`) {
		t.Fatalf("the event is gone after a restart: %v %s", err, out)
	}
	dup, err := d.relay("send", "--source", src, "--secret", secret, "--type", "a.b", "--idempotency-key", "k1", "--format", "{{.duplicate}} {{.event_id}}")
	if err != nil || dup != "true "+evt {
		t.Fatalf("dedup forgot the event across the restart: %v %q", err, dup)
	}
	// The secret still verifies: the secret key was kept with the data.
	body := []byte(`{"type":"c.d"}`)
	req, _ := http.NewRequest("POST", d.api+"/in/"+src, strings.NewReader(string(body)))
	_ = (signature.Relay{}).Sign(req.Header, body, secret, time.Now())
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var rep struct {
		EventID string `json:"event_id"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&rep)
	resp.Body.Close()
	if resp.StatusCode != 202 {
		t.Fatalf("the old secret no longer verifies after a restart: %d", resp.StatusCode)
	}
	// The broker kept the first event too: it is still on relay.events.
	seen := map[string]bool{}
	cl, err := kgo.NewClient(kgo.SeedBrokers(d.kafka), kgo.ConsumeTopics("relay.events"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for !seen[evt] || !seen[rep.EventID] {
		fetches := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("relay.events after the restart holds %v, want %s and %s", seen, evt, rep.EventID)
		}
		fetches.EachRecord(func(r *kgo.Record) { seen[string(r.Key)] = true })
	}
}
