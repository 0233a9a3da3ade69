package sdk

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/ferrynet/ferry/internal/testutil"
)

// twoDHTServers starts two rendezvous servers with DHT nodes that know each
// other only through DHTBootstrap.
func twoDHTServers(t *testing.T) (a, b *infra) {
	t.Helper()
	lnA, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	lnB, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	urlOf := func(ln net.Listener) string { return "ws://" + ln.Addr().String() + "/v1/signal" }
	return newDHTInfraOn(t, lnA, urlOf(lnB)), newDHTInfraOn(t, lnB, urlOf(lnA))
}

// startDiscoveryRetry starts n's discovery, retrying while the servers
// have not joined each other yet.
func startDiscoveryRetry(ctx context.Context, t *testing.T, n *Node) *Discovery {
	t.Helper()
	for {
		d, err := n.StartDiscovery(ctx, DiscoveryOptions{Refresh: 200 * time.Millisecond})
		if err == nil {
			return d
		}
		if ctx.Err() != nil {
			t.Fatalf("start discovery: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestDialAcrossRendezvous: a node dials a peer logged in at another
// rendezvous server by PeerID alone, through the peer's DHT record and a
// login at the peer's server, which then lets the peer dial back.
func TestDialAcrossRendezvous(t *testing.T) {
	testutil.CheckLeaks(t)
	testutil.Deadline(t, 2*time.Minute)
	setForeignIdle(t, time.Hour) // TestForeignLoginIdleClose checks the reaping
	ra, rb := twoDHTServers(t)
	ctx := ctxT(t, 90*time.Second)
	a := ra.node(t)
	b := rb.node(t)

	// Without discovery, the dialer's own server is all it knows.
	_, err := b.Dial(ctx, a.PeerID())
	if !errors.Is(err, ErrPeerNotFound) || !strings.Contains(err.Error(), "StartDiscovery") {
		t.Fatalf("dial without discovery: %v, want ErrPeerNotFound naming StartDiscovery", err)
	}

	startDiscoveryRetry(ctx, t, a)
	db := startDiscoveryRetry(ctx, t, b)
	waitFor(t, "A's record", func() bool {
		_, err := db.FindPeer(ctx, a.PeerID())
		return err == nil
	})
	acc := make(chan *Conn, 1)
	go func() {
		c, err := a.Accept(ctx)
		if err != nil {
			t.Error(err)
		}
		acc <- c
	}()
	start := time.Now()
	cb, err := b.Dial(ctx, a.PeerID())
	if err != nil {
		t.Fatalf("dial across rendezvous servers: %v", err)
	}
	t.Logf("dial across rendezvous servers took %v (%s path)", time.Since(start), cb.Path().Kind())
	ca := <-acc
	if ca == nil {
		t.FailNow()
	}
	if ca.RemotePeer() != b.PeerID() || cb.RemotePeer() != a.PeerID() {
		t.Fatal("wrong peers")
	}
	if err := cb.Send(ctx, []byte("hello")); err != nil {
		t.Fatal(err)
	}
	if m, err := ca.Recv(ctx); err != nil || string(m) != "hello" {
		t.Fatalf("recv %q, %v", m, err)
	}
	if got := b.ForeignRendezvous(); got != 1 {
		t.Fatalf("logged in at %d foreign servers, want 1", got)
	}
	if lastAt := b.foreign.lastAt(a.PeerID()); lastAt != ra.url {
		t.Fatalf("A remembered at %q, want %q", lastAt, ra.url)
	}

	// While B is logged in at A's server, A reaches B back through it: the
	// offer comes in on B's foreign login and is answered there.
	_ = ca.Close()
	_ = cb.Close()
	waitFor(t, "both conns to be forgotten", func() bool {
		return a.existingConn(b.PeerID()) == nil && b.existingConn(a.PeerID()) == nil
	})
	go func() {
		c, err := b.Accept(ctx)
		if err != nil {
			t.Error(err)
		}
		acc <- c
	}()
	ca, err = a.Dial(ctx, b.PeerID())
	if err != nil {
		t.Fatalf("dial back through B's foreign login: %v", err)
	}
	if cb = <-acc; cb == nil {
		t.FailNow()
	}
	if got := a.ForeignRendezvous(); got != 0 {
		t.Fatalf("A logged in at %d foreign servers to dial back, want 0 (its own server knows B now)", got)
	}
	_ = ca.Close()
	_ = cb.Close()
}

// TestForeignLoginIdleClose: the login at the peer's server is closed once
// idle, and a later dial logs in again.
func TestForeignLoginIdleClose(t *testing.T) {
	testutil.CheckLeaks(t)
	testutil.Deadline(t, 2*time.Minute)
	setForeignIdle(t, 200*time.Millisecond)
	ra, rb := twoDHTServers(t)
	ctx := ctxT(t, 90*time.Second)
	a := ra.node(t)
	b := rb.node(t)
	startDiscoveryRetry(ctx, t, a)
	db := startDiscoveryRetry(ctx, t, b)
	waitFor(t, "A's record", func() bool {
		_, err := db.FindPeer(ctx, a.PeerID())
		return err == nil
	})
	for round := range 2 {
		go func() {
			if c, err := a.Accept(ctx); err == nil {
				_ = c.Close()
			}
		}()
		c, err := b.Dial(ctx, a.PeerID())
		if err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		_ = c.Close()
		waitFor(t, "the idle foreign login to close", func() bool { return b.ForeignRendezvous() == 0 })
		waitFor(t, "the conn to be forgotten", func() bool { return b.existingConn(a.PeerID()) == nil })
	}
	// A peer that is nowhere: not at B's server, and no record.
	ghost := newIdentity(t).PeerID()
	if _, err := b.Dial(ctx, ghost); !errors.Is(err, ErrPeerNotFound) {
		t.Fatalf("dial of an unknown peer: %v, want ErrPeerNotFound", err)
	}
}

// setForeignIdle sets how long foreign logins are kept idle, until t ends.
func setForeignIdle(t *testing.T, d time.Duration) {
	old := foreignRVIdle.Swap(int64(d))
	t.Cleanup(func() { foreignRVIdle.Store(old) })
}

// TestForeignLoginsBounded: at most maxForeignRV foreign logins; one more
// server closes the least recently used idle login, and when every login
// is in a negotiation the next server is refused.
func TestForeignLoginsBounded(t *testing.T) {
	testutil.CheckLeaks(t)
	testutil.Deadline(t, 2*time.Minute)
	setForeignIdle(t, time.Hour)
	ctx := ctxT(t, 60*time.Second)
	n := newInfra(t).node(t)
	urls := make([]string, maxForeignRV+2)
	for i := range urls {
		urls[i] = newDHTInfra(t).url
	}
	var held []*foreignRV
	for _, u := range urls[:maxForeignRV] {
		f, err := n.acquireForeign(ctx, u)
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, f)
	}
	if _, err := n.acquireForeign(ctx, urls[maxForeignRV]); !errors.Is(err, errForeignLogin) || !strings.Contains(err.Error(), "all in use") {
		t.Fatalf("a login past the bound with every login busy: %v", err)
	}
	for _, f := range held {
		n.foreign.release(f)
	}
	oldest := held[0].c.Load()
	f, err := n.acquireForeign(ctx, urls[maxForeignRV+1])
	if err != nil {
		t.Fatal(err)
	}
	n.foreign.release(f)
	if got := n.ForeignRendezvous(); got != maxForeignRV {
		t.Fatalf("%d foreign logins, want %d", got, maxForeignRV)
	}
	select {
	case <-oldest.Done():
	case <-ctx.Done():
		t.Fatal("the least recently used login was not closed to make room")
	}
	// The same server again reuses its login.
	again, err := n.acquireForeign(ctx, urls[maxForeignRV+1])
	if err != nil || again != f {
		t.Fatalf("second acquire of one server: %p, %v; want the same login %p", again, err, f)
	}
	n.foreign.release(again)
}

// TestDialRecordNamesDeadServer: a peer whose record names a server that
// does not answer is not found, within the login timeout, with an error
// that says the login failed; the node keeps working.
func TestDialRecordNamesDeadServer(t *testing.T) {
	testutil.CheckLeaks(t)
	testutil.Deadline(t, 2*time.Minute)
	setForeignIdle(t, time.Hour)
	ra, rb := twoDHTServers(t)
	ctx := ctxT(t, 90*time.Second)
	a := ra.node(t)
	b := rb.node(t, WithLoginTimeout(time.Second))
	da := startDiscoveryRetry(ctx, t, a)
	db := startDiscoveryRetry(ctx, t, b)
	// A closed port: nothing listens there.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "ws://" + ln.Addr().String() + "/v1/signal"
	_ = ln.Close()
	if _, err := da.d.Publish(ctx, []string{dead}, nil); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "A's new record", func() bool {
		info, err := db.FindPeer(ctx, a.PeerID())
		return err == nil && len(info.Rendezvous) == 1 && info.Rendezvous[0] == dead
	})
	start := time.Now()
	_, err = b.Dial(ctx, a.PeerID())
	if !errors.Is(err, ErrPeerNotFound) || !errors.Is(err, errForeignLogin) {
		t.Fatalf("dial of a peer whose record names a dead server: %v", err)
	}
	t.Logf("failed in %v: %v", time.Since(start), err)
	if b.ForeignRendezvous() != 0 {
		t.Fatalf("%d foreign logins kept", b.ForeignRendezvous())
	}
	// B still dials a peer at its own server.
	c := rb.node(t)
	go func() {
		if cc, err := c.Accept(ctx); err == nil {
			_ = cc.Close()
		}
	}()
	cc, err := b.Dial(ctx, c.PeerID())
	if err != nil {
		t.Fatalf("dial at the own server after the failure: %v", err)
	}
	_ = cc.Close()
}
