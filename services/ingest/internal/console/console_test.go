package console

import "testing"

func TestSafeNext(t *testing.T) {
	for next, want := range map[string]string{
		"":                           "/console/sources",
		"/console/dlq?reason=gone":   "/console/dlq?reason=gone",
		"https://evil.example/":      "/console/sources",
		"//evil.example/console/":    "/console/sources",
		"/console/\\evil":            "/console/sources",
		"/consolex/":                 "/console/sources",
		"/console/sources\r\nX-A: b": "/console/sources",
		"/metrics":                   "/console/sources",
	} {
		if got := safeNext(next); got != want {
			t.Errorf("safeNext(%q) = %q, want %q", next, got, want)
		}
	}
}

func TestLocalTime(t *testing.T) {
	for in, want := range map[string]string{
		"":                     "",
		"2026-12-07T10:30":     "2026-12-07T10:30:00Z",
		"2026-12-07T10:30:05":  "2026-12-07T10:30:05Z",
		"2026-12-07T10:30:00Z": "2026-12-07T10:30:00Z",
	} {
		if got, ok := localTime(in); !ok || got != want {
			t.Errorf("localTime(%q) = %q, %v; want %q", in, got, ok, want)
		}
	}
	if _, ok := localTime("yesterday"); ok {
		t.Error("localTime accepted yesterday")
	}
}
