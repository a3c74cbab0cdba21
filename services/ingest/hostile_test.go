package ingest

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/relayhq/relay/pkg/testenv"
)

// TestHostileRequests sends what a hostile or broken client sends and
// checks each gets its documented error, nothing is produced, and the
// service keeps answering.
func TestHostileRequests(t *testing.T) {
	h := start(t, nil, "", map[string]string{"RELAY_HTTP_READ_TIMEOUT": "2s", "RELAY_HTTP_READ_HEADER_TIMEOUT": "1s", "RELAY_HTTP_WRITE_TIMEOUT": "30s", "RELAY_PRODUCE_TIMEOUT": "5s"})
	src := h.source("relay")
	before := h.records()
	addr := strings.TrimPrefix(h.base, "http://")

	raw := func(t *testing.T, req string) string {
		t.Helper()
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.WriteString(c, req); err != nil {
			return "write failed: " + err.Error()
		}
		line, err := bufio.NewReader(c).ReadString('\n')
		if err != nil {
			return "closed: " + err.Error()
		}
		return strings.TrimSpace(line)
	}

	t.Run("huge headers are refused with 431", func(t *testing.T) {
		got := raw(t, "POST /in/"+src.ID+" HTTP/1.1\r\nHost: x\r\nX-Big: "+strings.Repeat("a", 200<<10)+"\r\n\r\n")
		if !strings.Contains(got, "431") {
			t.Fatalf("got %q", got)
		}
	})
	t.Run("a body that never finishes is cut off by the read timeout", func(t *testing.T) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		fmt.Fprintf(c, "POST /in/%s HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{\"type\":", src.ID)
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		b, _ := io.ReadAll(c) // the server answers (400) or closes; it never waits forever
		if len(b) > 0 && !strings.Contains(string(b), "400") {
			t.Fatalf("slow body answered %q", b)
		}
	})
	t.Run("headers that never finish are cut off", func(t *testing.T) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		fmt.Fprintf(c, "POST /in/%s HTTP/1.1\r\nHost: x\r\n", src.ID)
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		start := time.Now()
		_, _ = io.ReadAll(c)
		if time.Since(start) > 9*time.Second {
			t.Fatal("a connection with unfinished headers was held open")
		}
	})

	tests := []struct {
		name   string
		method string
		path   string
		ctype  string
		body   string
		auth   bool
		want   int
	}{
		{"invalid UTF-8 in a management body", "POST", "/sources", "application/json", "{\"name\":\"\xff\xfe\"}", true, 400},
		{"a JSON array instead of an object", "POST", "/sources", "application/json", `[1,2]`, true, 400},
		{"deeply nested JSON", "POST", "/sources", "application/json", strings.Repeat("[", 10000), true, 400},
		{"form content type on a JSON route", "POST", "/sources", "application/x-www-form-urlencoded", "name=a", true, 400},
		{"a management body over 64 KiB", "POST", "/sources", "application/json", `{"name":"` + strings.Repeat("a", 70<<10) + `"}`, true, 400},
		{"dot-dot in the path", "GET", "/sources/../dlq", "", "", true, 404},
		{"encoded dot-dot", "POST", "/in/%2e%2e%2fsources", "application/json", "{}", false, 404},
		{"double slash", "GET", "//sources", "", "", true, 404},
		{"a null byte in the source id", "POST", "/in/src_%00", "application/json", "{}", false, 404},
		{"an over-long source id", "POST", "/in/" + strings.Repeat("s", 5000), "application/json", "{}", false, 404},
		{"an unsigned webhook with an odd content type", "POST", "/in/" + src.ID, "image/png", "\x89PNG", false, 401},
		{"missing auth on the DLQ", "GET", "/dlq", "", "", false, 401},
		{"missing auth on redrive", "POST", "/replay/dlq", "", "", false, 401},
		{"missing auth on a delete", "DELETE", "/sources/" + src.ID, "", "", false, 401},
		{"missing auth on replay", "POST", "/sources/" + src.ID + "/events/evt_01ARZ3NDEKTSV4RRFFQ69G5FAV/replay", "", "", false, 401},
		{"a token in the wrong scheme", "GET", "/sources", "", "", false, 401},
		{"TRACE is not allowed", "TRACE", "/sources", "", "", true, 405},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hdr := http.Header{}
			if tt.ctype != "" {
				hdr.Set("Content-Type", tt.ctype)
			}
			if tt.auth {
				hdr.Set("Authorization", "Bearer "+token)
			} else if tt.name == "a token in the wrong scheme" {
				hdr.Set("Authorization", "Basic "+token)
			}
			var body any
			if tt.body != "" {
				body = tt.body
			}
			code, respHdr, resp := h.do(tt.method, tt.path, body, hdr)
			if code != tt.want {
				t.Fatalf("status %d, want %d: %s", code, tt.want, resp)
			}
			if code != 405 || tt.method != "TRACE" {
				if !strings.HasPrefix(respHdr.Get("Content-Type"), "application/json") {
					t.Fatalf("content type %q: %s", respHdr.Get("Content-Type"), resp)
				}
				if r := decode(t, resp); r.Error.Code == "" || r.Error.Message == "" {
					t.Fatalf("no error body: %s", resp)
				}
			}
		})
	}
	if got := h.records() - before; got != 0 {
		t.Fatalf("hostile requests produced %d records", got)
	}
	// Still serving.
	if code, _, _ := h.do("GET", "/healthz", nil, nil); code != 200 {
		t.Fatalf("healthz after the hostile requests: %d", code)
	}
}

// TestBodiesBeyondTheBudgetAnswer503: with request bodies holding
// RELAY_INGEST_MAX_INFLIGHT_BYTES, one more body is refused at once with
// 503 server_busy and a Retry-After, and once bodies are let go, requests
// are served again.
func TestBodiesBeyondTheBudgetAnswer503(t *testing.T) {
	h := start(t, nil, "", map[string]string{"RELAY_INGEST_MAX_INFLIGHT_BYTES": "8192", "RELAY_HTTP_READ_TIMEOUT": "30s"})
	src := h.source("relay")
	addr := strings.TrimPrefix(h.base, "http://")
	// Two bodies of 4,096 declared bytes, of which most arrive, fill the budget.
	slow := slowSenders(t, addr, src.ID, 2, 4096, 4000)
	testenv.Eventually(t, 10*time.Second, "the two bodies to be held", func() bool { return h.metric("relay_ingest_body_bytes") == "8192" })

	body := []byte(`{"type":"order.created"}`)
	code, hdr, raw := h.do("POST", "/in/"+src.ID, body, signed(t, "relay", src.Secret, body, time.Now()))
	if r := decode(t, raw); code != 503 || r.Error.Code != "server_busy" || hdr.Get("Retry-After") != "1" {
		t.Fatalf("beyond the budget: %d %v %s", code, hdr, raw)
	}
	// The slow senders finish; their bodies are answered and let go.
	finishSlow(t, slow, 96)
	testenv.Eventually(t, 10*time.Second, "the bodies to be let go", func() bool { return h.metric("relay_ingest_body_bytes") == "0" })
	if code, _, raw := h.do("POST", "/in/"+src.ID, body, signed(t, "relay", src.Secret, body, time.Now())); code != 202 {
		t.Fatalf("after the bodies were let go: %d %s", code, raw)
	}
}

// slowSenders opens n connections to addr, each POSTing to source a body
// of declared bytes of which only sent arrive, and leaves them open.
func slowSenders(t *testing.T, addr, source string, n, declared, sent int) []net.Conn {
	t.Helper()
	var conns []net.Conn
	for i := 0; i < n; i++ {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		fmt.Fprintf(c, "POST /in/%s HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s", source, declared, strings.Repeat("x", sent))
		conns = append(conns, c)
	}
	return conns
}

// finishSlow sends the rest bytes of each slow sender's unsigned body and
// checks it is answered 401.
func finishSlow(t *testing.T, conns []net.Conn, rest int) {
	t.Helper()
	for _, c := range conns {
		if _, err := io.WriteString(c, strings.Repeat("x", rest)); err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if line, err := bufio.NewReader(c).ReadString('\n'); err != nil || !strings.Contains(line, "401") {
			t.Fatalf("a finished slow request: %q %v", line, err)
		}
	}
}
