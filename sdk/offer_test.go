package sdk

import (
	"context"
	"errors"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/ferrynet/ferry/internal/testutil"
	"github.com/ferrynet/ferry/signal"
	"github.com/ferrynet/ferry/wire"
)

// TestRefusedOfferLearnsNothing is finding 5 of issue 11: a node must ask
// its allow hook before it starts an ICE agent for an offer, so a peer it
// refuses gets a Bye and never an answer carrying the node's credentials
// or candidates (its local, public and relay addresses).
func TestRefusedOfferLearnsNothing(t *testing.T) {
	testutil.CheckLeaks(t)
	testutil.Deadline(t, time.Minute)
	in := newInfra(t)
	mallory := newIdentity(t)
	var hookCalls sync.Map
	b := in.node(t, WithAllowPeer(func(p PeerID) error {
		hookCalls.Store(p, true)
		if p == mallory.PeerID() {
			return errRefusedForTest
		}
		return nil
	}))

	var mu sync.Mutex
	var got []wire.RoutedMessage
	ctx := ctxT(t, 20*time.Second)
	rv, err := signal.Dial(ctx, in.url, mallory, signal.WithHandler(func(m signal.Message) {
		if m.Err == nil && m.From == b.PeerID() {
			mu.Lock()
			got = append(got, m.Msg)
			mu.Unlock()
		}
	}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rv.Close() })
	sid := []byte("0123456789abcdef")
	if err := rv.Offer(ctx, b.PeerID(), &wire.Offer{RouteHeader: wire.RouteHeader{SessionID: sid}, Ufrag: "aB3d", Pwd: "0123456789abcdefghijkl"}); err != nil {
		t.Fatal(err)
	}
	// Today's answer (or its candidates) and the fix's Bye both come
	// back through the rendezvous: wait for whichever arrives first.
	testutil.WaitFor(t, 15*time.Second, "a reply to the offer", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(got) > 0
	})
	mu.Lock()
	defer mu.Unlock()
	for _, m := range got {
		switch m := m.(type) {
		case *wire.Bye:
			if m.Reason != "refused" {
				t.Errorf("bye %q, want \"refused\"", m.Reason)
			}
		default:
			t.Errorf("refused peer received %T %+v", m, m)
		}
	}
	if _, ok := hookCalls.Load(mallory.PeerID()); !ok {
		t.Error("the allow hook was not asked")
	}
	b.mu.Lock()
	pending := len(b.incoming)
	b.mu.Unlock()
	if pending != 0 {
		t.Errorf("%d incoming negotiations registered for a refused offer", pending)
	}
}

var errRefusedForTest = errors.New("test: refused")

func TestOfferLimiter(t *testing.T) {
	l := newOfferLimiter(1, 3)
	a, b := newIdentity(t).PeerID(), newIdentity(t).PeerID()
	now := time.Unix(1_000_000, 0)
	for i := range 3 {
		if !l.allow(a, now) {
			t.Fatalf("offer %d within the burst refused", i)
		}
	}
	if l.allow(a, now) {
		t.Fatal("offer beyond the burst allowed")
	}
	if !l.allow(b, now) {
		t.Fatal("another sender was limited by the first")
	}
	if !l.allow(a, now.Add(time.Second)) || l.allow(a, now.Add(time.Second)) {
		t.Fatal("one offer a second should pass, and only one")
	}
}

func TestOfferLimiterBoundedMemory(t *testing.T) {
	l := newOfferLimiter(1, 1)
	now := time.Unix(1_000_000, 0)
	var id PeerID
	for i := range maxOfferSenders {
		id[0], id[1] = byte(i), byte(i>>8)
		if !l.allow(id, now) {
			t.Fatalf("sender %d refused", i)
		}
	}
	id[31] = 1 // a sender not yet seen
	if l.allow(id, now) {
		t.Error("a new sender was admitted while the table is full of limited senders")
	}
	if len(l.byID) > maxOfferSenders {
		t.Errorf("table grew to %d", len(l.byID))
	}
	if !l.allow(id, now.Add(time.Second)) {
		t.Error("a new sender was refused after the others refilled")
	}
	if len(l.byID) != 1 {
		t.Errorf("refilled senders kept: %d", len(l.byID))
	}
}

func TestNodeAcceptAfterClose(t *testing.T) {
	testutil.CheckLeaks(t)
	testutil.Deadline(t, 30*time.Second)
	in := newInfra(t)
	n := in.node(t)
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := n.Accept(context.Background()); !errors.Is(err, net.ErrClosed) || !errors.Is(err, ErrClosed) {
		t.Fatalf("Accept after Close: %v, want net.ErrClosed", err)
	}
}
