// Package filter is a subscription's payload filter: a CEL expression over
// an event that decides whether the event concerns the subscription.
//
// The expression sees
//
//	type         string     the event type
//	source_id    string     the source it came in on
//	received_at  timestamp  when ingest accepted it
//	headers      map(string, string)  the forwarded request headers, by lower-case name
//	data         dyn        the body parsed as JSON (numbers are doubles)
//
// and must give a bool. It is compiled and type-checked once (Compile, or a
// Cache), and each evaluation is bounded by a cost limit and by the
// caller's context. A body that is not JSON matches only an expression that
// does not mention data; an evaluation error (a missing key, say: use has())
// is a non-match, reported so that the caller can count it.
package filter

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"

	"cel.dev/cel-go/cel"
	"cel.dev/cel-go/common/types"
	"cel.dev/cel-go/ext"
	"cel.dev/cel-go/interpreter"

	"github.com/relayhq/relay/pkg/record"
)

// Limits of an expression.
const (
	// MaxLength bounds an expression's text.
	MaxLength = 4096
	// CostLimit bounds one evaluation, in CEL's cost units (about one per
	// operation, more for operations on long strings and lists): far above
	// any filter over a webhook's fields, far below a runaway
	// comprehension over a large body.
	CostLimit = 100_000
)

var (
	envOnce          sync.Once
	withData, noData *cel.Env
	envErr           error
)

func envs() (*cel.Env, *cel.Env, error) {
	envOnce.Do(func() {
		base := []cel.EnvOption{
			cel.Variable("type", cel.StringType),
			cel.Variable("source_id", cel.StringType),
			cel.Variable("received_at", cel.TimestampType),
			cel.Variable("headers", cel.MapType(cel.StringType, cel.StringType)),
			cel.CrossTypeNumericComparisons(true),
			ext.Strings(),
		}
		if noData, envErr = cel.NewEnv(base...); envErr != nil {
			return
		}
		withData, envErr = noData.Extend(cel.Variable("data", cel.DynType))
	})
	return withData, noData, envErr
}

// Filter is a compiled expression, safe for concurrent use.
type Filter struct {
	expr     string
	prg      cel.Program
	usesData bool
}

// Error is an expression that does not compile: where, and why.
type Error struct {
	// Line and Column are 1-based; 0 when the error has no position.
	Line, Column int
	Message      string
}

func (e *Error) Error() string {
	if e.Line == 0 {
		return e.Message
	}
	return fmt.Sprintf("line %d, column %d: %s", e.Line, e.Column, e.Message)
}

// Compile parses and type-checks expr. An error is an *Error.
func Compile(expr string) (*Filter, error) {
	if strings.TrimSpace(expr) == "" {
		return nil, &Error{Message: "is empty"}
	}
	if len(expr) > MaxLength {
		return nil, &Error{Message: fmt.Sprintf("is %d bytes long; at most %d", len(expr), MaxLength)}
	}
	env, bare, err := envs()
	if err != nil {
		return nil, fmt.Errorf("filter environment: %w", err)
	}
	ast, iss := env.Compile(expr)
	if err := iss.Err(); err != nil {
		return nil, firstError(iss, err)
	}
	if t := ast.OutputType(); !t.IsExactType(types.BoolType) && !t.IsExactType(types.DynType) {
		return nil, &Error{Message: fmt.Sprintf("gives %s; a filter must give a bool", t)}
	}
	prg, err := env.Program(ast,
		cel.CostLimit(CostLimit),
		cel.InterruptCheckFrequency(64),
		cel.EvalOptions(cel.OptOptimize),
	)
	if err != nil {
		return nil, &Error{Message: err.Error()}
	}
	// Whether it mentions data: it does when it does not compile without.
	_, iss = bare.Compile(expr)
	return &Filter{expr: expr, prg: prg, usesData: iss.Err() != nil}, nil
}

func firstError(iss *cel.Issues, err error) error {
	errs := iss.Errors()
	if len(errs) == 0 {
		return &Error{Message: err.Error()}
	}
	e := errs[0]
	out := &Error{Message: e.Message}
	if loc := e.Location; loc != nil && loc.Line() > 0 {
		out.Line, out.Column = loc.Line(), loc.Column()+1
	}
	return out
}

// String is the expression.
func (f *Filter) String() string { return f.expr }

// UsesData reports whether the expression mentions the body.
func (f *Filter) UsesData() bool { return f.usesData }

// Input is one event as filters see it, prepared once for every filter that
// evaluates it; its body is parsed the first time a filter needs it. It is
// not safe for concurrent use.
type Input struct {
	ev     record.Event
	vars   map[string]any
	act    interpreter.Activation
	parsed bool
	isJSON bool
}

// NewInput prepares ev for evaluation.
func NewInput(ev record.Event) *Input {
	headers := make(map[string]string, len(ev.Forwarded))
	for _, h := range ev.Forwarded {
		headers[strings.ToLower(h.Name)] = h.Value
	}
	in := &Input{ev: ev, vars: map[string]any{
		"type": ev.Type, "source_id": ev.SourceID, "received_at": ev.ReceivedAt, "headers": headers,
	}}
	return in
}

func (in *Input) activation(needData bool) (interpreter.Activation, error) {
	if needData && !in.parsed {
		in.parsed = true
		var data any
		if err := json.Unmarshal(in.ev.Body, &data); err == nil {
			in.isJSON = true
			in.vars["data"] = data
		}
		in.act = nil
	}
	if in.act == nil {
		act, err := interpreter.NewActivation(in.vars)
		if err != nil {
			return nil, err
		}
		in.act = act
	}
	return in.act, nil
}

// ErrNotBool is an expression of type dyn that gave something else.
var ErrNotBool = errors.New("the filter did not give a bool")

// Match evaluates f over in. A body that is not JSON matches no expression
// that mentions data (false, nil). An error (a missing key, the cost limit,
// ctx's end) is a non-match the caller should count.
func (f *Filter) Match(ctx context.Context, in *Input) (bool, error) {
	act, err := in.activation(f.usesData)
	if err != nil {
		return false, err
	}
	if f.usesData && !in.isJSON {
		return false, nil
	}
	out, _, err := f.prg.ContextEval(ctx, act)
	if err != nil {
		return false, err
	}
	b, ok := out.Value().(bool)
	if !ok {
		return false, ErrNotBool
	}
	return b, nil
}

// Cache keeps the compiled form of the expressions it has seen, so that a
// subscription's filter is compiled once, not per event. It is safe for
// concurrent use and bounded: past maxCached expressions it starts over.
type Cache struct {
	mu sync.Mutex
	m  map[string]compiled
}

type compiled struct {
	f   *Filter
	err error
}

const maxCached = 10_000

// Get returns expr compiled, compiling it the first time.
func (c *Cache) Get(expr string) (*Filter, error) {
	c.mu.Lock()
	got, ok := c.m[expr]
	c.mu.Unlock()
	if ok {
		return got.f, got.err
	}
	f, err := Compile(expr)
	c.mu.Lock()
	if c.m == nil || len(c.m) >= maxCached {
		c.m = map[string]compiled{}
	}
	c.m[expr] = compiled{f, err}
	c.mu.Unlock()
	return f, err
}
