package cli

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// relay keys create sends the scope and sources and prints the token once;
// revoke deletes the key; RELAY_API_KEY is the token when set.
func TestKeysCommands(t *testing.T) {
	var asked []string
	var auth string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		asked = append(asked, strings.TrimSpace(r.Method+" "+r.URL.RequestURI()+" "+string(body)))
		auth = r.Header.Get("Authorization")
		switch r.Method {
		case "POST":
			var req map[string]any
			_ = json.Unmarshal(body, &req)
			w.WriteHeader(http.StatusCreated)
			_, _ = w.Write([]byte(`{"id":"key_1","name":"ci","scope":"read","sources":["src_a","src_b"],"created_at":"2026-12-07T00:00:00Z","last_used_at":null,"key":"key_1.SECRET"}`))
		case "DELETE":
			w.WriteHeader(http.StatusNoContent)
		}
	}))
	t.Cleanup(srv.Close)
	env := map[string]string{"RELAY_API": srv.URL, "RELAY_ADMIN_TOKEN": "admin-token-0123456789", "RELAY_API_KEY": "key_0.abc"}
	out := &bytes.Buffer{}
	a := &app{out: out, errOut: &bytes.Buffer{}, getenv: func(k string) string { return env[k] }}
	if err := a.run("keys", "create", "--name", "ci", "--scope", "read", "--source", "src_a,src_b"); err != nil {
		t.Fatal(err)
	}
	if err := a.run("keys", "revoke", "key_1"); err != nil {
		t.Fatal(err)
	}
	want := []string{
		`POST /keys {"name":"ci","scope":"read","sources":["src_a","src_b"]}`,
		`DELETE /keys/key_1`,
	}
	if strings.Join(asked, "\n") != strings.Join(want, "\n") {
		t.Fatalf("asked\n%s\nwant\n%s", strings.Join(asked, "\n"), strings.Join(want, "\n"))
	}
	if auth != "Bearer key_0.abc" {
		t.Fatalf("authorized with %q, want RELAY_API_KEY", auth)
	}
	if got := out.String(); strings.Count(got, "key_1.SECRET") != 1 || !strings.Contains(got, "src_a,src_b") || !strings.Contains(got, "Revoked key_1") {
		t.Fatalf("printed:\n%s", got)
	}
	if err := a.run("keys", "create", "--name", "ci"); err == nil {
		t.Fatal("create without --scope was accepted")
	}
}
