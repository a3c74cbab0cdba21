package envconfig

import (
	"strings"
	"testing"
	"time"
)

func TestReader(t *testing.T) {
	r := FromMap(map[string]string{
		"A_INT": "42", "A_BAD_INT": "x", "A_DUR": "1m30s", "A_BAD_DUR": "3",
		"A_LIST": " a, b ,,c ", "A_BOOL": "true", "A_DURS": "1s,2s", "A_EMPTY": "  ",
	})
	if got := r.Int("A_INT", 1); got != 42 {
		t.Errorf("Int = %d", got)
	}
	if got := r.Int("A_MISSING", 7); got != 7 {
		t.Errorf("Int default = %d", got)
	}
	if got := r.Duration("A_DUR", 0); got != 90*time.Second {
		t.Errorf("Duration = %v", got)
	}
	if got := r.List("A_LIST", nil); strings.Join(got, "|") != "a|b|c" {
		t.Errorf("List = %q", got)
	}
	if got := r.Bool("A_BOOL", false); !got {
		t.Errorf("Bool = %v", got)
	}
	if got := r.Durations("A_DURS", nil); len(got) != 2 || got[1] != 2*time.Second {
		t.Errorf("Durations = %v", got)
	}
	if got := r.String("A_EMPTY", "def"); got != "def" {
		t.Errorf("blank value should fall back to the default, got %q", got)
	}
	if r.Err() != nil {
		t.Fatalf("unexpected error before bad reads: %v", r.Err())
	}
	r.Int("A_BAD_INT", 0)
	r.Duration("A_BAD_DUR", 0)
	err := r.Err()
	if err == nil || !strings.Contains(err.Error(), "A_BAD_INT") || !strings.Contains(err.Error(), "A_BAD_DUR") {
		t.Fatalf("errors should name both variables, got %v", err)
	}
}
