package classify

import (
	"encoding/json"
	"strings"
)

// stringField returns the string value of a top-level member of the JSON
// object in body, matched as encoding/json matches struct fields: the last
// member whose name equals name case-insensitively. It reports false when
// body is not valid JSON, not an object, lacks the member or the member is
// not a string.
//
// It gives the answer of json.Unmarshal into a one-field struct (the fuzz
// test holds it to that) in one validating pass plus one scan of the top
// level, without decoding anything else: this runs on every inbound webhook.
func stringField(body []byte, name string) (string, bool) {
	if !json.Valid(body) {
		return "", false
	}
	return str(member(body, name))
}

// member returns the raw value of the member of the JSON object in body
// that encoding/json would decode into a field called name (the last whose
// name matches case-insensitively). It reports false when body is not an
// object or lacks the member. body must be valid JSON.
func member(body []byte, name string) ([]byte, bool) {
	i := skipSpace(body, 0)
	if i == len(body) || body[i] != '{' {
		return nil, false
	}
	var val []byte
	found := false
	i++
	for {
		i = skipSpace(body, i)
		if body[i] == '}' {
			break
		}
		end := stringEnd(body, i)
		key := body[i:end]
		i = skipSpace(body, end)
		i = skipSpace(body, i+1) // the colon
		vend := valueEnd(body, i)
		if keyMatches(key, name) {
			val, found = body[i:vend], true
		}
		i = skipSpace(body, vend)
		if body[i] == '}' {
			break
		}
		i++ // the comma
	}
	return val, found
}

// str decodes raw, a JSON value found by member, when it is a string.
func str(raw []byte, found bool) (string, bool) {
	if !found || raw[0] != '"' {
		return "", false
	}
	var s string
	if json.Unmarshal(raw, &s) != nil {
		return "", false
	}
	return s, true
}

// keyMatches compares a raw, quoted JSON member name with name the way
// encoding/json does.
func keyMatches(raw []byte, name string) bool {
	inner := raw[1 : len(raw)-1]
	if strings.IndexByte(string(inner), '\\') < 0 {
		return strings.EqualFold(string(inner), name)
	}
	var k string
	return json.Unmarshal(raw, &k) == nil && strings.EqualFold(k, name)
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// stringEnd returns the index just past the string starting at b[i] == '"'.
// b is valid JSON.
func stringEnd(b []byte, i int) int {
	for i++; i < len(b); i++ {
		switch b[i] {
		case '\\':
			i++
		case '"':
			return i + 1
		}
	}
	return len(b)
}

// valueEnd returns the index just past the value starting at b[i]. b is
// valid JSON.
func valueEnd(b []byte, i int) int {
	switch b[i] {
	case '"':
		return stringEnd(b, i)
	case '{', '[':
		depth := 0
		for ; i < len(b); i++ {
			switch b[i] {
			case '"':
				i = stringEnd(b, i) - 1
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return i + 1
				}
			}
		}
		return len(b)
	default: // number, true, false, null
		for i < len(b) && b[i] != ',' && b[i] != '}' && b[i] != ']' && b[i] != ' ' && b[i] != '\t' && b[i] != '\n' && b[i] != '\r' {
			i++
		}
		return i
	}
}
