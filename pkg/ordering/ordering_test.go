package ordering

import (
	"net/http"
	"strings"
	"testing"
)

func TestKey(t *testing.T) {
	long := strings.Repeat("k", MaxKey+1)
	body := `{"type":"invoice.paid","data":{"customer_id":"cus_1","n":42,"big":12345678901234567890,"flag":true,"none":null,
		"items":[{"id":"a"},{"id":"b"}],"obj":{"b":1,"a":2},"long":"` + long + `"}}`
	for _, c := range []struct {
		name string
		spec Spec
		hdr  http.Header
		body string
		key  string
		ok   bool
	}{
		{"header", Spec{Header: "X-Customer-Id"}, http.Header{"X-Customer-Id": {"cus_9"}}, body, "cus_9", true},
		{"header absent", Spec{Header: "X-Customer-Id"}, http.Header{}, body, "", false},
		{"header too long: its digest", Spec{Header: "X-Customer-Id"}, http.Header{"X-Customer-Id": {long}}, body, digest(long), true},
		{"string", Spec{JSONPath: "data.customer_id"}, nil, body, "cus_1", true},
		{"number, as written", Spec{JSONPath: "data.n"}, nil, body, "42", true},
		{"a number past float64's precision, as written", Spec{JSONPath: "data.big"}, nil, body, "12345678901234567890", true},
		{"bool", Spec{JSONPath: "data.flag"}, nil, body, "true", true},
		{"null: none", Spec{JSONPath: "data.none"}, nil, body, "", false},
		{"missing: none", Spec{JSONPath: "data.account"}, nil, body, "", false},
		{"through an array", Spec{JSONPath: "data.items.1.id"}, nil, body, "b", true},
		{"past an array's end: none", Spec{JSONPath: "data.items.2.id"}, nil, body, "", false},
		{"into a string: none", Spec{JSONPath: "data.customer_id.x"}, nil, body, "", false},
		{"an object: its JSON's digest", Spec{JSONPath: "data.obj"}, nil, body, digest(`{"a":2,"b":1}`), true},
		{"a long string: its digest", Spec{JSONPath: "data.long"}, nil, body, digest(long), true},
		{"not JSON: none", Spec{JSONPath: "data.customer_id"}, nil, "payload=1", "", false},
		{"no spec", Spec{}, http.Header{"X-Customer-Id": {"cus_9"}}, body, "", false},
	} {
		key, ok := c.spec.Key(c.hdr, []byte(c.body))
		if key != c.key || ok != c.ok {
			t.Errorf("%s: %q %v, want %q %v", c.name, key, ok, c.key, c.ok)
		}
	}
}

func TestValidate(t *testing.T) {
	for _, c := range []struct {
		spec Spec
		want string
	}{
		{Spec{Header: "X-Customer-Id"}, ""},
		{Spec{JSONPath: "data.customer_id"}, ""},
		{Spec{}, "needs header or json_path"},
		{Spec{Header: "X", JSONPath: "a"}, "needs header or json_path"},
		{Spec{JSONPath: "data..id"}, "empty segment"},
		{Spec{JSONPath: strings.Repeat("a.", 16) + "a"}, "at most 16"},
	} {
		err := c.spec.Validate()
		if (c.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), c.want)) {
			t.Errorf("%+v: %v, want %q", c.spec, err, c.want)
		}
	}
}
