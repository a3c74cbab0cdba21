package offsets

import (
	"math/rand"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"
)

func rec(topic string, p int32, off int64) *kgo.Record {
	return &kgo.Record{Topic: topic, Partition: p, Offset: off, LeaderEpoch: 7}
}

func TestCommitStopsAtFirstUnfinished(t *testing.T) {
	tr := New()
	var tickets []Ticket
	for off := int64(10); off < 15; off++ {
		tk, ok := tr.Add(rec("t", 0, off))
		if !ok {
			t.Fatal("Add refused an increasing offset")
		}
		tickets = append(tickets, tk)
	}
	steps := []struct {
		done       int
		wantMove   bool
		wantOffset int64
	}{
		{2, false, 0}, // 12 done; 10 still pending
		{1, false, 0}, // 11 done; 10 still pending
		{0, true, 13}, // 10 done: 10, 11, 12 done → commit 13
		{4, false, 0}, // 14 done; 13 pending
		{3, true, 15}, // 13 done → commit 15
	}
	for _, s := range steps {
		eo, moved := tr.Done(tickets[s.done])
		if moved != s.wantMove || (moved && eo.Offset != s.wantOffset) {
			t.Fatalf("Done(offset %d) = %v %v, want %v %d", tickets[s.done].Offset, eo, moved, s.wantMove, s.wantOffset)
		}
		if moved && eo.Epoch != 7 {
			t.Fatalf("epoch = %d, want the record's leader epoch", eo.Epoch)
		}
	}
	if n := tr.Pending(Partition{"t", 0}); n != 0 {
		t.Fatalf("Pending = %d", n)
	}
}

func TestPartitionsAreIndependent(t *testing.T) {
	tr := New()
	a, _ := tr.Add(rec("t", 0, 0))
	b, _ := tr.Add(rec("t", 1, 0))
	c, _ := tr.Add(rec("u", 0, 0))
	if eo, ok := tr.Done(b); !ok || eo.Offset != 1 {
		t.Fatalf("partition 1 = %v %v", eo, ok)
	}
	if tr.Pending(Partition{"t", 0}) != 1 || tr.Pending(Partition{"u", 0}) != 1 {
		t.Fatal("finishing one partition affected another")
	}
	tr.Done(a)
	tr.Done(c)
}

func TestRefusesNonIncreasingOffsets(t *testing.T) {
	tr := New()
	tr.Add(rec("t", 0, 5))
	if _, ok := tr.Add(rec("t", 0, 5)); ok {
		t.Fatal("Add accepted a repeated offset")
	}
	if _, ok := tr.Add(rec("t", 0, 3)); ok {
		t.Fatal("Add accepted a lower offset")
	}
}

func TestForgetIgnoresOldTickets(t *testing.T) {
	tr := New()
	p := Partition{"t", 0}
	old, _ := tr.Add(rec("t", 0, 1))
	tr.Forget(p)
	// Reassigned: the group restarts from the committed offset, 1 again.
	fresh, ok := tr.Add(rec("t", 0, 1))
	if !ok {
		t.Fatal("Add after Forget refused the offset")
	}
	if _, moved := tr.Done(old); moved {
		t.Fatal("a ticket from before the revoke moved the commit point")
	}
	if tr.Pending(p) != 1 {
		t.Fatal("old ticket finished the new record")
	}
	if eo, moved := tr.Done(fresh); !moved || eo.Offset != 2 {
		t.Fatalf("fresh ticket = %v %v", eo, moved)
	}
}

// TestRandomOrder finishes 10,000 records in random order and checks the
// commit point against a brute-force model after every step.
func TestRandomOrder(t *testing.T) {
	tr := New()
	const n = 10000
	tickets := make([]Ticket, n)
	for i := range tickets {
		tickets[i], _ = tr.Add(rec("t", 0, int64(i)))
	}
	done := make([]bool, n)
	committed := int64(0)
	rng := rand.New(rand.NewSource(1))
	for _, i := range rng.Perm(n) {
		done[i] = true
		eo, moved := tr.Done(tickets[i])
		want := committed
		for want < n && done[want] {
			want++
		}
		if moved != (want != committed) || (moved && eo.Offset != want) {
			t.Fatalf("after finishing %d: got %v %v, model says %d (was %d)", i, eo, moved, want, committed)
		}
		committed = want
	}
	if committed != n {
		t.Fatalf("final commit point %d, want %d", committed, n)
	}
}

func BenchmarkAddDone(b *testing.B) {
	tr := New()
	for i := 0; i < b.N; i++ {
		tk, _ := tr.Add(rec("t", 0, int64(i)))
		tr.Done(tk)
	}
}
