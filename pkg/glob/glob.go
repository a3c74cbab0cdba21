// Package glob matches event types against subscription patterns such as
// "payment.*". A '*' matches any run of characters, dots included, so
// "payment.*" matches "payment.intent.succeeded"; every other character
// matches itself.
package glob

import (
	"errors"
	"fmt"
	"unicode/utf8"
)

// MaxLen bounds a pattern's length.
const MaxLen = 256

// Validate reports whether p is an acceptable pattern.
func Validate(p string) error {
	switch {
	case p == "":
		return errors.New("pattern is empty")
	case len(p) > MaxLen:
		return fmt.Errorf("pattern is longer than %d bytes", MaxLen)
	case !utf8.ValidString(p):
		return errors.New("pattern is not valid UTF-8")
	}
	for _, r := range p {
		if r < 0x20 || r == 0x7f {
			return errors.New("pattern contains a control character")
		}
	}
	return nil
}

// Match reports whether s matches pattern p. It runs in O(len(p)·len(s)) time
// at worst, whatever the pattern: no backtracking blow-up on "*a*a*a*b".
func Match(p, s string) bool {
	// Classic wildcard matching with a single backtrack point: on a mismatch,
	// resume after the most recent '*', letting it absorb one more byte.
	pi, si := 0, 0
	star, mark := -1, 0
	for si < len(s) {
		switch {
		case pi < len(p) && p[pi] == '*':
			star, mark = pi, si
			pi++
		case pi < len(p) && p[pi] == s[si]:
			pi++
			si++
		case star >= 0:
			pi = star + 1
			mark++
			si = mark
		default:
			return false
		}
	}
	for pi < len(p) && p[pi] == '*' {
		pi++
	}
	return pi == len(p)
}

// MatchAny reports whether s matches any of the patterns.
func MatchAny(patterns []string, s string) bool {
	for _, p := range patterns {
		if Match(p, s) {
			return true
		}
	}
	return false
}
