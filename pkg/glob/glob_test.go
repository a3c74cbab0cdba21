package glob

import (
	"strings"
	"testing"
)

func TestMatch(t *testing.T) {
	tests := []struct {
		pattern, s string
		want       bool
	}{
		{"*", "anything", true},
		{"*", "", true},
		{"payment.*", "payment.succeeded", true},
		{"payment.*", "payment.intent.succeeded", true},
		{"payment.*", "payment.", true},
		{"payment.*", "payment", false},
		{"payment.*", "payments.succeeded", false},
		{"*.succeeded", "payment.succeeded", true},
		{"*.succeeded", "payment.failed", false},
		{"invoice.paid", "invoice.paid", true},
		{"invoice.paid", "invoice.paid.late", false},
		{"push", "pull_request.opened", false},
		{"pull_request.*", "pull_request.opened", true},
		{"a*b*c", "aXXbYYc", true},
		{"a*b*c", "aXXbYY", false},
		{"**", "x", true},
		{"*a*a*a*a*a*b", strings.Repeat("a", 60), false},
		{"customer.*.updated", "customer.subscription.updated", true},
		{"customer.*.updated", "customer.updated", false},
	}
	for _, tt := range tests {
		t.Run(tt.pattern+"~"+tt.s, func(t *testing.T) {
			if got := Match(tt.pattern, tt.s); got != tt.want {
				t.Fatalf("Match(%q, %q) = %v, want %v", tt.pattern, tt.s, got, tt.want)
			}
		})
	}
}

func TestMatchAny(t *testing.T) {
	if !MatchAny([]string{"invoice.*", "payment.*"}, "payment.failed") {
		t.Fatal("MatchAny missed the second pattern")
	}
	if MatchAny(nil, "x") {
		t.Fatal("MatchAny of no patterns matched")
	}
}

func TestValidate(t *testing.T) {
	for name, p := range map[string]string{"empty": "", "long": strings.Repeat("a", MaxLen+1), "control": "a\nb", "utf8": "\xff"} {
		if Validate(p) == nil {
			t.Errorf("%s: Validate accepted %q", name, p)
		}
	}
	if err := Validate("payment.*"); err != nil {
		t.Fatal(err)
	}
}

// FuzzMatch checks Match against a simple recursive reference implementation.
func FuzzMatch(f *testing.F) {
	for _, seed := range [][2]string{{"payment.*", "payment.succeeded"}, {"*a*b", "aab"}, {"", ""}, {"**x", "yx"}} {
		f.Add(seed[0], seed[1])
	}
	f.Fuzz(func(t *testing.T, p, s string) {
		if len(p) > 12 || len(s) > 24 {
			return
		}
		if got, want := Match(p, s), reference(p, s); got != want {
			t.Fatalf("Match(%q, %q) = %v, reference says %v", p, s, got, want)
		}
	})
}

func reference(p, s string) bool {
	if p == "" {
		return s == ""
	}
	if p[0] == '*' {
		for i := 0; i <= len(s); i++ {
			if reference(p[1:], s[i:]) {
				return true
			}
		}
		return false
	}
	return s != "" && p[0] == s[0] && reference(p[1:], s[1:])
}
