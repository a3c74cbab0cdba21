package testenv

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/relayhq/relay/pkg/kafka"
	"github.com/relayhq/relay/pkg/lifecycle"
)

// Process is a server a test starts, kills and restarts by its own PID, for
// fault injection: a Kafka broker or a redis-server of the test's own.
type Process struct {
	t     testing.TB
	name  string
	Addr  string
	start func() *exec.Cmd
	ready func(ctx context.Context) error
	cmd   *exec.Cmd
	done  chan struct{}
}

func freePort(t testing.TB) int {
	t.Helper()
	p, err := lifecycle.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// StartKafka starts a Kafka broker of the test's own, on free ports, with its
// data in a temporary directory that survives restarts: Apache Kafka from the
// harness's jars, or in kfake-fallback runs (never in CI) the kfake stand-in
// with a data directory.
func StartKafka(t testing.TB) *Process {
	t.Helper()
	return startKafka(t, nil)
}

// StartKafkaTLS starts an Apache Kafka broker of the test's own whose client
// listener speaks only TLS with the certificates of f and requires a client
// certificate its CA signed (mutual TLS). It skips in kfake-fallback runs.
func StartKafkaTLS(t testing.TB, f TLSFiles) *Process {
	t.Helper()
	if os.Getenv("RELAY_TEST_KAFKA_KIND") == "kfake" {
		t.Skip("the kfake stand-in has no TLS listener")
	}
	return startKafka(t, &f)
}

// KafkaTLSEnv starts a broker of the test's own that requires mutual TLS
// (StartKafkaTLS) and returns the RELAY_KAFKA_* variables that reach it: its
// address, TLS on, the CA and a client certificate, one partition a topic.
func KafkaTLSEnv(t testing.TB) map[string]string {
	t.Helper()
	f := WriteTLSFiles(t)
	broker := StartKafkaTLS(t, f)
	return map[string]string{
		"RELAY_KAFKA_BROKERS": broker.Addr, "RELAY_KAFKA_PARTITIONS": "1", "RELAY_KAFKA_DIAL_TIMEOUT": "2s",
		"RELAY_KAFKA_TLS": "true", "RELAY_KAFKA_TLS_CA_FILE": f.CA,
		"RELAY_KAFKA_TLS_CERT_FILE": f.ClientCert, "RELAY_KAFKA_TLS_KEY_FILE": f.ClientKey,
	}
}

func startKafka(t testing.TB, f *TLSFiles) *Process {
	t.Helper()
	KafkaBrokers(t) // skips or fails like every integration test
	dir := t.TempDir()
	port := freePort(t)
	p := &Process{t: t, name: "kafka", Addr: "127.0.0.1:" + strconv.Itoa(port)}
	probe := []kgo.Opt{kgo.SeedBrokers(p.Addr), kgo.DialTimeout(time.Second)}
	if os.Getenv("RELAY_TEST_KAFKA_KIND") == "kfake" {
		bin := need(t, "RELAY_TEST_BIN", "relay binary")
		p.start = func() *exec.Cmd {
			return exec.Command(bin, "standin", "kafka", "--addr", p.Addr, "--data-dir", dir)
		}
	} else {
		scripts := need(t, "RELAY_TEST_SCRIPTS", "scripts directory")
		args := []string{"start", dir, strconv.Itoa(port), strconv.Itoa(freePort(t))}
		if f != nil {
			p.name = "kafka-tls"
			args = append(args, filepath.Dir(f.CA), strconv.Itoa(freePort(t)))
			cfg, err := clientTLS(*f)
			if err != nil {
				t.Fatal(err)
			}
			probe = append(probe, kgo.DialTLSConfig(cfg))
		}
		p.start = func() *exec.Cmd {
			return exec.Command(filepath.Join(scripts, "kafka.sh"), args...)
		}
	}
	p.ready = func(ctx context.Context) error {
		cl, err := kgo.NewClient(probe...)
		if err != nil {
			return err
		}
		defer cl.Close()
		_, err = kafka.BrokerVersion(ctx, cl)
		return err
	}
	p.Start()
	t.Cleanup(p.Kill)
	return p
}

// StartRedis starts a redis-server of the test's own (AOF on, noeviction)
// whose data survives Kill and Start.
func StartRedis(t testing.TB) *Process {
	t.Helper()
	return startRedis(t, "redis", nil, func(port string) []string { return []string{"--port", port} })
}

// StartRedisTLS starts a redis-server of the test's own that speaks only TLS
// with the certificates of f and requires a client certificate its CA signed
// (mutual TLS).
func StartRedisTLS(t testing.TB, f TLSFiles) *Process {
	t.Helper()
	cfg, err := clientTLS(f)
	if err != nil {
		t.Fatal(err)
	}
	return startRedis(t, "redis-tls", cfg, func(port string) []string {
		return []string{"--port", "0", "--tls-port", port, "--tls-cert-file", f.ServerCert, "--tls-key-file", f.ServerKey,
			"--tls-ca-cert-file", f.CA, "--tls-auth-clients", "yes"}
	})
}

// startRedis runs redis-server with listen's arguments for its port; the
// readiness probe dials with tlsCfg when it is not nil.
func startRedis(t testing.TB, name string, tlsCfg *tls.Config, listen func(port string) []string) *Process {
	t.Helper()
	RedisAddr(t)
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		if CI() {
			t.Fatal("redis-server not found")
		}
		t.Skip("redis-server not found")
	}
	dir := t.TempDir()
	port := strconv.Itoa(freePort(t))
	p := &Process{t: t, name: name, Addr: "127.0.0.1:" + port}
	p.start = func() *exec.Cmd {
		args := append([]string{"--bind", "127.0.0.1"}, listen(port)...)
		args = append(args, "--dir", dir, "--appendonly", "yes", "--appendfsync", "always", "--maxmemory-policy", "noeviction", "--save", "")
		return exec.Command(bin, args...)
	}
	p.ready = func(ctx context.Context) error {
		var c net.Conn
		var err error
		if tlsCfg != nil {
			c, err = (&tls.Dialer{Config: tlsCfg}).DialContext(ctx, "tcp", p.Addr)
		} else {
			c, err = (&net.Dialer{}).DialContext(ctx, "tcp", p.Addr)
		}
		if err != nil {
			return err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(time.Second))
		if _, err := c.Write([]byte("PING\r\n")); err != nil {
			return err
		}
		line, err := bufio.NewReader(c).ReadString('\n')
		if err != nil {
			return err
		}
		if !strings.HasPrefix(line, "+PONG") {
			return fmt.Errorf("redis answered %q", line)
		}
		return nil
	}
	p.Start()
	t.Cleanup(p.Kill)
	return p
}

// Start starts the process and waits until it answers.
func (p *Process) Start() {
	p.t.Helper()
	cmd := p.start()
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	logf, err := os.CreateTemp("", "relay-"+p.name+"-*.log")
	if err != nil {
		p.t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		p.t.Fatalf("start %s: %v", p.name, err)
	}
	p.cmd, p.done = cmd, make(chan struct{})
	go func() { _ = cmd.Wait(); logf.Close(); close(p.done) }()
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	for {
		rctx, rcancel := context.WithTimeout(ctx, 2*time.Second)
		err := p.ready(rctx)
		rcancel()
		if err == nil {
			p.t.Logf("%s up at %s (pid %d)", p.name, p.Addr, cmd.Process.Pid)
			return
		}
		select {
		case <-p.done:
			out, _ := os.ReadFile(logf.Name())
			p.t.Fatalf("%s exited while starting: %s", p.name, out)
		case <-ctx.Done():
			p.t.Fatalf("%s did not come up at %s: %v", p.name, p.Addr, err)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// Kill sends SIGKILL to the process (and its children) and waits for it: a
// crash, with no chance to flush or close anything.
func (p *Process) Kill() {
	if p.cmd == nil {
		return
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	<-p.done
	p.t.Logf("%s killed (pid %d)", p.name, p.cmd.Process.Pid)
	p.cmd = nil
}

// Freeze stops the process (SIGSTOP) without closing anything: its
// connections stay open and take what is written to them, and nothing is
// answered until Thaw. A broker that took a request and has not answered.
func (p *Process) Freeze() {
	if p.cmd != nil {
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGSTOP)
	}
}

// Thaw resumes a frozen process (SIGCONT).
func (p *Process) Thaw() {
	if p.cmd != nil {
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGCONT)
	}
}

// PID is the process id, 0 when not running.
func (p *Process) PID() int {
	if p.cmd == nil {
		return 0
	}
	return p.cmd.Process.Pid
}
