package sdk

import (
	"testing"
	"time"

	"github.com/ferrynet/ferry/internal/testutil"
)

// TestSubscribeFansOut: every subscriber sees every event, and Events
// keeps working beside them.
func TestSubscribeFansOut(t *testing.T) {
	testutil.CheckLeaks(t)
	testutil.Deadline(t, 30*time.Second)
	a, b := newEndpoint(t), newEndpoint(t)
	ca, cb := connect(t, a, b)
	s1, cancel1 := ca.Subscribe()
	defer cancel1()
	s2, cancel2 := ca.Subscribe()
	defer cancel2()
	s3, cancel3 := ca.Subscribe()
	cancel3()
	if _, ok := <-s3; ok {
		t.Fatal("a cancelled subscription delivered an event")
	}
	cancel3() // idempotent
	if err := cb.Close(); err != nil {
		t.Fatal(err)
	}
	for i, ch := range []<-chan Event{s1, s2} {
		var last Event
		n := 0
		for ev := range ch { // closed after Closed
			last = ev
			n++
		}
		if n == 0 || last.State != StateClosed {
			t.Errorf("subscriber %d: %d events, last %v", i, n, last)
		}
	}
	late, cancel := ca.Subscribe()
	defer cancel()
	if _, ok := <-late; ok {
		t.Error("subscribing to a closed Conn delivered an event")
	}
}

// TestSubscribeSlowReader: a subscriber that does not read keeps the
// newest events, bounded, and holds nothing up.
func TestSubscribeSlowReader(t *testing.T) {
	c := newConn(defaultConfig(), roleDialer, PeerID{1}, PeerID{2}, [connIDLen]byte{})
	slow, cancel := c.Subscribe()
	defer cancel()
	c.mu.Lock()
	for range 100 {
		c.setStateLocked(StateDisconnected, nil)
		c.setStateLocked(StateReconnecting, nil)
	}
	c.setStateLocked(StateClosed, nil)
	c.mu.Unlock()
	var got []Event
	for ev := range slow {
		got = append(got, ev)
	}
	if len(got) != eventBacklog {
		t.Fatalf("slow subscriber kept %d events, want %d", len(got), eventBacklog)
	}
	if got[len(got)-1].State != StateClosed || got[len(got)-2].State != StateReconnecting {
		t.Fatalf("the newest events were lost: last two %v, %v", got[len(got)-2], got[len(got)-1])
	}
	c.cancel()
}
