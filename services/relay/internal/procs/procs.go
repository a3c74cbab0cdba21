// Package procs runs Relay's service binaries as separate processes, for
// the fault-injection tests (which kill them by PID) and the benchmarks
// (which measure each one's CPU and memory).
package procs

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Proc is one service process.
type Proc struct {
	Name string
	Bin  string
	Args []string
	Env  []string
	// ReadyURL answers 200 once the service is ready.
	ReadyURL string

	cmd  *exec.Cmd
	done chan struct{}
	mu   sync.Mutex
	log  []string
}

// Start starts the process and waits up to wait for it to be ready.
func (p *Proc) Start(wait time.Duration) error {
	p.cmd = exec.Command(p.Bin, p.Args...)
	p.cmd.Env = append(os.Environ(), p.Env...)
	// Its own process group, so a kill takes any children with it.
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	pr, pw := io.Pipe()
	p.cmd.Stdout, p.cmd.Stderr = pw, pw
	p.mu.Lock()
	p.log = nil
	p.mu.Unlock()
	go func() {
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			p.mu.Lock()
			if len(p.log) >= 2000 {
				p.log = p.log[1000:]
			}
			p.log = append(p.log, sc.Text())
			p.mu.Unlock()
		}
	}()
	if err := p.cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", p.Name, err)
	}
	done := make(chan struct{})
	p.done = done
	cmd := p.cmd
	go func() { _ = cmd.Wait(); pw.Close(); close(done) }()
	deadline := time.Now().Add(wait)
	client := &http.Client{Timeout: time.Second}
	for {
		select {
		case <-done:
			return fmt.Errorf("%s exited while starting:\n%s", p.Name, p.Tail(40))
		default:
		}
		if resp, err := client.Get(p.ReadyURL); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if time.Now().After(deadline) {
			p.Kill()
			return fmt.Errorf("%s not ready at %s within %v:\n%s", p.Name, p.ReadyURL, wait, p.Tail(40))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// PID is the process id, 0 when not running.
func (p *Proc) PID() int {
	if p.cmd == nil {
		return 0
	}
	return p.cmd.Process.Pid
}

// Tail returns the last n lines the process wrote.
func (p *Proc) Tail(n int) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	l := p.log
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, "\n")
}

// Kill sends SIGKILL to the process group and waits: a crash, with no
// drain, no commit, no goodbye to the consumer group.
func (p *Proc) Kill() {
	if p.cmd == nil {
		return
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	<-p.done
	p.cmd = nil
}

// Stop sends SIGTERM and waits up to wait for the ordered shutdown, then kills.
func (p *Proc) Stop(wait time.Duration) error {
	if p.cmd == nil {
		return nil
	}
	_ = syscall.Kill(p.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-p.done:
		p.cmd = nil
		return nil
	case <-time.After(wait):
		p.Kill()
		return errors.New(p.Name + " did not stop after SIGTERM; killed")
	}
}

// Ready reports whether the process still answers its readiness probe.
func (p *Proc) Ready(ctx context.Context) bool {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, p.ReadyURL, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}
