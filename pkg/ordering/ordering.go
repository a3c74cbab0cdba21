// Package ordering extracts an event's ordering key, as a source's
// ordering_key says where it is: a request header, or a path into the JSON
// body (docs/ordering.md). The events that share a key are delivered one at
// a time, in order, to the subscriptions that ask for it.
package ordering

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
)

// MaxKey is the longest key kept as it is; a longer one is replaced by its
// digest, so that the events that share it still share a key.
const MaxKey = 256

// maxSegments bounds a JSON path.
const maxSegments = 16

// Spec is a source's ordering key: one of Header and JSONPath.
type Spec struct {
	Header   string `json:"header,omitempty"`
	JSONPath string `json:"json_path,omitempty"`
}

// IsZero reports whether the source names no key.
func (s Spec) IsZero() bool { return s == Spec{} }

// Validate reports what is wrong with s, naming the field.
func (s Spec) Validate() error {
	switch {
	case (s.Header == "") == (s.JSONPath == ""):
		return errors.New("ordering_key: needs header or json_path (one of them)")
	case s.JSONPath != "":
		segs := strings.Split(s.JSONPath, ".")
		if len(segs) > maxSegments {
			return fmt.Errorf("ordering_key.json_path: has %d segments; at most %d", len(segs), maxSegments)
		}
		for _, seg := range segs {
			if seg == "" {
				return fmt.Errorf("ordering_key.json_path: %q has an empty segment (write data.customer_id, or items.0.id for an array's first)", s.JSONPath)
			}
		}
	}
	return nil
}

// Key returns the ordering key of an event whose request carried header
// and body; ok is false when it has none (the header is absent or empty,
// the body is not JSON, the path leads nowhere or to null).
func (s Spec) Key(header http.Header, body []byte) (key string, ok bool) {
	if s.Header != "" {
		return normal(header.Get(s.Header))
	}
	if s.JSONPath == "" {
		return "", false
	}
	d := json.NewDecoder(bytes.NewReader(body))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		return "", false
	}
	for _, seg := range strings.Split(s.JSONPath, ".") {
		switch node := v.(type) {
		case map[string]any:
			v = node[seg]
		case []any:
			i, err := strconv.Atoi(seg)
			if err != nil || i < 0 || i >= len(node) {
				return "", false
			}
			v = node[i]
		default:
			return "", false
		}
	}
	switch k := v.(type) {
	case nil:
		return "", false
	case string:
		return normal(k)
	case json.Number:
		return normal(k.String())
	case bool:
		return strconv.FormatBool(k), true
	}
	// An object or an array: its JSON, as one key.
	b, err := json.Marshal(v)
	if err != nil {
		return "", false
	}
	return digest(string(b)), true
}

// normal keeps a short key as it is and digests a long one.
func normal(k string) (string, bool) {
	switch {
	case k == "":
		return "", false
	case len(k) > MaxKey:
		return digest(k), true
	}
	return k, true
}

func digest(s string) string {
	sum := sha256.Sum256([]byte(s))
	return "sha256:" + hex.EncodeToString(sum[:])
}
