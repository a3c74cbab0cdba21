package client

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestErrorAnswers(t *testing.T) {
	for name, c := range map[string]struct {
		status int
		body   string
		want   []string
	}{
		"the API's JSON error": {404, `{"error":{"code":"source_not_found","message":"no source \"src_x\""}}`,
			[]string{`source_not_found (HTTP 404): no source "src_x"`}},
		"unauthorized, with the hint": {401, `{"error":{"code":"unauthorized","message":"missing bearer token"}}`,
			[]string{"unauthorized (HTTP 401)", "RELAY_ADMIN_TOKEN"}},
		"a proxy's page": {502, "<html>\n<head><title>502 Bad Gateway</title></head>\n<body>nginx</body></html>",
			[]string{"HTTP 502, not from the Relay API", "<html> <head><title>502 Bad Gateway</title></head> <body>nginx</body></html>"}},
		"a long foreign answer is cut": {503, strings.Repeat("é", 500), []string{"HTTP 503", strings.Repeat("é", 100) + "…"}},
		"an empty answer":              {500, "", []string{"HTTP 500"}},
	} {
		t.Run(name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(c.status)
				_, _ = w.Write([]byte(c.body))
			}))
			defer srv.Close()
			_, err := New(srv.URL, "tok").Do(context.Background(), "GET", "/sources", nil, nil)
			var e *Error
			if !errors.As(err, &e) || e.Status != c.status {
				t.Fatalf("err = %v, want an *Error with status %d", err, c.status)
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Fatalf("err = %q, want it to contain %q", err, w)
				}
			}
			if len(err.Error()) > 400 {
				t.Fatalf("err is %d bytes long", len(err.Error()))
			}
		})
	}
}

// TestListAllFollowsEveryPage: a listing longer than a page comes back whole,
// in order, with the route's own filters kept on every page.
func TestListAllFollowsEveryPage(t *testing.T) {
	var queries []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		queries = append(queries, r.URL.RawQuery)
		switch r.URL.Query().Get("cursor") {
		case "":
			_, _ = w.Write([]byte(`{"data":[{"id":"a"},{"id":"b"}],"next_cursor":"c1"}`))
		case "c1":
			_, _ = w.Write([]byte(`{"data":[{"id":"c"}],"next_cursor":"c2"}`))
		default:
			_, _ = w.Write([]byte(`{"data":[],"next_cursor":""}`))
		}
	}))
	defer srv.Close()
	raw, err := New(srv.URL, "tok").ListAll(context.Background(), "/dlq?source_id=src_1")
	if err != nil {
		t.Fatal(err)
	}
	if string(raw) != `{"data":[{"id":"a"},{"id":"b"},{"id":"c"}]}` {
		t.Fatalf("ListAll = %s", raw)
	}
	want := []string{"source_id=src_1&limit=500&cursor=", "source_id=src_1&limit=500&cursor=c1", "source_id=src_1&limit=500&cursor=c2"}
	if strings.Join(queries, " ") != strings.Join(want, " ") {
		t.Fatalf("queries = %q, want %q", queries, want)
	}
}

// TestListAllStopsOnARepeatedCursor: a server that answers the same cursor
// again would page forever.
func TestListAllStopsOnARepeatedCursor(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte(`{"data":[{"id":"a"}],"next_cursor":"same"}`))
	}))
	defer srv.Close()
	if _, err := New(srv.URL, "tok").ListAll(context.Background(), "/sources"); err == nil || !strings.Contains(err.Error(), "same cursor") {
		t.Fatalf("err = %v", err)
	}
}
