package filter

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/relayhq/relay/pkg/record"
)

var order = record.Event{
	ID: "evt_1", SourceID: "src_1", Type: "order.created", ReceivedAt: time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC),
	Forwarded: []record.ForwardedHeader{{Name: "X-Shop-Region", Value: "eu"}},
	Body:      []byte(`{"id":"o_1","total":1250,"currency":"EUR","customer":{"tier":"gold"},"items":[{"sku":"a"},{"sku":"b"}]}`),
}

func TestMatch(t *testing.T) {
	text := order
	text.Body = []byte("payload=not-json")
	for _, tc := range []struct {
		name, expr string
		ev         record.Event
		want       bool
		wantErr    bool
	}{
		{"type", `type == "order.created"`, order, true, false},
		{"type prefix", `type.startsWith("payment.")`, order, false, false},
		{"number against int", `data.total > 1000`, order, true, false},
		{"number equality", `data.total == 1250`, order, true, false},
		{"nested", `data.customer.tier == "gold" && data.currency in ["EUR", "GBP"]`, order, true, false},
		{"has on a missing key", `has(data.refund) && data.refund`, order, false, false},
		{"missing key is an error", `data.refund.amount > 0`, order, false, true},
		{"list macro", `data.items.exists(i, i.sku == "b")`, order, true, false},
		{"size", `size(data.items) == 2`, order, true, false},
		{"header", `headers["x-shop-region"] == "eu"`, order, true, false},
		{"absent header", `"x-other" in headers`, order, false, false},
		{"source", `source_id == "src_1"`, order, true, false},
		{"time", `received_at > timestamp("2026-01-01T00:00:00Z")`, order, true, false},
		{"ext strings", `type.lowerAscii().split(".")[0] == "order"`, order, true, false},
		{"not JSON, mentions data", `data.total > 1`, text, false, false},
		{"not JSON, mentions data only to negate", `!has(data.total)`, text, false, false},
		{"not JSON, type only", `type == "order.created"`, text, true, false},
		{"dyn that is not a bool", `data.currency`, order, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, err := Compile(tc.expr)
			if err != nil {
				t.Fatalf("Compile: %v", err)
			}
			got, err := f.Match(context.Background(), NewInput(tc.ev))
			if (err != nil) != tc.wantErr {
				t.Fatalf("Match error = %v, want error %v", err, tc.wantErr)
			}
			if got != tc.want {
				t.Fatalf("Match = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestCompileErrorsNameThePosition(t *testing.T) {
	for _, tc := range []struct {
		expr, want string
	}{
		{`type == `, "line 1, column 9: "},
		{`type == "a" &&` + "\n" + `  nope == 1`, "line 2, column 3: undeclared reference to 'nope'"},
		{`type + 1 == 2`, "line 1, column 6: found no matching overload for '_+_'"},
		{`size(type)`, "gives int; a filter must give a bool"},
		{`   `, "is empty"},
		{strings.Repeat("a", MaxLength+1), "at most 4096"},
	} {
		_, err := Compile(tc.expr)
		var fe *Error
		if !errors.As(err, &fe) {
			t.Fatalf("Compile(%q) = %v, want a *filter.Error", tc.expr, err)
		}
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Compile(%q) = %q, want it to contain %q", tc.expr, err, tc.want)
		}
	}
}

func TestUsesData(t *testing.T) {
	for expr, want := range map[string]bool{
		`type == "a"`:                   false,
		`data.x == 1`:                   true,
		`has(data.x)`:                   true,
		`headers["data"] == "1"`:        false,
		`[1, 2].exists(data, data > 1)`: false, // a comprehension variable, not the body
	} {
		f, err := Compile(expr)
		if err != nil {
			t.Fatalf("Compile(%q): %v", expr, err)
		}
		if f.UsesData() != want {
			t.Errorf("UsesData(%q) = %v, want %v", expr, f.UsesData(), want)
		}
	}
}

func TestEvaluationIsBounded(t *testing.T) {
	big := record.Event{Type: "t", Body: []byte(`{"xs":[` + strings.TrimSuffix(strings.Repeat("1,", 2000), ",") + `]}`)}
	f, err := Compile(`data.xs.all(a, data.xs.all(b, a == b || a != b))`)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Match(context.Background(), NewInput(big)); err == nil || !strings.Contains(err.Error(), "cost limit") {
		t.Fatalf("a quadratic comprehension over 2,000 items: err = %v, want the cost limit", err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	f, err = Compile(`data.xs.exists(a, a == 2)`)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Match(ctx, NewInput(big)); err == nil {
		t.Fatal("an evaluation under an ended context succeeded")
	}
}

func TestInputParsesTheBodyOnce(t *testing.T) {
	in := NewInput(order)
	a, _ := Compile(`type == "order.created"`)
	b, _ := Compile(`data.total > 1000`)
	for _, f := range []*Filter{a, b, b, a} {
		if ok, err := f.Match(context.Background(), in); !ok || err != nil {
			t.Fatalf("%s: %v %v", f, ok, err)
		}
	}
	if !in.parsed || in.vars["data"] == nil {
		t.Fatal("the body was not parsed for the filter that needs it")
	}
}

func TestCache(t *testing.T) {
	var c Cache
	f1, err := c.Get(`type == "a"`)
	if err != nil {
		t.Fatal(err)
	}
	f2, _ := c.Get(`type == "a"`)
	if f1 != f2 {
		t.Fatal("the same expression was compiled twice")
	}
	if _, err := c.Get(`type ==`); err == nil {
		t.Fatal("a bad expression compiled")
	}
	if _, err := c.Get(`type ==`); err == nil {
		t.Fatal("a cached bad expression compiled")
	}
}

// BenchmarkMatch is the cost of one filter on one event, the body parsed
// once per event and shared by its filters (as deliver does).
func BenchmarkMatch(b *testing.B) {
	for _, bc := range []struct{ name, expr string }{
		{"type", `type == "order.created"`},
		{"header", `headers["x-shop-region"] == "eu"`},
		{"field", `data.total > 1000`},
		{"nested-and-list", `data.customer.tier == "gold" && data.currency in ["EUR", "GBP"]`},
		{"exists", `data.items.exists(i, i.sku == "b")`},
	} {
		f, err := Compile(bc.expr)
		if err != nil {
			b.Fatal(err)
		}
		in := NewInput(order)
		b.Run(bc.name, func(b *testing.B) {
			ctx := context.Background()
			for b.Loop() {
				if ok, err := f.Match(ctx, in); !ok || err != nil {
					b.Fatal(ok, err)
				}
			}
		})
	}
	b.Run("parse-body", func(b *testing.B) {
		f, _ := Compile(`data.total > 1000`)
		ctx := context.Background()
		for b.Loop() {
			if ok, err := f.Match(ctx, NewInput(order)); !ok || err != nil {
				b.Fatal(ok, err)
			}
		}
	})
}
