package cli

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// fakeAPI answers each listing route from pages, keyed by cursor.
func fakeAPI(t *testing.T, pages map[string]map[string]string) *app {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		page, ok := pages[r.URL.Path][r.URL.Query().Get("cursor")]
		if !ok {
			http.NotFound(w, r)
			return
		}
		_, _ = w.Write([]byte(page))
	}))
	t.Cleanup(srv.Close)
	env := map[string]string{"RELAY_API": srv.URL, "RELAY_ADMIN_TOKEN": "test-token-0123456789"}
	return &app{out: &bytes.Buffer{}, errOut: &bytes.Buffer{}, getenv: func(k string) string { return env[k] }}
}

// The listings of everything (sources, subscriptions) show every page; the
// ones cut at --limit (events, the DLQ) say that there is more.
func TestListingsShowEverythingOrSayTheyAreCut(t *testing.T) {
	a := fakeAPI(t, map[string]map[string]string{
		"/sources": {
			"":   `{"data":[{"id":"src_1","name":"one","verification":{"scheme":"relay"}}],"next_cursor":"p2"}`,
			"p2": `{"data":[{"id":"src_2","name":"two","verification":{"scheme":"stripe"}}],"next_cursor":""}`,
		},
		"/sources/src_1/subscriptions": {
			"":   `{"data":[{"id":"sub_1","url":"https://a.example","events":["*"],"enabled":true}],"next_cursor":"p2"}`,
			"p2": `{"data":[{"id":"sub_2","url":"https://b.example","events":["x.*"],"enabled":true}],"next_cursor":""}`,
		},
		"/dlq": {
			"": `{"data":[{"event_id":"evt_1","subscription_id":"sub_1","reason":"retries_exhausted"}],"next_cursor":"p2"}`,
		},
		"/sources/src_1/events": {
			"": `{"data":[{"id":"evt_1","type":"x.y"}],"next_cursor":""}`,
		},
	})
	out := a.out.(*bytes.Buffer)
	for _, c := range []struct {
		cmd       string
		args      []string
		want, not []string
	}{
		{"sources", []string{"ls"}, []string{"src_1", "src_2"}, []string{"(more"}},
		{"subs", []string{"ls", "--source", "src_1"}, []string{"sub_1", "sub_2"}, []string{"(more"}},
		{"dlq", []string{"ls", "--limit", "1"}, []string{"evt_1", "(more parked deliveries: raise --limit"}, nil},
		{"events", []string{"ls", "--source", "src_1"}, []string{"evt_1"}, []string{"(more"}},
	} {
		out.Reset()
		if err := a.run(c.cmd, c.args...); err != nil {
			t.Fatalf("relay %s %v: %v", c.cmd, c.args, err)
		}
		for _, w := range c.want {
			if !strings.Contains(out.String(), w) {
				t.Fatalf("relay %s %v printed:\n%s\nwant %q in it", c.cmd, c.args, out, w)
			}
		}
		for _, n := range c.not {
			if strings.Contains(out.String(), n) {
				t.Fatalf("relay %s %v printed:\n%s\nwithout %q", c.cmd, c.args, out, n)
			}
		}
	}
}
