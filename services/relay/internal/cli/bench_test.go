package cli

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// relay bench refuses a warm-up it cannot run before it needs a broker.
func TestBenchRefusesBadWarmUp(t *testing.T) {
	for _, args := range [][]string{{"--warm-up-rate", "0"}, {"--warm-up-rate", "-5"}, {"--warm-up", "-1s"}} {
		var out, errOut bytes.Buffer
		a := &app{out: &out, errOut: &errOut, getenv: func(string) string { return "" }}
		err := runBench(context.Background(), a, args)
		if err == nil || !strings.Contains(err.Error(), "--warm-up") {
			t.Fatalf("relay bench %v: %v, want an error naming the flag", args, err)
		}
	}
}
