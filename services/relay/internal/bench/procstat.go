package bench

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// clockTicks is USER_HZ, 100 on every Linux Relay runs on.
const clockTicks = 100

// ProcSample is a process's CPU time at one instant.
type ProcSample struct {
	PID  int
	CPU  time.Duration
	When time.Time
}

// SampleProc reads /proc/<pid>/stat: the CPU time of the process and of
// its children that have ended.
func SampleProc(pid int) (ProcSample, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return ProcSample{}, err
	}
	s := string(b)
	// Fields after the command name, which may hold spaces, in parentheses.
	rest := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	if len(rest) < 15 {
		return ProcSample{}, fmt.Errorf("short /proc/%d/stat", pid)
	}
	// utime and stime, plus cutime and cstime: the children the process has
	// waited for, such as Redis's AOF rewrites, which fork.
	var ticks int64
	for _, f := range rest[11:15] {
		n, _ := strconv.ParseInt(f, 10, 64)
		ticks += n
	}
	return ProcSample{PID: pid, CPU: time.Duration(ticks) * time.Second / clockTicks, When: time.Now()}, nil
}

// Cores is the CPU used between two samples, in cores (1.0 = one core busy).
func Cores(a, b ProcSample) float64 {
	wall := b.When.Sub(a.When).Seconds()
	if wall <= 0 {
		return 0
	}
	return (b.CPU - a.CPU).Seconds() / wall
}

// PeakRSS reads the process's peak resident set size (VmHWM) in bytes.
func PeakRSS(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "VmHWM:") {
			f := strings.Fields(line)
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb << 10
		}
	}
	return 0
}

// Usage is the CPU and peak memory of the processes of one run.
type Usage struct {
	Cores map[string]float64
	Peak  map[string]int64
	// Rewrites is how many of Redis's AOF rewrites (forked children, each
	// about a core for a second per few hundred MiB of data) ran during the
	// run, one already running at its start included.
	Rewrites int
}

// Rewrites reports Redis's forks so far and whether one is running now
// (INFO: total_forks, aof_rewrite_in_progress); ok is false when unknown.
type Rewrites func() (forks int64, running, ok bool)

// Meter samples named processes at the start and end of a run.
type Meter struct {
	pids  map[string]int
	start map[string]ProcSample
	// rewrites, when set, counts Redis's rewrites from forks0 on.
	rewrites Rewrites
	forks0   int64
	running0 bool
}

// CountRewrites makes the meter count Redis's AOF rewrites as r reports them.
func (m *Meter) CountRewrites(r Rewrites) *Meter {
	if r == nil {
		return m
	}
	if forks, running, ok := r(); ok {
		m.rewrites, m.forks0, m.running0 = r, forks, running
	}
	return m
}

// NewMeter starts measuring the named processes (PID 0 ones are skipped).
func NewMeter(pids map[string]int) *Meter {
	m := &Meter{pids: map[string]int{}, start: map[string]ProcSample{}}
	for name, pid := range pids {
		if pid == 0 {
			continue
		}
		if s, err := SampleProc(pid); err == nil {
			m.pids[name], m.start[name] = pid, s
		}
	}
	return m
}

// Stop ends the measurement.
func (m *Meter) Stop() Usage {
	u := Usage{Cores: map[string]float64{}, Peak: map[string]int64{}}
	for name, pid := range m.pids {
		if s, err := SampleProc(pid); err == nil {
			u.Cores[name] = Cores(m.start[name], s)
		}
		u.Peak[name] = PeakRSS(pid)
	}
	if m.rewrites != nil {
		if forks, _, ok := m.rewrites(); ok {
			u.Rewrites = int(forks - m.forks0)
			if m.running0 {
				u.Rewrites++
			}
		}
	}
	return u
}
