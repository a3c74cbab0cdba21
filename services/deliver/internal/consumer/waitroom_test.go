package consumer

import "testing"

func TestWaitRoomBounds(t *testing.T) {
	w := NewWaitRoom(2, 100)
	if !w.enter(60) || w.enter(50) {
		t.Fatal("the room let in more bytes than it holds")
	}
	if !w.enter(40) || w.enter(0) {
		t.Fatal("the room let in more deliveries than it holds")
	}
	w.leave(60)
	if !w.enter(60) {
		t.Fatal("a place that was left was not given again")
	}
	var none *WaitRoom
	if none.enter(1) {
		t.Fatal("no room let a delivery in")
	}
}
