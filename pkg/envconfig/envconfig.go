// Package envconfig reads typed configuration values from environment
// variables. Every service builds its Config through a Reader so that a bad
// value is reported with the name of the variable that carried it.
package envconfig

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// LookupFunc returns the value of a variable and whether it is set, like
// os.LookupEnv. Tests and `relay dev` pass their own.
type LookupFunc func(name string) (string, bool)

// Reader reads variables through a LookupFunc and collects every parse error,
// so that one start-up attempt reports all bad variables at once.
type Reader struct {
	lookup LookupFunc
	errs   []error
}

// New returns a Reader over lookup.
func New(lookup LookupFunc) *Reader { return &Reader{lookup: lookup} }

// FromOS returns a Reader over the process environment.
func FromOS() *Reader { return New(os.LookupEnv) }

// FromMap returns a Reader over a fixed map; variables absent from m are unset.
func FromMap(m map[string]string) *Reader {
	return New(func(k string) (string, bool) { v, ok := m[k]; return v, ok })
}

// Lookup exposes the underlying lookup, for values a caller parses itself.
func (r *Reader) Lookup(name string) (string, bool) {
	v, ok := r.lookup(name)
	if !ok {
		return "", false
	}
	v = strings.TrimSpace(v)
	return v, v != ""
}

// Fail records an error about a variable, for validation done by callers.
func (r *Reader) Fail(name, format string, args ...any) {
	r.errs = append(r.errs, fmt.Errorf("%s: %s", name, fmt.Sprintf(format, args...)))
}

// Err returns every error collected so far, joined, or nil.
func (r *Reader) Err() error { return errors.Join(r.errs...) }

// String returns the variable's value, or def when unset or empty.
func (r *Reader) String(name, def string) string {
	if v, ok := r.Lookup(name); ok {
		return v
	}
	return def
}

// Int returns the variable parsed as an integer, or def.
func (r *Reader) Int(name string, def int) int {
	v, ok := r.Lookup(name)
	if !ok {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		r.Fail(name, "%q is not an integer", v)
		return def
	}
	return n
}

// Int64 returns the variable parsed as a 64-bit integer, or def.
func (r *Reader) Int64(name string, def int64) int64 {
	v, ok := r.Lookup(name)
	if !ok {
		return def
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		r.Fail(name, "%q is not an integer", v)
		return def
	}
	return n
}

// Bool returns the variable parsed with strconv.ParseBool, or def.
func (r *Reader) Bool(name string, def bool) bool {
	v, ok := r.Lookup(name)
	if !ok {
		return def
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		r.Fail(name, "%q is not a boolean (use true or false)", v)
		return def
	}
	return b
}

// Duration returns the variable parsed with time.ParseDuration, or def.
func (r *Reader) Duration(name string, def time.Duration) time.Duration {
	v, ok := r.Lookup(name)
	if !ok {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		r.Fail(name, "%q is not a duration (examples: 500ms, 30s, 2m, 1h)", v)
		return def
	}
	return d
}

// List returns the comma-separated values of the variable, trimmed and
// without empty items, or def.
func (r *Reader) List(name string, def []string) []string {
	v, ok := r.Lookup(name)
	if !ok {
		return def
	}
	var out []string
	for _, item := range strings.Split(v, ",") {
		if item = strings.TrimSpace(item); item != "" {
			out = append(out, item)
		}
	}
	if len(out) == 0 {
		return def
	}
	return out
}

// Durations returns a comma-separated list of durations, or def.
func (r *Reader) Durations(name string, def []time.Duration) []time.Duration {
	items := r.List(name, nil)
	if items == nil {
		return def
	}
	out := make([]time.Duration, 0, len(items))
	for _, item := range items {
		d, err := time.ParseDuration(item)
		if err != nil {
			r.Fail(name, "%q is not a duration (examples: 5s, 30s, 2m)", item)
			return def
		}
		out = append(out, d)
	}
	return out
}
