package dispatch

import (
	"testing"
	"time"
)

func TestLimit(t *testing.T) {
	ms := time.Millisecond
	t0 := time.Unix(1000, 0)
	ok := func(took time.Duration) Answer { return Answer{Took: took} }
	for _, tc := range []struct {
		name    string
		max     int
		answers []Answer
		running int
		want    int
	}{
		{"starts at a few", 32, nil, 0, initialLimit},
		{"never above the operator's cap", 4, nil, 0, 4},
		{"grows while used and fast: by one per limit of answers", 64, repeat(ok(5*ms), 200), 64, 21},
		{"does not grow while mostly idle", 64, repeat(ok(5*ms), 200), 1, initialLimit},
		{"stays within the cap", 10, repeat(ok(5*ms), 500), 10, 10},
		{"halves on overload", 32, []Answer{ok(5 * ms), {Took: 5 * ms, Overload: true}}, 8, 4},
		{"shrinks on answers far slower than its best", 32, append([]Answer{ok(5 * ms)}, ok(500*ms)), 8, 7},
		{"a little slower is noise", 32, append([]Answer{ok(5 * ms)}, repeat(ok(15*ms), 5)...), 1, initialLimit},
		{"no request, nothing learnt", 32, []Answer{{}, {}}, 8, initialLimit},
		{"never below one", 32, repeat(Answer{Took: ms, Overload: true}, 50), 1, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := newLimit(tc.max)
			now := t0
			for _, a := range tc.answers {
				now = now.Add(time.Second) // apart enough that each backoff counts
				l.observe(a, tc.running, now)
			}
			if got := l.allowed(); got != tc.want {
				t.Fatalf("allowed() = %d, want %d (value %.2f)", got, tc.want, l.value)
			}
		})
	}
}

// TestLimitBacksOffOncePerRound: the answers of jobs already started when
// the limit shrank do not shrink it again.
func TestLimitBacksOffOncePerRound(t *testing.T) {
	l := newLimit(32)
	now := time.Unix(1000, 0)
	l.observe(Answer{Took: 10 * time.Millisecond}, 8, now)
	for i := 0; i < 8; i++ {
		l.observe(Answer{Took: 10 * time.Millisecond, Overload: true}, 8, now.Add(time.Duration(i)*time.Millisecond))
	}
	if got := l.allowed(); got != 4 {
		t.Fatalf("after one round of 503s: %d, want 4", got)
	}
	l.observe(Answer{Took: 10 * time.Millisecond, Overload: true}, 8, now.Add(time.Second))
	if got := l.allowed(); got != 2 {
		t.Fatalf("after the next round: %d, want 2", got)
	}
}

func repeat(a Answer, n int) []Answer {
	out := make([]Answer, n)
	for i := range out {
		out[i] = a
	}
	return out
}
