package cli

import (
	"bytes"
	"strings"
	"testing"

	"github.com/spf13/pflag"
)

// relay bench refuses a warm-up it cannot run before it needs a broker.
func TestBenchRefusesBadWarmUp(t *testing.T) {
	for _, args := range [][]string{{"--warm-up-rate", "0"}, {"--warm-up-rate", "-5"}, {"--warm-up", "-1s"}} {
		var out, errOut bytes.Buffer
		a := &app{out: &out, errOut: &errOut, getenv: func(string) string { return "" }}
		err := a.run("bench", args...)
		if err == nil || !strings.Contains(err.Error(), "--warm-up") {
			t.Fatalf("relay bench %v: %v, want an error naming the flag", args, err)
		}
	}
}

// A report names the command that produced it, flags and all.
func TestBenchCommandNamesTheFlags(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--bin-dir", "bin", "--out", "bench-results/latest.md"}, "make bench"},
		{[]string{"--only", "fanout", "--out", "x.md"}, "make build && scripts/testenv.sh ./bin/relay bench --only fanout"},
		{[]string{"--warm-up-rate", "3000", "--step", "8s"}, "make build && scripts/testenv.sh ./bin/relay bench --step 8s --warm-up-rate 3000"},
	} {
		fs := pflag.NewFlagSet("bench", pflag.ContinueOnError)
		bindBenchFlags(fs)
		if err := fs.Parse(c.args); err != nil {
			t.Fatal(err)
		}
		if got := benchCommand(fs); got != c.want {
			t.Errorf("relay bench %v names %q, want %q", c.args, got, c.want)
		}
	}
}
