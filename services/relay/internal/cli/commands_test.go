package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/relayhq/relay/pkg/signature"
)

// relay replay --subscription replays to that subscription only, and prints
// why the API skipped any.
func TestReplayToOneSubscription(t *testing.T) {
	var asked []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		asked = append(asked, r.Method+" "+r.URL.RequestURI())
		_, _ = w.Write([]byte(`{"event_id":"evt_1","queued":[],"skipped":[{"subscription_id":"sub_2","reason":"disabled"}]}`))
	}))
	t.Cleanup(srv.Close)
	env := map[string]string{"RELAY_API": srv.URL, "RELAY_ADMIN_TOKEN": "test-token-0123456789"}
	out := &bytes.Buffer{}
	a := &app{out: out, errOut: &bytes.Buffer{}, getenv: func(k string) string { return env[k] }}
	for _, args := range [][]string{
		{"--source", "src_1", "evt_1"},
		{"--source", "src_1", "--subscription", "sub_2", "evt_1"},
		{"--source", "src_1", "--force", "evt_1"},
	} {
		if err := a.run("replay", args...); err != nil {
			t.Fatalf("relay replay %v: %v", args, err)
		}
	}
	want := []string{
		"POST /sources/src_1/events/evt_1/replay",
		"POST /sources/src_1/events/evt_1/replay?subscription_id=sub_2",
		"POST /sources/src_1/events/evt_1/replay?force=true",
	}
	if strings.Join(asked, "\n") != strings.Join(want, "\n") {
		t.Fatalf("asked\n%s\nwant\n%s", strings.Join(asked, "\n"), strings.Join(want, "\n"))
	}
	if !strings.Contains(out.String(), "Skipped sub_2: disabled") {
		t.Fatalf("printed:\n%s", out)
	}
}

// relay secrets rewrap follows next_cursor to the end, and fails unless the
// whole walk found nothing left, so that a script does not drop the
// previous key too early.
func TestSecretsRewrapFollowsTheWalkAndFailsUntilComplete(t *testing.T) {
	pages := map[string]string{}
	var asked []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		page, ok := pages[r.URL.Query().Get("cursor")]
		if r.Method != "POST" || r.URL.Path != "/secrets/rewrap" || !ok {
			http.NotFound(w, r)
			return
		}
		asked = append(asked, r.URL.Query().Get("cursor"))
		_, _ = w.Write([]byte(page))
	}))
	t.Cleanup(srv.Close)
	env := map[string]string{"RELAY_API": srv.URL, "RELAY_ADMIN_TOKEN": "test-token-0123456789"}
	out := &bytes.Buffer{}
	a := &app{out: out, errOut: &bytes.Buffer{}, getenv: func(k string) string { return env[k] }}
	run := func() error { return a.run("secrets", "rewrap") }

	// The first call stopped at its budget with a record it could not open;
	// the second finished.
	pages[""] = `{"rewrapped":3,"current":1,"changed_meanwhile":0,"undecryptable":["sub_x"],"complete":false,"next_cursor":"src_1"}`
	pages["src_1"] = `{"rewrapped":2,"current":0,"changed_meanwhile":0,"undecryptable":[],"complete":true}`
	err := run()
	if err == nil || strings.Join(asked, ",") != ",src_1" || !strings.Contains(out.String(), "Rewrapped 5, already under the current key 1") ||
		!strings.Contains(out.String(), "Undecryptable with either key: sub_x") {
		t.Fatalf("asked %q; %v; printed:\n%s", asked, err, out)
	}
	pages[""] = `{"rewrapped":0,"current":4,"changed_meanwhile":0,"undecryptable":[],"complete":false,"next_cursor":"src_1"}`
	if err := run(); err != nil {
		t.Fatalf("a complete walk: %v", err)
	}
	pages["src_1"] = `{"rewrapped":0,"current":0,"changed_meanwhile":0,"undecryptable":[],"complete":false,"next_cursor":"src_1"}`
	if err := run(); err == nil || !strings.Contains(err.Error(), "twice") {
		t.Fatalf("a cursor answered twice: %v", err)
	}
}

// relay send --scheme slack posts what Slack's Events API posts, signed as
// Slack signs it: the event inside its envelope, or with --type
// url_verification the handshake, whose answer it reports.
func TestSendSlack(t *testing.T) {
	const secret = "8f742231b10e8888abcd99yyyzzz85a5"
	var bodies []map[string]any
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		raw, _ := io.ReadAll(r.Body)
		if err := (signature.Slack{}).Verify(signature.Request{Header: r.Header, Body: raw}, []string{secret}, time.Now(), time.Minute); err != nil {
			t.Errorf("not signed as Slack signs: %v", err)
		}
		var b map[string]any
		if err := json.Unmarshal(raw, &b); err != nil {
			t.Errorf("body %s: %v", raw, err)
		}
		bodies = append(bodies, b)
		if b["type"] == "url_verification" {
			_, _ = w.Write([]byte(`{"challenge":"` + b["challenge"].(string) + `"}`))
			return
		}
		w.WriteHeader(http.StatusAccepted)
		_, _ = w.Write([]byte(`{"event_id":"evt_1","duplicate":false}`))
	}))
	t.Cleanup(srv.Close)
	env := map[string]string{"RELAY_API": srv.URL}
	out := &bytes.Buffer{}
	a := &app{out: out, errOut: &bytes.Buffer{}, getenv: func(k string) string { return env[k] }}
	for _, typ := range []string{"app_mention", "message.bot_message", "url_verification"} {
		if err := a.run("send", "--source", "src_1", "--secret", secret, "--scheme", "slack", "--type", typ); err != nil {
			t.Fatalf("relay send --type %s: %v", typ, err)
		}
	}
	if len(bodies) != 3 {
		t.Fatalf("%d requests", len(bodies))
	}
	for i, want := range []map[string]string{{"type": "app_mention"}, {"type": "message", "subtype": "bot_message"}} {
		ev, _ := bodies[i]["event"].(map[string]any)
		if bodies[i]["type"] != "event_callback" || bodies[i]["event_id"] == "" || ev["type"] != want["type"] || (want["subtype"] != "" && ev["subtype"] != want["subtype"]) {
			t.Errorf("event %d: %v, want an envelope around %v", i, bodies[i], want)
		}
		if _, has := ev["subtype"]; has != (want["subtype"] != "") {
			t.Errorf("event %d: subtype %v", i, ev["subtype"])
		}
	}
	if c, _ := bodies[2]["challenge"].(string); c == "" || !strings.Contains(out.String(), "Endpoint verification answered (HTTP 200) with challenge \""+c+"\"") {
		t.Fatalf("url_verification %v; printed:\n%s", bodies[2], out)
	}
}

// Help is asked for, so it is on stdout with exit status 0: a command that
// takes a verb first lists its verbs (rather than taking -h for one, which
// once ran `relay sources -h` as a call to the API), and a command without
// verbs lists its flags.
func TestHelp(t *testing.T) {
	for _, args := range [][]string{{"sources", "-h"}, {"subs", "--help"}, {"dlq", "help"}, {"archive", "-h"}, {"help", "dlq"}} {
		out, errOut := &bytes.Buffer{}, &bytes.Buffer{}
		a := &app{out: out, errOut: errOut, getenv: func(string) string { return "" }}
		if code := a.main(context.Background(), args); code != 0 {
			t.Errorf("relay %v: exit %d", args, code)
		}
		noun := args[0]
		if noun == "help" {
			noun = args[1]
		}
		if !strings.Contains(out.String(), "relay "+noun+" [command]") || !strings.Contains(out.String(), "Available Commands:") || errOut.Len() != 0 {
			t.Errorf("relay %v printed:\n%s\nand on stderr:\n%s", args, out, errOut)
		}
	}
	out := &bytes.Buffer{}
	a := &app{out: out, errOut: &bytes.Buffer{}, getenv: func(string) string { return "" }}
	if code := a.main(context.Background(), []string{"send", "-h"}); code != 0 || !strings.Contains(out.String(), "--scheme") {
		t.Errorf("relay send -h: exit %d, printed:\n%s", code, out)
	}
	// The verbs' own help lists their flags.
	out.Reset()
	if code := a.main(context.Background(), []string{"sources", "create", "--help"}); code != 0 || !strings.Contains(out.String(), "--dedup-window") {
		t.Errorf("relay sources create --help: exit %d, printed:\n%s", code, out)
	}
}

// The user's help lists what users run, not the test scaffolding, and a
// command line Relay cannot read exits 2 and says where help is.
func TestUsage(t *testing.T) {
	out, errOut := &bytes.Buffer{}, &bytes.Buffer{}
	a := &app{out: out, errOut: errOut, getenv: func(string) string { return "" }}
	if code := a.main(context.Background(), []string{"--help"}); code != 0 {
		t.Fatalf("relay --help: exit %d", code)
	}
	for _, want := range []string{"sources", "subs", "replay", "dlq", "completion", "RELAY_ADMIN_TOKEN"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("relay --help lacks %q:\n%s", want, out)
		}
	}
	for _, scaffolding := range []string{"standin", "free-port", "bench-server", "broker-version", "k8s-schemas"} {
		if strings.Contains(out.String(), scaffolding) {
			t.Errorf("relay --help lists %s:\n%s", scaffolding, out)
		}
	}
	for _, args := range [][]string{{"frobnicate"}, {"sources", "frob"}, {"sources", "ls", "--no-such-flag"}} {
		errOut.Reset()
		if code := a.main(context.Background(), args); code != 2 || !strings.Contains(errOut.String(), "--help' for usage") {
			t.Errorf("relay %v: exit %d, printed:\n%s", args, code, errOut)
		}
	}
	// A shell completion script, for bash and zsh.
	for _, shell := range []string{"bash", "zsh"} {
		out.Reset()
		if code := a.main(context.Background(), []string{"completion", shell}); code != 0 || !strings.Contains(out.String(), "relay") {
			t.Errorf("relay completion %s: exit %d, %d bytes", shell, code, out.Len())
		}
	}
}

// run runs relay NAME ARGS... as the command line would.
func (a *app) run(name string, args ...string) error {
	_, err := a.execute(context.Background(), append([]string{name}, args...))
	return err
}

// relay sources patch sends only the settings given, and refuses to send
// nothing.
func TestSourcesPatch(t *testing.T) {
	var asked []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		raw, _ := io.ReadAll(r.Body)
		asked = append(asked, r.Method+" "+r.URL.Path+" "+string(raw))
		_, _ = w.Write([]byte(`{"id":"src_1","name":"shop","verification":{"scheme":"stripe","tolerance":"10m"},"dedup_window":"24h"}`))
	}))
	t.Cleanup(srv.Close)
	env := map[string]string{"RELAY_API": srv.URL, "RELAY_ADMIN_TOKEN": "test-token-0123456789"}
	out := &bytes.Buffer{}
	a := &app{out: out, errOut: &bytes.Buffer{}, getenv: func(k string) string { return env[k] }}
	if err := a.run("sources", "patch", "src_1", "--tolerance", "10m", "--dedup-window", "24h"); err != nil {
		t.Fatal(err)
	}
	if want := `PATCH /sources/src_1 {"dedup_window":"24h","verification":{"tolerance":"10m"}}`; len(asked) != 1 || asked[0] != want {
		t.Fatalf("asked %q, want %q", asked, want)
	}
	if !strings.Contains(out.String(), "Updated source src_1 (shop, scheme stripe, tolerance 10m, dedup window 24h).") {
		t.Fatalf("printed:\n%s", out)
	}
	if err := a.run("sources", "patch", "src_1"); err == nil || len(asked) != 1 {
		t.Fatalf("patch without a change: %v, asked %q", err, asked)
	}
	for _, args := range [][]string{{"--forward-headers", "X-GitHub-Event, X-GitHub-Delivery"}, {"--forward-headers", ""}, {"--allowed-ips", "192.0.2.0/24,198.51.100.9"}} {
		if err := a.run("sources", append([]string{"patch", "src_1"}, args...)...); err != nil {
			t.Fatal(err)
		}
	}
	if want := []string{`PATCH /sources/src_1 {"forward_headers":["X-GitHub-Event","X-GitHub-Delivery"]}`, `PATCH /sources/src_1 {"forward_headers":[]}`,
		`PATCH /sources/src_1 {"allowed_ips":["192.0.2.0/24","198.51.100.9"]}`}; strings.Join(asked[1:], "\n") != strings.Join(want, "\n") {
		t.Fatalf("asked %q, want %q", asked[1:], want)
	}
}

// relay subs create and patch --header send the headers a subscription's
// deliveries carry; --no-headers removes them.
func TestSubsHeaders(t *testing.T) {
	var asked []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		raw, _ := io.ReadAll(r.Body)
		asked = append(asked, r.Method+" "+string(raw))
		_, _ = w.Write([]byte(`{"id":"sub_1","url":"https://example.com","events":["*"],"header_names":["Authorization"],"secret":"whsec_x"}`))
	}))
	t.Cleanup(srv.Close)
	env := map[string]string{"RELAY_API": srv.URL, "RELAY_ADMIN_TOKEN": "test-token-0123456789"}
	out := &bytes.Buffer{}
	a := &app{out: out, errOut: &bytes.Buffer{}, getenv: func(k string) string { return env[k] }}
	for _, args := range [][]string{
		{"create", "--source", "src_1", "--url", "https://example.com", "--header", "Authorization: Bearer a:b", "--header", "X-Tenant:acme"},
		{"patch", "--source", "src_1", "sub_1", "--header", "Authorization: Bearer c"},
		{"patch", "--source", "src_1", "sub_1", "--no-headers"},
	} {
		if err := a.run("subs", args...); err != nil {
			t.Fatalf("relay subs %v: %v", args, err)
		}
	}
	want := []string{
		`POST {"events":["*"],"headers":{"Authorization":"Bearer a:b","X-Tenant":"acme"},"url":"https://example.com"}`,
		`PATCH {"headers":{"Authorization":"Bearer c"}}`,
		`PATCH {"headers":{}}`,
	}
	if strings.Join(asked, "\n") != strings.Join(want, "\n") {
		t.Fatalf("asked\n%s\nwant\n%s", strings.Join(asked, "\n"), strings.Join(want, "\n"))
	}
	if !strings.Contains(out.String(), "headers Authorization   (values kept encrypted, never shown)") {
		t.Fatalf("printed:\n%s", out)
	}
	for _, args := range [][]string{
		{"patch", "--source", "src_1", "sub_1", "--no-headers", "--header", "A: b"},
		{"create", "--source", "src_1", "--url", "https://example.com", "--header", "no colon"},
	} {
		if err := a.run("subs", args...); err == nil {
			t.Errorf("relay subs %v: no error", args)
		}
	}
}

// relay subs create and patch --filter and --max-attempts send the
// subscription's delivery policy; an empty --filter removes it.
func TestSubsPolicy(t *testing.T) {
	var asked []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		raw, _ := io.ReadAll(r.Body)
		asked = append(asked, r.Method+" "+string(raw))
		_, _ = w.Write([]byte(`{"id":"sub_1","url":"https://example.com","events":["*"],"filter":"data.total > 100","retry":{"max_attempts":3},"secret":"whsec_x"}`))
	}))
	t.Cleanup(srv.Close)
	env := map[string]string{"RELAY_API": srv.URL, "RELAY_ADMIN_TOKEN": "test-token-0123456789"}
	out := &bytes.Buffer{}
	a := &app{out: out, errOut: &bytes.Buffer{}, getenv: func(k string) string { return env[k] }}
	for _, args := range [][]string{
		{"create", "--source", "src_1", "--url", "https://example.com", "--filter", "data.total > 100", "--max-attempts", "3"},
		{"patch", "--source", "src_1", "sub_1", "--filter", ""},
		{"patch", "--source", "src_1", "sub_1", "--max-attempts", "0"},
		{"patch", "--source", "src_1", "sub_1", "--rate", "50/s", "--burst", "5"},
		{"patch", "--source", "src_1", "sub_1", "--rate", "3000/m"},
		{"patch", "--source", "src_1", "sub_1", "--rate", "none"},
	} {
		if err := a.run("subs", args...); err != nil {
			t.Fatalf("relay subs %v: %v", args, err)
		}
	}
	want := []string{
		`POST {"events":["*"],"filter":"data.total \u003e 100","retry":{"max_attempts":3},"url":"https://example.com"}`,
		`PATCH {"filter":""}`,
		`PATCH {"retry":{"max_attempts":0}}`,
		`PATCH {"rate_limit":{"burst":5,"per_second":50}}`,
		`PATCH {"rate_limit":{"per_minute":3000}}`,
		`PATCH {"rate_limit":{}}`,
	}
	if strings.Join(asked, "\n") != strings.Join(want, "\n") {
		t.Fatalf("asked\n%s\nwant\n%s", strings.Join(asked, "\n"), strings.Join(want, "\n"))
	}
	if !strings.Contains(out.String(), "filter  data.total > 100") || !strings.Contains(out.String(), "at most 3 attempts") {
		t.Fatalf("printed:\n%s", out)
	}
	for _, args := range [][]string{
		{"patch", "--source", "src_1", "sub_1", "--rate", "50"},
		{"patch", "--source", "src_1", "sub_1", "--rate", "0/s"},
		{"patch", "--source", "src_1", "sub_1", "--rate", "5/h"},
		{"patch", "--source", "src_1", "sub_1", "--burst", "3"},
		{"patch", "--source", "src_1", "sub_1", "--rate", "none", "--burst", "3"},
	} {
		if err := a.run("subs", args...); err == nil {
			t.Errorf("relay subs %v: no error", args)
		}
	}
}

// relay replay --since replays a time range, following next_cursor, and
// sums what the calls did.
func TestReplayRangeFollowsTheCursor(t *testing.T) {
	var asked []url.Values
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != "POST" || r.URL.Path != "/sources/src_1/replay" {
			http.NotFound(w, r)
			return
		}
		asked = append(asked, r.URL.Query())
		if r.URL.Query().Get("cursor") == "" {
			_, _ = w.Write([]byte(`{"events":200,"queued":150,"skipped":{"already_delivered":50},"complete":false,"next_cursor":"c1"}`))
			return
		}
		_, _ = w.Write([]byte(`{"events":10,"queued":10,"skipped":{},"complete":true}`))
	}))
	t.Cleanup(srv.Close)
	env := map[string]string{"RELAY_API": srv.URL, "RELAY_ADMIN_TOKEN": "test-token-0123456789"}
	out := &bytes.Buffer{}
	a := &app{out: out, errOut: &bytes.Buffer{}, getenv: func(k string) string { return env[k] }}
	start := time.Now()
	if err := a.run("replay", "--source", "src_1", "--since", "2h", "--subscription", "sub_1", "--force"); err != nil {
		t.Fatal(err)
	}
	if len(asked) != 2 || asked[1].Get("cursor") != "c1" || asked[0].Get("subscription_id") != "sub_1" || asked[0].Get("force") != "true" {
		t.Fatalf("asked %v", asked)
	}
	from, err := time.Parse(time.RFC3339Nano, asked[0].Get("from"))
	if err != nil || from.Before(start.Add(-2*time.Hour-time.Second)) || from.After(start.Add(-2*time.Hour+time.Second)) {
		t.Fatalf("from = %s (%v), want two hours ago", asked[0].Get("from"), err)
	}
	if !strings.Contains(out.String(), "Went through 210 event(s): queued 160 deliveries.") || !strings.Contains(out.String(), "Skipped 50: already_delivered") {
		t.Fatalf("printed:\n%s", out)
	}
	for _, args := range [][]string{
		{"--source", "src_1", "--since", "2h", "--from", "2026-12-04T10:00:00Z"},
		{"--source", "src_1", "--since", "2h", "evt_1"},
	} {
		if err := a.run("replay", args...); err == nil {
			t.Errorf("relay replay %v: no error", args)
		}
	}
}

// relay send --scheme hmac signs as the source is configured, read from the
// API, and names the type in the source's type header.
func TestSendHMAC(t *testing.T) {
	const secret = "0123456789abcdef0123456789abcdef"
	params := map[string]string{"header": "Linear-Signature", "algorithm": "sha256", "encoding": "hex", "type_header": "Linear-Event"}
	var verified, typed bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.Method + " " + r.URL.Path {
		case "GET /sources/src_1":
			v := map[string]string{"scheme": "hmac"}
			for k, p := range params {
				v[k] = p
			}
			_ = json.NewEncoder(w).Encode(map[string]any{"id": "src_1", "verification": v})
		case "POST /in/src_1":
			raw, _ := io.ReadAll(r.Body)
			s, _ := signature.ForSource("hmac", params)
			verified = s.Verify(signature.Request{Header: r.Header, Body: raw}, []string{secret}, time.Now(), 0) == nil
			typed = r.Header.Get("Linear-Event") == "Issue"
			w.WriteHeader(http.StatusAccepted)
			_, _ = w.Write([]byte(`{"event_id":"evt_1","duplicate":false}`))
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	env := map[string]string{"RELAY_API": srv.URL, "RELAY_ADMIN_TOKEN": "test-token-0123456789"}
	a := &app{out: &bytes.Buffer{}, errOut: &bytes.Buffer{}, getenv: func(k string) string { return env[k] }}
	if err := a.run("send", "--source", "src_1", "--secret", secret, "--scheme", "hmac", "--type", "Issue"); err != nil {
		t.Fatal(err)
	}
	if !verified || !typed {
		t.Fatalf("verified %v, type header set %v", verified, typed)
	}
	if err := a.run("send", "--source", "src_2", "--secret", secret, "--scheme", "hmac"); err == nil {
		t.Fatal("signed for a source the API does not know")
	}
}

// relay sources and subs take the ordering flags: a source's ordering key
// (a header or a JSON path, or none on patch), a subscription's ordered and
// on_failure.
func TestOrderingFlags(t *testing.T) {
	var asked []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		raw, _ := io.ReadAll(r.Body)
		path := r.URL.Path
		if r.URL.RawQuery != "" {
			path += "?" + r.URL.RawQuery
		}
		asked = append(asked, r.Method+" "+path+" "+string(raw))
		if strings.Contains(r.URL.Path, "subscriptions") {
			_, _ = w.Write([]byte(`{"id":"sub_1","url":"https://example.com","events":["*"],"ordered":true,"on_failure":"block","secret":"whsec_x"}`))
			return
		}
		_, _ = w.Write([]byte(`{"id":"src_1","name":"shop","verification":{"scheme":"relay"}}`))
	}))
	t.Cleanup(srv.Close)
	env := map[string]string{"RELAY_API": srv.URL, "RELAY_ADMIN_TOKEN": "test-token-0123456789"}
	out := &bytes.Buffer{}
	a := &app{out: out, errOut: &bytes.Buffer{}, getenv: func(k string) string { return env[k] }}
	for _, c := range []struct {
		cmd  string
		args []string
	}{
		{"sources", []string{"create", "--name", "shop", "--ordering-key-path", "data.customer_id"}},
		{"sources", []string{"patch", "src_1", "--ordering-key-header", "X-Customer-Id"}},
		{"sources", []string{"patch", "src_1", "--no-ordering-key"}},
		{"subs", []string{"create", "--source", "src_1", "--url", "https://example.com", "--ordered", "--on-failure", "block"}},
		{"subs", []string{"patch", "--source", "src_1", "sub_1", "--on-failure", "skip"}},
		{"subs", []string{"lane", "--source", "src_1", "sub_1", "--key", "cus/1 2"}},
		{"subs", []string{"skip-key", "--source", "src_1", "sub_1", "--key", "cus/1 2"}},
	} {
		if err := a.run(c.cmd, c.args...); err != nil {
			t.Fatalf("relay %s %v: %v", c.cmd, c.args, err)
		}
	}
	want := []string{
		`POST /sources {"name":"shop","ordering_key":{"json_path":"data.customer_id"},"verification":{"scheme":"relay"}}`,
		`PATCH /sources/src_1 {"ordering_key":{"header":"X-Customer-Id"}}`,
		`PATCH /sources/src_1 {"ordering_key":{}}`,
		`POST /sources/src_1/subscriptions {"events":["*"],"on_failure":"block","ordered":true,"url":"https://example.com"}`,
		`PATCH /sources/src_1/subscriptions/sub_1 {"on_failure":"skip"}`,
		`GET /sources/src_1/subscriptions/sub_1/lane?ordering_key=cus%2F1+2 `,
		`POST /sources/src_1/subscriptions/sub_1/lane/skip?ordering_key=cus%2F1+2 `,
	}
	if strings.Join(asked, "\n") != strings.Join(want, "\n") {
		t.Fatalf("asked\n%s\nwant\n%s", strings.Join(asked, "\n"), strings.Join(want, "\n"))
	}
	if !strings.Contains(out.String(), "ordered one at a time per ordering key; a key whose head goes to the DLQ: block") {
		t.Fatalf("printed:\n%s", out)
	}
	if err := a.run("sources", "patch", "src_1", "--ordering-key-header", "X-A", "--ordering-key-path", "a"); err == nil {
		t.Error("both ordering key flags: no error")
	}
}
