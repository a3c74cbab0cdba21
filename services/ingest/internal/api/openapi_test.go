package api

import (
	"os"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/trace/noop"
	"gopkg.in/yaml.v3"

	"github.com/relayhq/relay/pkg/logging"
	"github.com/relayhq/relay/pkg/telemetry"
)

type specParam struct {
	Ref  string `yaml:"$ref"`
	Name string `yaml:"name"`
	In   string `yaml:"in"`
}

type openAPISpec struct {
	OpenAPI string `yaml:"openapi"`
	// Paths maps each path to its operations by method, and to the
	// parameters all of them share ("parameters").
	Paths      map[string]map[string]yaml.Node `yaml:"paths"`
	Components struct {
		Parameters map[string]specParam `yaml:"parameters"`
	} `yaml:"components"`
}

func readSpec(t *testing.T) openAPISpec {
	t.Helper()
	raw, err := os.ReadFile("../../../../docs/openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var spec openAPISpec
	if err := yaml.Unmarshal(raw, &spec); err != nil {
		t.Fatalf("docs/openapi.yaml: %v", err)
	}
	if !strings.HasPrefix(spec.OpenAPI, "3.1") {
		t.Fatalf("openapi version %q, want 3.1", spec.OpenAPI)
	}
	return spec
}

// specRoute is a gin route path in the spec's form: /sources/{source_id}.
func specRoute(method, path string) string {
	return method + " " + regexp.MustCompile(`:([a-z_]+)`).ReplaceAllString(path, "{$1}")
}

// TestOpenAPIMatchesRoutes fails when a registered route is missing from
// docs/openapi.yaml, or the spec documents a route that is not registered.
func TestOpenAPIMatchesRoutes(t *testing.T) {
	spec := readSpec(t)
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
	registered := map[string]bool{}
	for _, r := range a.Routes() {
		registered[specRoute(r.Method, r.Path)] = true
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

// TestOpenAPIQueryParameters fails when a route takes a query parameter
// docs/openapi.yaml does not document, or the reverse: the API refuses
// every other (knownQuery).
func TestOpenAPIQueryParameters(t *testing.T) {
	spec := readSpec(t)
	documented := map[string][]string{}
	for path, ops := range spec.Paths {
		var shared []specParam
		if node, ok := ops["parameters"]; ok {
			if err := node.Decode(&shared); err != nil {
				t.Fatalf("%s parameters: %v", path, err)
			}
		}
		for method, node := range ops {
			if method == "parameters" {
				continue
			}
			var op struct {
				Parameters []specParam `yaml:"parameters"`
			}
			if err := node.Decode(&op); err != nil {
				t.Fatalf("%s %s: %v", method, path, err)
			}
			for _, p := range append(op.Parameters, shared...) {
				if name, ok := strings.CutPrefix(p.Ref, "#/components/parameters/"); ok {
					p = spec.Components.Parameters[name]
				}
				if p.In == "query" {
					route := strings.ToUpper(method) + " " + path
					documented[route] = append(documented[route], p.Name)
				}
			}
		}
	}
	taken := map[string][]string{}
	for route, names := range queryParams {
		method, path, _ := strings.Cut(route, " ")
		taken[specRoute(method, path)] = names
	}
	for route := range documented {
		if _, ok := taken[route]; !ok {
			taken[route] = nil
		}
	}
	for route, names := range taken {
		want := slices.Sorted(slices.Values(documented[route]))
		got := slices.Sorted(slices.Values(names))
		if !slices.Equal(got, want) {
			t.Errorf("%s takes query parameters %v; docs/openapi.yaml documents %v", route, got, want)
		}
	}
	if len(documented) < 7 {
		t.Fatalf("only %d routes with query parameters documented", len(documented))
	}
}
