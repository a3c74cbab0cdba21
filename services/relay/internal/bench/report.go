package bench

import (
	"fmt"
	"io"
	"os"
	"runtime"
	"sort"
	"strings"
	"time"
)

// Machine describes where a run happened.
func Machine() string {
	cpu := "unknown CPU"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "model name") {
				cpu = strings.TrimSpace(strings.SplitN(l, ":", 2)[1])
				break
			}
		}
	}
	mem := ""
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "MemTotal:") {
				var kb int64
				fmt.Sscanf(strings.TrimSpace(strings.TrimPrefix(l, "MemTotal:")), "%d", &kb)
				mem = fmt.Sprintf(", %.0f GiB RAM", float64(kb)/(1<<20))
			}
		}
	}
	kernel := ""
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		kernel = ", Linux " + strings.TrimSpace(string(b))
	}
	return fmt.Sprintf("%s, %d CPUs%s%s, %s", cpu, runtime.NumCPU(), mem, kernel, runtime.Version())
}

func usageCell(u Usage) (string, string) {
	var names []string
	for n := range u.Cores {
		names = append(names, n)
	}
	sort.Strings(names)
	var cpu, rss []string
	for _, n := range names {
		cpu = append(cpu, fmt.Sprintf("%s %.2f", n, u.Cores[n]))
		rss = append(rss, fmt.Sprintf("%s %d", n, u.Peak[n]>>20))
	}
	return strings.Join(cpu, ", "), strings.Join(rss, ", ")
}

// note is a result's note, plus the Redis AOF rewrites that ran during it:
// each takes about a core for a second or more, which shows in the latencies.
func note(res Result) string {
	if res.Usage.Rewrites == 0 {
		return res.Note
	}
	r := fmt.Sprintf("Redis AOF rewrite ×%d during the step", res.Usage.Rewrites)
	if res.Note == "" {
		return r
	}
	return res.Note + "; " + r
}

func dur(d time.Duration) string {
	if d == 0 {
		return ""
	}
	switch {
	case d < time.Millisecond:
		return fmt.Sprintf("%.2fms", float64(d)/float64(time.Millisecond))
	case d < time.Second:
		return fmt.Sprintf("%.1fms", float64(d)/float64(time.Millisecond))
	}
	return d.Round(10 * time.Millisecond).String()
}

// Markdown writes the report.
func (r Report) Markdown(w io.Writer, command, versions string) {
	fmt.Fprintf(w, "Run %s, took %s.\n\n", r.Started.UTC().Format("2006-01-02 15:04 MST"), r.Took.Round(time.Second))
	fmt.Fprintf(w, "- machine: %s\n- services under test: %s\n- command: `%s`\n\n", Machine(), versions, command)
	fmt.Fprint(w, "### Summary\n\n")
	fmt.Fprintln(w, "| scenario | Relay | baseline | Relay / baseline | target | met |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|")
	for _, s := range r.Summary {
		met := "yes"
		if !s.Pass {
			met = "**no**"
		}
		if s.Target == "(no target)" {
			met = "–"
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s |\n", s.Scenario, s.Relay, s.Baseline, s.Ratio, s.Target, met)
	}
	fmt.Fprint(w, "\n### Every measurement\n\n")
	fmt.Fprint(w, "Latencies run from when a request was due (open loop), to the answer (ingest) or to the arrival at the endpoint (end to end). CPU is in cores over the measured window (Redis's includes its AOF rewrites, forked children, once they end); peak RSS in MiB (VmHWM: Kafka's and Redis's over their lifetime).\n\n")
	fmt.Fprintln(w, "| scenario | system | offered/s | achieved/s | p50 | p99 | errors | CPU (cores) | peak RSS (MiB) | note |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|---|---|")
	for _, res := range r.Results {
		s := res.Stats
		cpu, rss := usageCell(res.Usage)
		offered := ""
		if s.Offered > 0 {
			offered = fmt.Sprintf("%.0f", s.Offered)
		}
		fmt.Fprintf(w, "| %s | %s | %s | %.0f | %s | %s | %d | %s | %s | %s |\n",
			res.Scenario, res.System, offered, s.Achieved, dur(s.P50), dur(s.P99), s.Errors+s.Shed, cpu, rss, note(res))
	}
}
