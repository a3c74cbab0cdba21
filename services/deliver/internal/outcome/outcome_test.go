package outcome

import (
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/relayhq/relay/pkg/catalog"
	"github.com/relayhq/relay/pkg/delivery"
	"github.com/relayhq/relay/pkg/record"
)

func TestClassify(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	tests := []struct {
		status int
		err    error
		ra     string
		want   Kind
		reason string
		gone   bool
		wantRA time.Duration
	}{
		{200, nil, "", Delivered, "", false, 0},
		{204, nil, "", Delivered, "", false, 0},
		{0, errors.New("connection refused"), "", Retry, "", false, 0},
		{408, nil, "", Retry, "", false, 0},
		{425, nil, "", Retry, "", false, 0},
		{429, nil, "120", Retry, "", false, 2 * time.Minute},
		{500, nil, "", Retry, "", false, 0},
		{503, nil, now.Add(45 * time.Second).UTC().Format(http.TimeFormat), Retry, "", false, 45 * time.Second},
		{400, nil, "", Dead, record.DeadNonRetryableStatus, false, 0},
		{401, nil, "", Dead, record.DeadNonRetryableStatus, false, 0},
		{404, nil, "", Dead, record.DeadNonRetryableStatus, false, 0},
		{410, nil, "", Dead, record.DeadGone, true, 0},
		{301, nil, "", Retry, "", false, 0},
	}
	for _, tt := range tests {
		h := http.Header{}
		if tt.ra != "" {
			h.Set("Retry-After", tt.ra)
		}
		v := Classify(tt.status, tt.err, h, now)
		if v.Kind != tt.want || v.DeadReason != tt.reason || v.Gone != tt.gone || v.RetryAfter != tt.wantRA {
			t.Errorf("Classify(%d, %v, %q) = %+v", tt.status, tt.err, tt.ra, v)
		}
	}
}

func TestRetryAfter(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	for v, want := range map[string]time.Duration{"0": 0, "5": 5 * time.Second, " 30 ": 30 * time.Second} {
		if got, ok := RetryAfter(v, now); !ok || got != want {
			t.Errorf("RetryAfter(%q) = %v %v", v, got, ok)
		}
	}
	for _, bad := range []string{"", "-1", "soon", "1.5"} {
		if _, ok := RetryAfter(bad, now); ok {
			t.Errorf("RetryAfter(%q) accepted", bad)
		}
	}
	if got, _ := RetryAfter(now.Add(-time.Hour).UTC().Format(http.TimeFormat), now); got != 0 {
		t.Errorf("a date in the past = %v, want 0", got)
	}
}

func TestNextTier(t *testing.T) {
	tiers, _ := record.Tiers(record.DefaultTierDelays) // 5s 30s 2m 10m 1h 6h
	tests := []struct {
		current int
		ra      time.Duration
		want    int
		ok      bool
	}{
		{-1, 0, 0, true},
		{0, 0, 1, true},
		{4, 0, 5, true},
		{5, 0, 0, false},
		{-1, 45 * time.Second, 2, true}, // first tier >= 45s is 2m
		{-1, 30 * time.Second, 1, true}, // exactly 30s
		{2, 10 * time.Second, 3, true},  // never go back down the ladder
		{-1, 24 * time.Hour, 5, true},   // longer than every tier: the last one
		{5, 10 * time.Second, 0, false}, // exhausted whatever Retry-After says
	}
	for _, tt := range tests {
		got, ok := NextTier(tiers, tt.current, tt.ra)
		if got != tt.want || ok != tt.ok {
			t.Errorf("NextTier(%d, %v) = %d %v, want %d %v", tt.current, tt.ra, got, ok, tt.want, tt.ok)
		}
	}
}

// An error says what the endpoint answered; for a redirect, also where to,
// since redirects are not followed.
func TestDescribe(t *testing.T) {
	long := "https://example.com/" + strings.Repeat("a", 400)
	for _, c := range []struct {
		status   int
		location string
		want     string
	}{
		{500, "", "HTTP 500 Internal Server Error"},
		{404, "https://ignored.example", "HTTP 404 Not Found"},
		{301, "https://hooks.example.com/new", "HTTP 301 Moved Permanently to https://hooks.example.com/new (redirects are not followed: update the subscription's url)"},
		{308, "", "HTTP 308 Permanent Redirect (a redirect without a Location; redirects are not followed)"},
		{302, long, "HTTP 302 Found to " + long[:maxLocation] + "… (redirects are not followed: update the subscription's url)"},
	} {
		h := http.Header{}
		if c.location != "" {
			h.Set("Location", c.location)
		}
		if got := Describe(c.status, h); got != c.want {
			t.Errorf("Describe(%d, %q) = %q, want %q", c.status, c.location, got, c.want)
		}
	}
}

func TestMovesLane(t *testing.T) {
	for _, c := range []struct {
		status, onFailure string
		want              bool
	}{
		{delivery.StatusDelivered, catalog.OnFailureSkip, true},
		{delivery.StatusDelivered, catalog.OnFailureBlock, true},
		{delivery.StatusDead, catalog.OnFailureSkip, true},
		{delivery.StatusDead, catalog.OnFailureBlock, false},
		{delivery.StatusRetrying, catalog.OnFailureSkip, false},
		{delivery.StatusThrottled, catalog.OnFailureSkip, false},
		{"", catalog.OnFailureSkip, false},
	} {
		if got := MovesLane(c.status, c.onFailure); got != c.want {
			t.Errorf("MovesLane(%q, %q) = %v, want %v", c.status, c.onFailure, got, c.want)
		}
	}
}
