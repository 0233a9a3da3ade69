package sdk

import (
	"bytes"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/ferrynet/ferry/internal/testutil"
)

// conns counts the connections a node's router holds.
func (n *Node) connCount() int {
	n.router.mu.Lock()
	defer n.router.mu.Unlock()
	return len(n.conns)
}

func TestDialReusesConnection(t *testing.T) {
	testutil.CheckLeaks(t)
	testutil.Deadline(t, time.Minute)
	in := newInfra(t)
	a, b := in.node(t), in.node(t)
	ctx := ctxT(t, 20*time.Second)

	// Concurrent Dials join one dial.
	const dialers = 8
	got := make([]*Conn, dialers)
	errs := make([]error, dialers)
	var wg sync.WaitGroup
	for i := range dialers {
		wg.Go(func() { got[i], errs[i] = a.Dial(ctx, b.PeerID()) })
	}
	wg.Wait()
	for i := range dialers {
		if errs[i] != nil {
			t.Fatalf("dial %d: %v", i, errs[i])
		}
		if got[i] != got[0] {
			t.Fatalf("dial %d returned another Conn", i)
		}
	}
	cb, err := b.Accept(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// A later Dial returns the same Conn, and so does a Dial from the
	// accepting side: no second ICE negotiation.
	if again, err := a.Dial(ctx, b.PeerID()); err != nil || again != got[0] {
		t.Fatalf("second Dial: %v (same Conn: %v)", err, again == got[0])
	}
	back, err := b.Dial(ctx, a.PeerID())
	if err != nil || back != cb {
		t.Fatalf("Dial from the accepting side: %v (the accepted Conn: %v)", err, back == cb)
	}
	if a.connCount() != 1 || b.connCount() != 1 {
		t.Fatalf("connections: %d and %d, want 1 each", a.connCount(), b.connCount())
	}
	if err := back.Send(ctx, []byte("hi")); err != nil {
		t.Fatal(err)
	}
	if m, err := got[0].Recv(ctx); err != nil || string(m) != "hi" {
		t.Fatalf("Recv = %q, %v", m, err)
	}
	// Once closed, the next Dial makes a new connection.
	if err := got[0].Close(); err != nil {
		t.Fatal(err)
	}
	fresh, err := a.Dial(ctx, b.PeerID())
	if err != nil || fresh == got[0] {
		t.Fatalf("Dial after Close: %v (same Conn: %v)", err, fresh == got[0])
	}
}

func TestDialSelf(t *testing.T) {
	testutil.CheckLeaks(t)
	testutil.Deadline(t, 30*time.Second)
	in := newInfra(t)
	a := in.node(t)
	if _, err := a.Dial(ctxT(t, 10*time.Second), a.PeerID()); !errors.Is(err, ErrDialSelf) {
		t.Fatalf("Dial to self: %v, want ErrDialSelf", err)
	}
}

// TestSimultaneousDial: two nodes dial each other at once and both end up
// with one connection, the one the lower PeerID dialed.
func TestSimultaneousDial(t *testing.T) {
	testutil.CheckLeaks(t)
	testutil.Deadline(t, 2*time.Minute)
	in := newInfra(t)
	for round := range 3 {
		a, b := in.node(t), in.node(t)
		ctx := ctxT(t, 30*time.Second)
		var ca, cb *Conn
		var ea, eb error
		start := make(chan struct{})
		var wg sync.WaitGroup
		wg.Go(func() { <-start; ca, ea = a.Dial(ctx, b.PeerID()) })
		wg.Go(func() { <-start; cb, eb = b.Dial(ctx, a.PeerID()) })
		close(start)
		wg.Wait()
		if ea != nil || eb != nil {
			t.Fatalf("round %d: dials: %v / %v", round, ea, eb)
		}
		if ca.connID != cb.connID {
			t.Fatalf("round %d: the two sides hold different connections", round)
		}
		pa, pb := a.PeerID(), b.PeerID()
		lowA := bytes.Compare(pa[:], pb[:]) < 0
		if (ca.role == roleDialer) != lowA {
			t.Errorf("round %d: the surviving connection was dialed by the higher PeerID", round)
		}
		testutil.WaitFor(t, 10*time.Second, "the losing connection to close", func() bool {
			return a.connCount() == 1 && b.connCount() == 1
		})
		if err := ca.Send(ctx, []byte("x")); err != nil {
			t.Fatal(err)
		}
		if m, err := cb.Recv(ctx); err != nil || string(m) != "x" {
			t.Fatalf("round %d: Recv = %q, %v", round, m, err)
		}
		// Neither side's Accept sees the connection its Dial returned.
		if len(a.accepted) != 0 || len(b.accepted) != 0 {
			t.Errorf("round %d: Accept would also return it (%d, %d queued)", round, len(a.accepted), len(b.accepted))
		}
		_ = a.Close()
		_ = b.Close()
	}
}
