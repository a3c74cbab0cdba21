package api

import (
	"os"
	"regexp"
	"sort"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/trace/noop"
	"gopkg.in/yaml.v3"

	"github.com/relayhq/relay/pkg/logging"
	"github.com/relayhq/relay/pkg/telemetry"
)

// TestOpenAPIMatchesRoutes fails when a registered route is missing from
// docs/openapi.yaml, or the spec documents a route that is not registered.
func TestOpenAPIMatchesRoutes(t *testing.T) {
	raw, err := os.ReadFile("../../../../docs/openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var spec struct {
		OpenAPI string                    `yaml:"openapi"`
		Paths   map[string]map[string]any `yaml:"paths"`
	}
	if err := yaml.Unmarshal(raw, &spec); err != nil {
		t.Fatalf("docs/openapi.yaml: %v", err)
	}
	if !strings.HasPrefix(spec.OpenAPI, "3.1") {
		t.Fatalf("openapi version %q, want 3.1", spec.OpenAPI)
	}
	documented := map[string]bool{}
	for path, ops := range spec.Paths {
		for method := range ops {
			if method == "parameters" {
				continue
			}
			documented[strings.ToUpper(method)+" "+path] = true
		}
	}
	a := New(Config{}, Deps{
		Telemetry: &telemetry.Telemetry{TracerProvider: noop.NewTracerProvider(), Registry: telemetry.NewRegistry()},
		Logger:    logging.Discard(),
	})
	param := regexp.MustCompile(`:([a-z_]+)`)
	registered := map[string]bool{}
	for _, r := range a.Routes() {
		registered[r.Method+" "+param.ReplaceAllString(r.Path, "{$1}")] = true
	}
	var problems []string
	for r := range registered {
		if !documented[r] {
			problems = append(problems, "registered but not in docs/openapi.yaml: "+r)
		}
	}
	for r := range documented {
		if !registered[r] {
			problems = append(problems, "in docs/openapi.yaml but not registered: "+r)
		}
	}
	sort.Strings(problems)
	for _, p := range problems {
		t.Error(p)
	}
	if len(registered) < 20 {
		t.Fatalf("only %d routes registered", len(registered))
	}
}
