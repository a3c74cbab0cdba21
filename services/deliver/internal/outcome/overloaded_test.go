package outcome

import (
	"context"
	"errors"
	"testing"
)

func TestOverloaded(t *testing.T) {
	for _, tc := range []struct {
		a    Answer
		want bool
	}{
		{Answer{Status: 200}, false},
		{Answer{Status: 500}, false},
		{Answer{Status: 429}, true},
		{Answer{Status: 503}, true},
		{Answer{Err: errors.New("i/o timeout")}, true},
		{Answer{Err: context.Canceled, Cancelled: true}, false},
	} {
		if got := Overloaded(tc.a); got != tc.want {
			t.Errorf("Overloaded(%+v) = %v, want %v", tc.a, got, tc.want)
		}
	}
}
