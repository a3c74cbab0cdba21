package outcome

import (
	"errors"
	"net/http"
	"testing"
	"time"
)

func TestJudge(t *testing.T) {
	for _, c := range []struct {
		name   string
		a      *Answer
		health Health
		wait   time.Duration
	}{
		{"no attempt", nil, Neutral, 0},
		{"cancelled", &Answer{Err: errors.New("context canceled"), Cancelled: true}, Neutral, 0},
		{"network error", &Answer{Err: errors.New("connection refused")}, Down, 0},
		{"200", &Answer{Status: 200}, Up, 0},
		{"204", &Answer{Status: 204}, Up, 0},
		{"500", &Answer{Status: 500}, Down, 0},
		{"503 with Retry-After: down, no pause", &Answer{Status: 503, Header: header("Retry-After", "30")}, Down, 0},
		{"408", &Answer{Status: 408}, Down, 0},
		{"429 with Retry-After: a pause", &Answer{Status: 429, Header: header("Retry-After", "20")}, Neutral, 20 * time.Second},
		{"429 without", &Answer{Status: 429, Header: http.Header{}}, Neutral, 0},
		{"400", &Answer{Status: 400}, Neutral, 0},
		{"410", &Answer{Status: 410}, Neutral, 0},
		{"302", &Answer{Status: 302}, Neutral, 0},
	} {
		h, w := Judge(c.a, now)
		if h != c.health || w != c.wait {
			t.Errorf("%s: %v %v, want %v %v", c.name, h, w, c.health, c.wait)
		}
	}
}

func TestThrottled(t *testing.T) {
	// ladder: 5s, 1m, 10m.
	for _, c := range []struct {
		name string
		in   time.Duration
		want Hop
	}{
		{"due", 0, Hop{Now: true}},
		{"past", -3 * time.Second, Hop{Now: true}},
		{"a nap away", 200 * time.Millisecond, Hop{Now: true, Sleep: 200 * time.Millisecond}},
		{"under the first tier: due at its time on it", 3 * time.Second, Hop{Tier: 0, NotBefore: now.Add(3 * time.Second)}},
		{"exactly the first tier", 5 * time.Second, Hop{Tier: 0, NotBefore: now.Add(5 * time.Second)}},
		{"between tiers: the shorter, to hop again", 50 * time.Second, Hop{Tier: 0, NotBefore: now.Add(5 * time.Second)}},
		{"past a minute", 9 * time.Minute, Hop{Tier: 1, NotBefore: now.Add(time.Minute)}},
		{"far ahead: the longest", 5 * time.Hour, Hop{Tier: 2, NotBefore: now.Add(10 * time.Minute)}},
	} {
		got := Throttled(now, now.Add(c.in), ladder, 0)
		if got.Now != c.want.Now || got.Sleep != c.want.Sleep || got.Tier != c.want.Tier || !got.NotBefore.Equal(c.want.NotBefore) {
			t.Errorf("%s: %+v, want %+v", c.name, got, c.want)
		}
	}
	// With a place to wait in, the last stretch is waited out in place.
	if got := Throttled(now, now.Add(3*time.Second), ladder, ladder[0].Delay); !got.Now || got.Sleep != 3*time.Second {
		t.Errorf("the last stretch with a place to wait: %+v", got)
	}
	if got := Throttled(now, now.Add(50*time.Second), ladder, ladder[0].Delay); got.Now || got.Tier != 0 || !got.NotBefore.Equal(now.Add(5*time.Second)) {
		t.Errorf("beyond the last stretch with a place to wait: %+v", got)
	}
}
