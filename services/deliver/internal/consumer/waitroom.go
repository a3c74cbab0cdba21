package consumer

import "sync"

// WaitRoom bounds the throttled deliveries that wait out the last stretch
// before their reserved time in deliver (less than the first retry tier's
// delay), holding their record: a count and their bodies' bytes, shared by
// both consumers. When it is full a delivery rides the first tier instead,
// due at its time. Riding it, it may come back late behind a record due
// later on the same partition, and then reserve anew; waiting here, it goes
// out on time, so a backlog drains at its limit.
type WaitRoom struct {
	mu             sync.Mutex
	n, bytes       int
	maxN, maxBytes int
}

// NewWaitRoom returns a room for n deliveries and bytes of bodies.
func NewWaitRoom(n, bytes int) *WaitRoom { return &WaitRoom{maxN: n, maxBytes: bytes} }

// enter takes a place for a body of size bytes, if there is one.
func (w *WaitRoom) enter(size int) bool {
	if w == nil {
		return false
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.n >= w.maxN || w.bytes+size > w.maxBytes {
		return false
	}
	w.n++
	w.bytes += size
	return true
}

func (w *WaitRoom) leave(size int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.n--
	w.bytes -= size
}
