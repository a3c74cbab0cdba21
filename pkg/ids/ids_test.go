package ids

import (
	"sort"
	"testing"
	"time"
)

func TestNewIsValidAndCarriesTime(t *testing.T) {
	at := time.UnixMilli(1_700_000_000_123)
	id := NewAt(Event, at)
	if !Valid(Event, id) {
		t.Fatalf("Valid(%q) = false", id)
	}
	if Valid(Source, id) {
		t.Fatalf("an event id must not validate as a source id")
	}
	got, ok := Time(id)
	if !ok || !got.Equal(at) {
		t.Fatalf("Time(%q) = %v, %v; want %v", id, got, ok, at)
	}
}

func TestIDsSortByTime(t *testing.T) {
	base := time.UnixMilli(1_700_000_000_000)
	var made []string
	for i := 0; i < 200; i++ {
		made = append(made, NewAt(Event, base.Add(time.Duration(i)*time.Millisecond)))
	}
	sorted := append([]string(nil), made...)
	sort.Strings(sorted)
	for i := range made {
		if made[i] != sorted[i] {
			t.Fatalf("ids do not sort in creation order at %d: %s vs %s", i, made[i], sorted[i])
		}
	}
	lb := LowerBound(Event, base.Add(100*time.Millisecond))
	for i, id := range made {
		if (i >= 100) != (id >= lb) {
			t.Fatalf("LowerBound misplaced against id %d", i)
		}
	}
}

func TestValidRejects(t *testing.T) {
	for _, id := range []string{"", "evt_", "evt_0123", "src_01ARZ3NDEKTSV4RRFFQ69G5FAV", "evt_01ARZ3NDEKTSV4RRFFQ69G5FA!", "evt_91ARZ3NDEKTSV4RRFFQ69G5FAV"} {
		if Valid(Event, id) {
			t.Errorf("Valid(%q) = true", id)
		}
	}
}
