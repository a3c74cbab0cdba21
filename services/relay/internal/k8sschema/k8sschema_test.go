package k8sschema

import (
	"encoding/json"
	"testing"
)

func TestFileName(t *testing.T) {
	for _, tt := range []struct{ group, version, kind, want string }{
		{"apps", "v1", "Deployment", "deployment-apps-v1.json"},
		{"", "v1", "Service", "service-v1.json"},
		{"networking.k8s.io", "v1", "Ingress", "ingress-networking-v1.json"},
		{"autoscaling", "v2", "HorizontalPodAutoscaler", "horizontalpodautoscaler-autoscaling-v2.json"},
		{"policy", "v1", "PodDisruptionBudget", "poddisruptionbudget-policy-v1.json"},
	} {
		if got := FileName(tt.group, tt.version, tt.kind); got != tt.want {
			t.Errorf("FileName(%q, %q, %q) = %q, want %q", tt.group, tt.version, tt.kind, got, tt.want)
		}
	}
}

// A kind's schema has its references inlined, a quantity and an
// int-or-string accept both their forms, strict closes every object with
// declared properties, and a type that contains itself ends open.
func TestConvert(t *testing.T) {
	swagger := `{"definitions": {
	  "io.k8s.api.demo.v1.Widget": {
	    "type": "object",
	    "x-kubernetes-group-version-kind": [{"group": "demo.k8s.io", "version": "v1", "kind": "Widget"}],
	    "properties": {
	      "size": {"$ref": "#/definitions/io.k8s.apimachinery.pkg.api.resource.Quantity"},
	      "port": {"$ref": "#/definitions/io.k8s.apimachinery.pkg.util.intstr.IntOrString"},
	      "spec": {"$ref": "#/definitions/io.k8s.api.demo.v1.Spec"},
	      "tree": {"$ref": "#/definitions/io.k8s.api.demo.v1.Node"}
	    }
	  },
	  "io.k8s.api.demo.v1.Spec": {"type": "object", "description": "dropped", "properties": {"replicas": {"type": "integer"}}},
	  "io.k8s.api.demo.v1.Node": {"type": "object", "properties": {"child": {"$ref": "#/definitions/io.k8s.api.demo.v1.Node"}}},
	  "io.k8s.apimachinery.pkg.api.resource.Quantity": {"type": "string"},
	  "io.k8s.apimachinery.pkg.util.intstr.IntOrString": {"type": "string", "format": "int-or-string"}
	}}`
	out, err := Convert([]byte(swagger), true)
	if err != nil {
		t.Fatal(err)
	}
	if len(out) != 1 {
		t.Fatalf("%d schemas, want the one kind's: %v", len(out), out)
	}
	var got map[string]any
	if err := json.Unmarshal(out["widget-demo-v1.json"], &got); err != nil {
		t.Fatal(err)
	}
	want := `{"additionalProperties":false,"properties":{` +
		`"port":{"oneOf":[{"type":"string"},{"type":"integer"}]},` +
		`"size":{"oneOf":[{"type":"string"},{"type":"number"}]},` +
		`"spec":{"additionalProperties":false,"properties":{"replicas":{"type":"integer"}},"type":"object"},` +
		`"tree":{"additionalProperties":false,"properties":{"child":{}},"type":"object"}},"type":"object"}`
	if b, _ := json.Marshal(got); string(b) != want {
		t.Fatalf("schema\n got %s\nwant %s", b, want)
	}
	if _, err := Convert([]byte(`{"definitions": {}}`), true); err == nil {
		t.Fatal("a document without definitions converted")
	}
}
