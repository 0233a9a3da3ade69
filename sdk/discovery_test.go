package sdk

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ferrynet/ferry/dht"
	"github.com/ferrynet/ferry/dht/kbucket"
	"github.com/ferrynet/ferry/internal/rvtest"
	"github.com/ferrynet/ferry/internal/testutil"
	"github.com/ferrynet/ferry/server/rendezvous"
)

// dhtPeer is a Node with a DHT node on its DHTTransport.
type dhtPeer struct {
	n  *Node
	tr *DHTTransport
	d  *dht.Node
}

func newDHTPeer(t *testing.T, in *infra, cfg DHTTransportConfig, opts ...NodeOption) *dhtPeer {
	t.Helper()
	id := newIdentity(t)
	n := in.node(t, append([]NodeOption{WithIdentity(id)}, opts...)...)
	tr, err := NewDHTTransport(n, cfg)
	if err != nil {
		t.Fatal(err)
	}
	d, err := dht.New(id, tr, dht.WithRequestTimeout(15*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	tr.Serve(d.Handle)
	t.Cleanup(func() {
		_ = d.Close()
		_ = tr.Close()
	})
	return &dhtPeer{n: n, tr: tr, d: d}
}

func TestDHTOverFerry(t *testing.T) {
	in := newInfra(t)
	peers := make([]*dhtPeer, 4)
	for i := range peers {
		peers[i] = newDHTPeer(t, in, DHTTransportConfig{})
	}
	ctx := ctxT(t, 60*time.Second)
	seed := []kbucket.Contact{{ID: peers[0].n.PeerID()}}
	for _, p := range peers[1:] {
		if err := p.d.Bootstrap(ctx, seed); err != nil {
			t.Fatalf("bootstrap %s: %v", p.n.PeerID().Short(), err)
		}
	}
	if n, err := peers[3].d.Publish(ctx, []string{in.url}, nil); err != nil || n == 0 {
		t.Fatalf("publish: stored on %d nodes, err %v", n, err)
	}
	rec, err := peers[1].d.FindPeer(ctx, peers[3].n.PeerID())
	if err != nil {
		t.Fatalf("find peer: %v", err)
	}
	if rec.PeerID() != peers[3].n.PeerID() || len(rec.Rendezvous) != 1 || rec.Rendezvous[0] != in.url {
		t.Fatalf("found record for %s with rendezvous %q", rec.PeerID().Short(), rec.Rendezvous)
	}
	for _, p := range peers[2:] {
		if _, err := p.d.Announce(ctx, "room", []string{in.url}, nil); err != nil {
			t.Fatalf("announce: %v", err)
		}
	}
	anns, err := peers[1].d.Peers(ctx, "room")
	if err != nil {
		t.Fatalf("peers: %v", err)
	}
	got := map[PeerID]bool{}
	for _, a := range anns {
		got[a.PeerID()] = true
	}
	if len(got) != 2 || !got[peers[2].n.PeerID()] || !got[peers[3].n.PeerID()] {
		t.Fatalf("topic peers: got %d distinct, want peers 2 and 3", len(got))
	}
	// The transport's connections are its own, bounded by MaxConns.
	for _, p := range peers {
		if c := p.tr.Conns(); c > DefaultDHTMaxConns {
			t.Errorf("%s keeps %d DHT connections", p.n.PeerID().Short(), c)
		}
	}
}

// waitFor polls cond until it holds or the test's generous deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestDHTTransportBoundsAndIdle(t *testing.T) {
	in := newInfra(t)
	a := newDHTPeer(t, in, DHTTransportConfig{MaxConns: 1, IdleTimeout: 300 * time.Millisecond})
	b := newDHTPeer(t, in, DHTTransportConfig{})
	c := newDHTPeer(t, in, DHTTransportConfig{})
	ctx := ctxT(t, 60*time.Second)
	ping := func(to *dhtPeer) {
		t.Helper()
		m, err := a.tr.Request(ctx, kbucket.Contact{ID: to.n.PeerID()}, &dht.Ping{})
		if err != nil {
			t.Fatalf("ping %s: %v", to.n.PeerID().Short(), err)
		}
		if m.Type() != dht.TypePong {
			t.Fatalf("ping answered with %v", m.Type())
		}
	}
	ping(b)
	if n := a.tr.Conns(); n != 1 {
		t.Fatalf("after one ping the transport keeps %d connections, want 1", n)
	}
	ping(c) // closes the idle connection to b to make room
	if n := a.tr.Conns(); n != 1 {
		t.Fatalf("with MaxConns 1 the transport keeps %d connections", n)
	}
	waitFor(t, "the idle DHT connection to close", func() bool { return a.tr.Conns() == 0 })
	waitFor(t, "the node to drop its closed connections", func() bool {
		return a.n.existingConn(b.n.PeerID()) == nil && a.n.existingConn(c.n.PeerID()) == nil
	})

	// A connection the app dialed is used, and never closed by the DHT.
	app, err := a.n.Dial(ctx, b.n.PeerID())
	if err != nil {
		t.Fatal(err)
	}
	ping(b)
	if n := a.tr.Conns(); n != 0 {
		t.Fatalf("the app's connection was taken over: %d DHT connections", n)
	}
	time.Sleep(time.Second) // well past IdleTimeout: the reaper must leave it alone
	if app.State() == StateClosed {
		t.Fatal("the DHT transport closed the app's connection")
	}
}

func TestDHTTransportBadInput(t *testing.T) {
	in := newInfra(t)
	var logs testutil.SyncBuffer
	srv := newDHTPeer(t, in, DHTTransportConfig{}, WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
	cli := in.node(t)
	ctx := ctxT(t, 60*time.Second)
	conn, err := cli.Dial(ctx, srv.n.PeerID())
	if err != nil {
		t.Fatal(err)
	}
	length := func(n uint32) []byte { return binary.BigEndian.AppendUint32(nil, n) }
	cases := []struct {
		name, log string
		send      []byte
	}{
		{"oversized length", "maximum", length(dht.MaxMessageSize + 1)},
		{"huge length", "maximum", length(1 << 31)},
		{"empty message", "empty DHT message", length(0)},
		{"unknown type", "unknown", append(length(1), 0xee)},
		{"garbage body", "malformed", append(length(3), byte(dht.TypeFindNode), 0xff, 0xff)},
		{"a response, not a request", "not a request", func() []byte {
			b, err := dht.AppendMessage(nil, &dht.Pong{})
			if err != nil {
				t.Fatal(err)
			}
			return append(length(uint32(len(b))), b...)
		}()},
		{"truncated", "DHT message", append(length(100), 1, 2, 3)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s, err := conn.OpenStream(ctx, DHTProtocol)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := s.Write(tc.send); err != nil {
				t.Fatal(err)
			}
			if tc.name == "truncated" {
				_ = s.Close() // end the stream mid-message
			}
			_ = s.SetReadDeadline(time.Now().Add(30 * time.Second))
			_, err = io.ReadAll(s)
			if err == nil {
				t.Fatal("the bad request was answered")
			}
			if errors.Is(err, context.DeadlineExceeded) || strings.Contains(err.Error(), "deadline") {
				t.Fatalf("the bad request hung: %v", err)
			}
			waitFor(t, "the refusal to be logged", func() bool {
				return strings.Contains(logs.String(), tc.log)
			})
		})
	}
	// The node keeps answering.
	m, err := dhtRoundTrip(ctx, conn, &dht.Ping{})
	if err != nil || m.Type() != dht.TypePong {
		t.Fatalf("ping after bad input: %v, %v", m, err)
	}
}

// newDHTInfra starts a rendezvous server that runs a DHT node (no relay).
func newDHTInfra(t *testing.T) *infra {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return newDHTInfraOn(t, ln)
}

// newDHTInfraOn is newDHTInfra on ln, joining the DHT through bootstrap.
func newDHTInfraOn(t *testing.T, ln net.Listener, bootstrap ...string) *infra {
	t.Helper()
	rv, url := rvtest.Start(t, rendezvous.Config{
		Listener: ln, DHTIdentity: newIdentity(t), DHTBootstrap: bootstrap,
	})
	return &infra{rv: rv, url: url}
}

// TestDHTThroughRendezvous: two client-mode nodes (as behind NAT) meet
// through the DHT node of their rendezvous server, reached over signaling.
func TestDHTThroughRendezvous(t *testing.T) {
	in := newDHTInfra(t)
	ctx := ctxT(t, 60*time.Second)
	var peers []*dhtPeer
	for range 2 {
		id := newIdentity(t)
		n := in.node(t, WithIdentity(id))
		tr, err := NewDHTTransport(n, DHTTransportConfig{})
		if err != nil {
			t.Fatal(err)
		}
		d, err := dht.New(id, tr, dht.WithClientMode(), dht.WithRequestTimeout(15*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		tr.Serve(d.Handle)
		t.Cleanup(func() { _ = d.Close(); _ = tr.Close() })
		seed, err := tr.Rendezvous(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := d.Bootstrap(ctx, []kbucket.Contact{seed}); err != nil {
			t.Fatalf("bootstrap through the rendezvous: %v", err)
		}
		peers = append(peers, &dhtPeer{n: n, tr: tr, d: d})
	}
	x, y := peers[0], peers[1]
	if n, err := x.d.Publish(ctx, []string{in.url}, nil); err != nil || n != 1 {
		t.Fatalf("publish: stored on %d nodes, err %v", n, err)
	}
	rec, err := y.d.FindPeer(ctx, x.n.PeerID())
	if err != nil {
		t.Fatalf("find peer: %v", err)
	}
	if rec.PeerID() != x.n.PeerID() || !slices.Equal(rec.Rendezvous, []string{in.url}) {
		t.Fatalf("found %s at %q", rec.PeerID().Short(), rec.Rendezvous)
	}
	if _, err := y.d.Announce(ctx, "lobby", []string{in.url}, nil); err != nil {
		t.Fatal(err)
	}
	anns, err := x.d.Peers(ctx, "lobby")
	if err != nil || len(anns) != 1 || anns[0].PeerID() != y.n.PeerID() {
		t.Fatalf("topic peers: %d, err %v", len(anns), err)
	}
	// No Ferry connection was needed: everything went over signaling.
	if c := x.tr.Conns() + y.tr.Conns(); c != 0 {
		t.Fatalf("%d DHT connections dialed", c)
	}
}

// TestTopicAcrossRendezvous: nodes at two rendezvous servers that know each
// other only through DHTBootstrap find each other by PeerID and by topic.
func TestTopicAcrossRendezvous(t *testing.T) {
	lnA, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	lnB, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	urlOf := func(ln net.Listener) string { return "ws://" + ln.Addr().String() + "/v1/signal" }
	a := newDHTInfraOn(t, lnA, urlOf(lnB))
	b := newDHTInfraOn(t, lnB, urlOf(lnA))
	ctx := ctxT(t, 90*time.Second)
	var nodes []*Node
	for _, in := range []*infra{a, b, b} {
		n := in.node(t)
		// Until the servers have joined, a start may find no DHT: retry.
		for {
			_, err := n.StartDiscovery(ctx, DiscoveryOptions{Refresh: 200 * time.Millisecond})
			if err == nil {
				break
			}
			if ctx.Err() != nil {
				t.Fatalf("start discovery: %v", err)
			}
			time.Sleep(100 * time.Millisecond)
		}
		nodes = append(nodes, n)
	}
	// B's node finds A's by PeerID, with A's rendezvous URL.
	var info PeerInfo
	waitFor(t, "the record of the node at A", func() bool {
		info, err = nodes[1].disc.Load().FindPeer(ctx, nodes[0].PeerID())
		return err == nil
	})
	if !slices.Equal(info.Rendezvous, []string{a.url}) || len(info.Addrs) != 0 {
		t.Fatalf("record: rendezvous %q, addrs %v (none without opt-in)", info.Rendezvous, info.Addrs)
	}
	if _, err := nodes[0].Join(ctx, ""); err == nil {
		t.Fatal("joined the empty topic")
	}
	topics := make([]*Topic, len(nodes))
	for i, n := range nodes {
		if topics[i], err = n.Join(ctx, "ferry-test"); err != nil {
			t.Fatal(err)
		}
	}
	for i, tp := range topics {
		got := map[PeerID]bool{}
		for p := range tp.Peers(ctx) {
			if got[p.ID] {
				t.Fatalf("node %d: %s yielded twice", i, p.ID.Short())
			}
			got[p.ID] = true
			if len(got) == len(nodes)-1 {
				break
			}
		}
		for j, n := range nodes {
			if j != i && !got[n.PeerID()] {
				t.Fatalf("node %d did not find node %d", i, j)
			}
		}
		_ = tp.Close()
	}
	if _, err := (&Node{}).Join(ctx, "x"); !errors.Is(err, ErrNoDiscovery) {
		t.Fatalf("Join without discovery: %v", err)
	}
}
