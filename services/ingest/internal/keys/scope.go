// Package keys is who may call ingest's management routes: scoped API keys
// (admin, write, read, each optionally restricted to some sources), kept in
// Redis as hashes of their tokens, and Decide, the pure rule of which key
// may call which route.
package keys

import (
	"context"
	"fmt"
	"slices"
	"strings"
)

// Scope is what a key may do.
type Scope string

// The scopes, widest first.
const (
	// Admin may call every route, the keys' own included.
	Admin Scope = "admin"
	// Write may call every route but the keys' and POST /secrets/rewrap.
	Write Scope = "write"
	// Read may only read (GET).
	Read Scope = "read"
)

// Scopes are the valid scopes, widest first.
var Scopes = []Scope{Admin, Write, Read}

// ParseScope reads a scope by its name.
func ParseScope(s string) (Scope, bool) {
	if slices.Contains(Scopes, Scope(s)) {
		return Scope(s), true
	}
	return "", false
}

// Principal is who a request acts as: a key, or the bootstrap
// RELAY_ADMIN_TOKEN (an unrestricted admin with no KeyID).
type Principal struct {
	KeyID string
	Scope Scope
	// Sources restricts the key to these sources; empty for every source.
	Sources []string
}

// Restricted reports whether the principal sees only some sources.
func (p Principal) Restricted() bool { return len(p.Sources) > 0 }

// Sees reports whether the principal may act on source id.
func (p Principal) Sees(id string) bool { return !p.Restricted() || slices.Contains(p.Sources, id) }

// CanWrite reports whether the principal may call routes that change
// something (a console shows it write controls).
func (p Principal) CanWrite() bool { return p.Scope == Admin || p.Scope == Write }

// Request is what Decide needs of a management request.
type Request struct {
	Method string
	// Route is the route's pattern, as gin names it: /sources/:source_id.
	Route string
	// SourceID is the source the request names: in its path, or else in
	// its source_id query parameter ("" for none).
	SourceID string
}

// Verdict is Decide's answer: zero when the request may go on, else the
// error code and message of its 403.
type Verdict struct {
	Code, Message string
}

// Allowed reports whether the request may go on.
func (v Verdict) Allowed() bool { return v.Code == "" }

// Error codes of a refusal.
const (
	CodeScope  = "insufficient_scope"
	CodeSource = "source_not_allowed"
)

// adminOnly are the routes only an admin key restricted to no source may
// call: a key that could make keys could make itself a wider one.
func adminOnly(route string) bool {
	return route == "/keys" || strings.HasPrefix(route, "/keys/") || route == "/secrets/rewrap"
}

// unsourced are the routes a key restricted to sources may call without
// naming one: listing sources (it sees only its own) and the system's
// status, which names no source.
var unsourced = map[string]bool{"GET /sources": true, "GET /status": true}

// sourcedByQuery are the routes that name their source in the source_id
// query parameter; a restricted key must name one of its own.
var sourcedByQuery = map[string]bool{"/dlq": true, "/replay/dlq": true}

// Decide says whether principal p may make request r.
func Decide(p Principal, r Request) Verdict {
	read := r.Method == "GET" || r.Method == "HEAD"
	switch {
	case adminOnly(r.Route) && (p.Scope != Admin || p.Restricted()):
		return Verdict{CodeScope, fmt.Sprintf("%s %s needs an admin key restricted to no source; this key is %s", r.Method, r.Route, p.describe())}
	case p.Scope == Read && !read:
		return Verdict{CodeScope, fmt.Sprintf("%s %s changes something; this key is read-only", r.Method, r.Route)}
	case p.Scope != Admin && p.Scope != Write && p.Scope != Read:
		return Verdict{CodeScope, "this key has no valid scope"}
	case !p.Restricted():
		return Verdict{}
	case unsourced[r.Method+" "+r.Route]:
		return Verdict{}
	case r.SourceID == "" && sourcedByQuery[r.Route]:
		return Verdict{CodeSource, fmt.Sprintf("this key is restricted to sources %s: name one with ?source_id=", strings.Join(p.Sources, ", "))}
	case r.SourceID == "" || !strings.Contains(r.Route, ":source_id") && !sourcedByQuery[r.Route]:
		return Verdict{CodeSource, fmt.Sprintf("%s %s is not limited to one source; this key is restricted to sources %s", r.Method, r.Route, strings.Join(p.Sources, ", "))}
	case !p.Sees(r.SourceID):
		return Verdict{CodeSource, fmt.Sprintf("this key is restricted to sources %s; %s is not among them", strings.Join(p.Sources, ", "), r.SourceID)}
	}
	return Verdict{}
}

func (p Principal) describe() string {
	if p.Restricted() {
		return string(p.Scope) + ", restricted to sources"
	}
	return string(p.Scope)
}

type principalKey struct{}

// WithPrincipal returns ctx acting as p: the console's calls into the API
// carry their session's principal so, and a context cannot come from the
// network.
func WithPrincipal(ctx context.Context, p Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// FromContext returns the principal ctx acts as.
func FromContext(ctx context.Context) (Principal, bool) {
	p, ok := ctx.Value(principalKey{}).(Principal)
	return p, ok
}
