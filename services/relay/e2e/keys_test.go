package e2e

import (
	"encoding/json"
	"os"
	"sort"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/relayhq/relay/pkg/ids"
)

type apiKey struct {
	ID         string     `json:"id"`
	Scope      string     `json:"scope"`
	Sources    []string   `json:"sources"`
	LastUsedAt *time.Time `json:"last_used_at"`
	Key        string     `json:"key"`
}

func (e *env) createKey(name, scope string, sources ...string) apiKey {
	e.t.Helper()
	var k apiKey
	body := map[string]any{"name": name, "scope": scope}
	if len(sources) > 0 {
		body["sources"] = sources
	}
	if code := e.call("POST", "/keys", body, &k); code != 201 || k.Key == "" {
		e.t.Fatalf("create %s key: %d %+v", scope, code, k)
	}
	return k
}

// specOperations are the management operations docs/openapi.yaml
// documents: "METHOD /path/{param}".
func specOperations(t *testing.T) []string {
	t.Helper()
	raw, err := os.ReadFile("../../../docs/openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var spec struct {
		Paths map[string]map[string]yaml.Node `yaml:"paths"`
	}
	if err := yaml.Unmarshal(raw, &spec); err != nil {
		t.Fatal(err)
	}
	var ops []string
	for path, methods := range spec.Paths {
		for method, node := range methods {
			var op struct {
				Security *[]map[string][]string `yaml:"security"`
			}
			if method == "parameters" {
				continue
			}
			if err := node.Decode(&op); err != nil {
				t.Fatalf("%s %s: %v", method, path, err)
			}
			if path == "/in/{source_id}" || op.Security != nil && len(*op.Security) == 0 {
				continue // the webhook route and the open ones (health, metrics)
			}
			ops = append(ops, strings.ToUpper(method)+" "+path)
		}
	}
	sort.Strings(ops)
	return ops
}

// TestEveryRouteChecksItsKey walks every management route of
// docs/openapi.yaml with an admin, a write, a read and a source-restricted
// key, and asserts each answer: a 403 with a JSON error saying what the key
// lacks where the key does not reach, and anything but 401 or 403 where it
// does.
func TestEveryRouteChecksItsKey(t *testing.T) {
	e := startServices(t, services{}, nil)
	mine := e.createSource("relay")
	other := e.createSource("relay")
	sub := e.subscribe(mine.ID, "https://example.com/hook", []string{"*"})
	code, sent := e.send(mine, "relay", []byte(`{"type":"order.paid"}`), nil)
	if code != 202 {
		t.Fatalf("send: %d", code)
	}
	keys := map[string]apiKey{
		"admin":      e.createKey("walk admin", "admin"),
		"write":      e.createKey("walk write", "write"),
		"read":       e.createKey("walk read", "read"),
		"restricted": e.createKey("walk restricted", "write", mine.ID),
	}
	// Routes that remove something are walked with ids of nothing, so that
	// a key that may call them finds a 404 rather than deleting what the
	// walk goes on to use.
	ghostSource, ghostSub, ghostKey := ids.New(ids.Source), ids.New(ids.Subscription), ids.New("key")
	ops := specOperations(t)
	if len(ops) < 25 {
		t.Fatalf("only %d management operations in docs/openapi.yaml", len(ops))
	}
	for _, op := range ops {
		method, path, _ := strings.Cut(op, " ")
		for _, source := range []string{mine.ID, other.ID} {
			if !strings.Contains(path, "{source_id}") && path != "/dlq" && path != "/replay/dlq" && source != mine.ID {
				continue // one walk for the routes of no source
			}
			src, subID, keyID := source, sub.ID, ghostKey
			if method == "DELETE" {
				subID = ghostSub
				if !strings.Contains(path, "{sub_id}") {
					src = ghostSource
				}
			}
			url := strings.NewReplacer("{source_id}", src, "{sub_id}", subID, "{event_id}", sent.EventID, "{key_id}", keyID).Replace(path)
			if path == "/dlq" || path == "/replay/dlq" {
				url += "?source_id=" + src
			}
			if strings.HasSuffix(path, "/lane") || strings.HasSuffix(path, "/lane/skip") {
				url += "?ordering_key=k"
			}
			var body any
			if method == "POST" || method == "PATCH" {
				body = map[string]any{}
			}
			for name, k := range keys {
				want := forbidden(name, method, path, src == mine.ID)
				var answer struct {
					Error struct {
						Code    string `json:"code"`
						Message string `json:"message"`
					} `json:"error"`
				}
				got := e.callAs(k.Key, method, url, body, &answer)
				switch {
				case want != "" && (got != 403 || answer.Error.Code != want || answer.Error.Message == ""):
					t.Errorf("%s %s with the %s key: %d %+v, want 403 %s", method, url, name, got, answer.Error, want)
				case want == "" && (got == 401 || got == 403):
					t.Errorf("%s %s with the %s key: %d %+v, want it let through", method, url, name, got, answer.Error)
				}
			}
		}
	}
}

// forbidden is the code of the 403 a key of the walk gets, "" for none: the
// rule of docs/openapi.yaml, written out again apart from the server's.
func forbidden(key, method, path string, itsSource bool) string {
	adminOnly := strings.HasPrefix(path, "/keys") || path == "/secrets/rewrap"
	switch {
	case adminOnly && key != "admin":
		return "insufficient_scope"
	case key == "read" && method != "GET":
		return "insufficient_scope"
	case key != "restricted":
		return ""
	case method == "GET" && (path == "/sources" || path == "/status"):
		return ""
	case strings.Contains(path, "{source_id}") || path == "/dlq" || path == "/replay/dlq":
		if itsSource {
			return ""
		}
		return "source_not_allowed"
	}
	return "source_not_allowed" // POST /sources: a new source is nobody's yet
}

// TestKeysAreHashedRecordedAndRevoked: a key's token is shown only at its
// creation, its use is recorded, a restricted key lists only its sources,
// and a revoked key is refused at once.
func TestKeysAreHashedRecordedAndRevoked(t *testing.T) {
	e := startServices(t, services{}, nil)
	mine := e.createSource("relay")
	e.createSource("relay")
	k := e.createKey("ops laptop", "read", mine.ID)
	if !strings.HasPrefix(k.Key, k.ID+".") || len(k.Key) < len(k.ID)+40 {
		t.Fatalf("token %q of key %s", k.Key, k.ID)
	}
	var listed struct {
		Data []struct {
			ID string `json:"id"`
		} `json:"data"`
	}
	if code := e.callAs(k.Key, "GET", "/sources", nil, &listed); code != 200 || len(listed.Data) != 1 || listed.Data[0].ID != mine.ID {
		t.Fatalf("the restricted key listed %d %+v, want only %s", code, listed.Data, mine.ID)
	}
	var got apiKey
	if code := e.call("GET", "/keys/"+k.ID, nil, &got); code != 200 || got.Key != "" || got.LastUsedAt == nil || got.Scope != "read" ||
		len(got.Sources) != 1 || got.Sources[0] != mine.ID {
		t.Fatalf("GET /keys/%s: %d %+v", k.ID, code, got)
	}
	var all map[string]any
	e.call("GET", "/keys", nil, &all)
	if raw, _ := json.Marshal(all); !strings.Contains(string(raw), k.ID) || strings.Contains(string(raw), k.Key[len(k.ID)+1:]) {
		t.Fatalf("GET /keys: %s", raw)
	}
	if code := e.call("DELETE", "/keys/"+k.ID, nil, nil); code != 204 {
		t.Fatalf("revoke: %d", code)
	}
	if code := e.callAs(k.Key, "GET", "/sources", nil, nil); code != 401 {
		t.Fatalf("a revoked key: %d, want 401", code)
	}
	if code := e.callAs(k.ID+".wrongsecretwrongsecretwrongsecretwrongsecre", "GET", "/sources", nil, nil); code != 401 {
		t.Fatalf("a wrong secret: %d, want 401", code)
	}
	for _, bad := range []map[string]any{
		{"name": "x", "scope": "owner"},
		{"scope": "read"},
		{"name": "x", "scope": "read", "sources": []string{ids.New(ids.Source)}},
	} {
		if code := e.call("POST", "/keys", bad, nil); code != 400 {
			t.Errorf("POST /keys %v: %d, want 400", bad, code)
		}
	}
}
