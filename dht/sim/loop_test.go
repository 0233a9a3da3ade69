package sim

import (
	"testing"
	"time"
)

func TestLoop(t *testing.T) {
	l := NewLoop(1, 0)
	var got []int
	l.At(20*time.Millisecond, func() { got = append(got, 3) })
	l.At(10*time.Millisecond, func() {
		got = append(got, 1)
		l.At(0, func() { got = append(got, 2) }) // same time, after
	})
	for l.Step() {
	}
	if len(got) != 3 || got[0] != 1 || got[1] != 2 || got[2] != 3 || l.Now() != 20*time.Millisecond {
		t.Errorf("order %v at %v", got, l.Now())
	}
	for range 1000 {
		if d := l.NodeLatency(); d < 5*time.Millisecond || d > 75*time.Millisecond {
			t.Fatalf("latency %v", d)
		}
	}
	if l.Lost() {
		t.Error("a loss-free loop lost a message")
	}
	lossy, lost := NewLoop(2, 0.5), 0
	for range 1000 {
		if lossy.Lost() {
			lost++
		}
	}
	if lost < 400 || lost > 600 {
		t.Errorf("lost %d of 1000 at 0.5", lost)
	}
}
