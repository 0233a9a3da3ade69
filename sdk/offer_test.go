package sdk

import (
	"context"
	"errors"
	"net"
	"strings"
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

// TestNewFailsWhenNoRendezvousAnswers: New with context.Background returns
// an error after the login timeout instead of hanging, whether the server
// refuses connections or accepts them and says nothing.
func TestNewFailsWhenNoRendezvousAnswers(t *testing.T) {
	testutil.CheckLeaks(t)
	testutil.Deadline(t, 30*time.Second)
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = silent.Close() })
	var held []net.Conn
	var mu sync.Mutex
	go func() {
		for {
			c, err := silent.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			held = append(held, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range held {
			_ = c.Close()
		}
	})
	refusing, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refusedAddr := refusing.Addr().String()
	_ = refusing.Close()
	for name, addr := range map[string]string{"silent": silent.Addr().String(), "refused": refusedAddr} {
		t.Run(name, func(t *testing.T) {
			n, err := New(context.Background(), WithRendezvous("ws://"+addr+"/v1/signal"), WithLoginTimeout(300*time.Millisecond))
			if err == nil {
				_ = n.Close()
				t.Fatal("New succeeded without a rendezvous server")
			}
			if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "no login within 300ms") {
				t.Fatalf("New = %v, want the login timeout", err)
			}
		})
	}
}

// TestNewGeneratesIdentity: without an identity option, a node runs under
// a fresh in-memory identity.
func TestNewGeneratesIdentity(t *testing.T) {
	testutil.CheckLeaks(t)
	testutil.Deadline(t, 30*time.Second)
	in := newInfra(t)
	var ids []PeerID
	for range 2 {
		n, err := New(ctxT(t, 10*time.Second), WithRendezvous(in.url))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, n.PeerID())
		if err := n.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if ids[0].IsZero() || ids[0] == ids[1] {
		t.Fatalf("generated PeerIDs %s and %s", ids[0].Short(), ids[1].Short())
	}
}

func TestNodeOptionsValidate(t *testing.T) {
	for name, c := range map[string]struct {
		opt  NodeOption
		want string
	}{
		"offer rate":    {WithOfferLimit(0, 1), "offer limit"},
		"offer burst":   {WithOfferLimit(1, 0), "offer limit"},
		"login timeout": {WithLoginTimeout(0), "login timeout"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := New(context.Background(), WithRendezvous("ws://127.0.0.1:1/v1/signal"), c.opt)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want an error about %s", err, c.want)
			}
		})
	}
}
