package rendezvous

import (
	"log/slog"
	"testing"
)

// TestQueueBoundInBytes (finding 9): a peer that stops reading holds at
// most DefaultQueueBytes (plus one frame) of routed messages, not
// QueueSize full-sized frames (128 x 64 KiB = 8 MiB).
func TestQueueBoundInBytes(t *testing.T) {
	srv := &Server{cfg: (&Config{}).withDefaults(), log: slog.New(slog.DiscardHandler)}
	s := &session{srv: srv, hold: true, done: make(chan struct{})} // hold: nothing is flushed
	frame := make([]byte, DefaultMaxPayload)
	held := 0
	for range DefaultQueueSize {
		if !s.enqueue(frame, false) {
			break
		}
		held += len(frame)
	}
	if limit := 1<<20 + len(frame); held > limit {
		t.Fatalf("%d bytes queued for a peer that does not read, want at most %d", held, limit)
	}
	if held == 0 {
		t.Fatal("not even one frame was queued")
	}
	// The server's own small frames still fit (the control reserve).
	if !s.enqueue(make([]byte, 64), true) {
		t.Fatal("a control frame was refused with the routed queue full")
	}
	// Small frames are bounded by QueueSize as before.
	s2 := &session{srv: srv, hold: true, done: make(chan struct{})}
	n := 0
	for s2.enqueue(make([]byte, 32), false) {
		n++
		if n > 10*DefaultQueueSize {
			break
		}
	}
	if n != DefaultQueueSize {
		t.Fatalf("%d small frames queued, want %d", n, DefaultQueueSize)
	}
}
