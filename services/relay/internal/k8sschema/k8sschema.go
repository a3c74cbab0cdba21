// Package k8sschema turns Kubernetes' OpenAPI v2 document (swagger.json, in
// the k8s.io/kubernetes module) into the standalone JSON schemas kubeconform
// reads, one file per kind: what `make test` validates the Helm chart's
// rendered manifests with, without reaching the schema repositories online.
package k8sschema

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

const refPrefix = "#/definitions/"

// Schema names of the two types whose JSON form is not their declared
// type: a quantity may be written as a number, an int-or-string as either.
const (
	quantity    = "io.k8s.apimachinery.pkg.api.resource.Quantity"
	intOrString = "io.k8s.apimachinery.pkg.util.intstr.IntOrString"
)

// FileName is kubeconform's name for a kind's schema: the kind in lower
// case, the first label of its group, and its version
// (deployment-apps-v1.json, service-v1.json).
func FileName(group, version, kind string) string {
	name := strings.ToLower(kind)
	if group != "" {
		name += "-" + strings.ToLower(strings.Split(group, ".")[0])
	}
	return name + "-" + strings.ToLower(version) + ".json"
}

// Write converts the swagger document at swaggerPath into dir, one
// standalone schema per group, version and kind. strict forbids properties
// a type does not declare (a misspelt field fails validation).
func Write(swaggerPath, dir string, strict bool) (int, error) {
	raw, err := os.ReadFile(swaggerPath)
	if err != nil {
		return 0, err
	}
	schemas, err := Convert(raw, strict)
	if err != nil {
		return 0, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return 0, err
	}
	for name, s := range schemas {
		if err := os.WriteFile(filepath.Join(dir, name), s, 0o644); err != nil {
			return 0, err
		}
	}
	return len(schemas), nil
}

// Convert returns each kind's schema by file name.
func Convert(swagger []byte, strict bool) (map[string][]byte, error) {
	var doc struct {
		Definitions map[string]map[string]any `json:"definitions"`
	}
	if err := json.Unmarshal(swagger, &doc); err != nil {
		return nil, fmt.Errorf("swagger document: %w", err)
	}
	if len(doc.Definitions) == 0 {
		return nil, fmt.Errorf("swagger document: no definitions")
	}
	out := map[string][]byte{}
	for name, def := range doc.Definitions {
		gvks, _ := def["x-kubernetes-group-version-kind"].([]any)
		for _, g := range gvks {
			gvk, _ := g.(map[string]any)
			group, _ := gvk["group"].(string)
			version, _ := gvk["version"].(string)
			kind, _ := gvk["kind"].(string)
			if version == "" || kind == "" {
				continue
			}
			s := expand(doc.Definitions, name, map[string]bool{}, strict)
			b, err := json.Marshal(s)
			if err != nil {
				return nil, err
			}
			out[FileName(group, version, kind)] = b
		}
	}
	return out, nil
}

// expand returns definition name with every $ref replaced by what it
// names. A type that contains itself (apiextensions' JSONSchemaProps) is
// left open where it recurs.
func expand(defs map[string]map[string]any, name string, open map[string]bool, strict bool) any {
	switch name {
	case quantity:
		return map[string]any{"oneOf": []any{map[string]any{"type": "string"}, map[string]any{"type": "number"}}}
	case intOrString:
		return map[string]any{"oneOf": []any{map[string]any{"type": "string"}, map[string]any{"type": "integer"}}}
	}
	def, ok := defs[name]
	if !ok || open[name] {
		return map[string]any{}
	}
	open[name] = true
	defer delete(open, name)
	return walk(defs, def, open, strict)
}

func walk(defs map[string]map[string]any, v any, open map[string]bool, strict bool) any {
	switch t := v.(type) {
	case map[string]any:
		if ref, ok := t["$ref"].(string); ok && strings.HasPrefix(ref, refPrefix) {
			return expand(defs, strings.TrimPrefix(ref, refPrefix), open, strict)
		}
		out := make(map[string]any, len(t))
		for k, val := range t {
			switch k {
			case "description", "x-kubernetes-group-version-kind", "x-kubernetes-patch-merge-key", "x-kubernetes-patch-strategy",
				"x-kubernetes-list-type", "x-kubernetes-list-map-keys", "x-kubernetes-map-type", "x-kubernetes-unions":
				continue // documentation and server-side merge hints: nothing to validate
			case "properties":
				props, _ := val.(map[string]any)
				np := make(map[string]any, len(props))
				for pk, pv := range props {
					np[pk] = walk(defs, pv, open, strict)
				}
				out[k] = np
			default:
				out[k] = walk(defs, val, open, strict)
			}
		}
		if _, has := out["properties"]; has && strict {
			if _, set := out["additionalProperties"]; !set {
				out["additionalProperties"] = false
			}
		}
		return out
	case []any:
		out := make([]any, len(t))
		for i, e := range t {
			out[i] = walk(defs, e, open, strict)
		}
		return out
	}
	return v
}
