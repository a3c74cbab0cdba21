package manage

import (
	"encoding/json"
	"errors"
	"testing"
)

// A wrong events value is a type error that names the field and the kind of
// value given, as encoding/json's own are.
func TestPatternsTypeErrorNamesFieldAndValue(t *testing.T) {
	for body, kind := range map[string]string{
		`{"events":5}`:       "number",
		`{"events":[1]}`:     "array",
		`{"events":{}}`:      "object",
		`{"events":true}`:    "bool",
		`{"events":["a",2]}`: "array",
	} {
		var dst struct {
			Events patterns `json:"events"`
		}
		err := json.Unmarshal([]byte(body), &dst)
		var typ *json.UnmarshalTypeError
		if !errors.As(err, &typ) {
			t.Fatalf("%s: error %v, want a type error", body, err)
		}
		if typ.Field != "events" || typ.Value != kind {
			t.Errorf("%s: field %q value %q, want events and %s", body, typ.Field, typ.Value, kind)
		}
	}
	var ok struct {
		Events patterns `json:"events"`
	}
	if err := json.Unmarshal([]byte(`{"events":"payment.*"}`), &ok); err != nil || len(ok.Events) != 1 || ok.Events[0] != "payment.*" {
		t.Fatalf("one glob: %v %v", ok.Events, err)
	}
	if err := json.Unmarshal([]byte(`{"events":["a.*","b"]}`), &ok); err != nil || len(ok.Events) != 2 {
		t.Fatalf("a list: %v %v", ok.Events, err)
	}
}

// A null events is absent: the default "*" on create, unchanged on PATCH;
// not a list of one empty pattern.
func TestNullPatternsAreAbsent(t *testing.T) {
	dst := struct {
		Events patterns `json:"events"`
	}{Events: patterns{"kept"}}
	if err := json.Unmarshal([]byte(`{"events":null}`), &dst); err != nil {
		t.Fatal(err)
	}
	if len(dst.Events) != 1 || dst.Events[0] != "kept" {
		t.Fatalf("null changed events to %q", dst.Events)
	}
}
