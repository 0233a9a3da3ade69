package rendezvous

import (
	"context"
	"errors"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/ferrynet/ferry/dht"
	"github.com/ferrynet/ferry/identity"
	"github.com/ferrynet/ferry/signal"
	"github.com/ferrynet/ferry/wire"
)

// dhtAsk sends one DHT request through c and decodes the answer.
func dhtAsk(t *testing.T, c *signal.Client, req dht.Message) (identity.PeerID, dht.Message) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	b, err := dht.AppendMessage(nil, req)
	if err != nil {
		t.Fatal(err)
	}
	node, ans, err := c.DHT(ctx, b)
	if err != nil {
		t.Fatalf("DHT %v: %v", req.Type(), err)
	}
	m, err := dht.ParseMessage(ans)
	if err != nil {
		t.Fatal(err)
	}
	return node, m
}

func TestDHTServersJoinThroughBootstrap(t *testing.T) {
	idA, idB := newIdentity(t), newIdentity(t)
	b := newServer(t, func(c *Config) { c.DHTIdentity = idB })
	a := newServer(t, func(c *Config) {
		c.DHTIdentity = idA
		c.DHTBootstrap = []string{wsURL(b)}
	})
	deadline := time.Now().Add(30 * time.Second)
	for !hasContact(a.dht.node, idB.PeerID()) {
		if time.Now().After(deadline) {
			t.Fatal("server A never added B's DHT node through --dht-bootstrap")
		}
		time.Sleep(20 * time.Millisecond)
	}

	// A peer at A asks A's node for the nodes near B: a peer gets no
	// contacts (it could not reach them), a server gets B.
	p := dial(t, a)
	if _, m := dhtAsk(t, p, &dht.FindNode{Target: idB.PeerID()}); len(m.(*dht.Nodes).Closer) != 0 {
		t.Fatalf("a peer got %d contacts it cannot reach", len(m.(*dht.Nodes).Closer))
	}
	node, m := dhtAsk(t, p, &dht.FindNode{Target: idB.PeerID(), Server: true})
	if node != idA.PeerID() {
		t.Fatalf("answer from node %s, want A's %s", node.Short(), idA.PeerID().Short())
	}
	nodes, ok := m.(*dht.Nodes)
	if !ok {
		t.Fatalf("FIND_NODE answered with %v", m.Type())
	}
	found := false
	for _, c := range nodes.Closer {
		found = found || c.ID == idB.PeerID()
	}
	if !found {
		t.Fatalf("A's answer lists %d contacts, not B", len(nodes.Closer))
	}
	// A peer record put at B is answered to a peer there.
	q := dial(t, b)
	if _, m := dhtAsk(t, q, &dht.Ping{}); m.Type() != dht.TypePong {
		t.Fatalf("ping answered with %v", m.Type())
	}
}

func hasContact(n *dht.Node, id identity.PeerID) bool {
	for _, c := range n.Contacts() {
		if c.ID == id {
			return true
		}
	}
	return false
}

func TestDHTSignalingBadInput(t *testing.T) {
	s := newServer(t, func(c *Config) { c.DHTIdentity = newIdentity(t) })
	p := dial(t, s)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	pong, err := dht.AppendMessage(nil, &dht.Pong{})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		msg  []byte
	}{
		{"unknown type", []byte{0xee}},
		{"malformed", []byte{byte(dht.TypeFindNode), 0xff, 0xff}},
		{"an answer, not a request", pong},
	} {
		_, _, err := p.DHT(ctx, tc.msg)
		var se *signal.ServerError
		if !errors.As(err, &se) || se.Code != wire.SignalErrMalformed || se.Fatal {
			t.Fatalf("%s: got %v, want a non-fatal malformed error", tc.name, err)
		}
	}
	// The connection and the node keep working.
	if _, m := dhtAsk(t, p, &dht.Ping{}); m.Type() != dht.TypePong {
		t.Fatalf("ping after bad input answered with %v", m.Type())
	}

	// A server without a DHT node says so, and keeps the connection.
	plain := newServer(t, nil)
	c := dial(t, plain)
	ping, _ := dht.AppendMessage(nil, &dht.Ping{})
	_, _, err = c.DHT(ctx, ping)
	var se *signal.ServerError
	if !errors.As(err, &se) || se.Code != wire.SignalErrUnavailable || se.Fatal {
		t.Fatalf("server without DHT: got %v", err)
	}
}

func TestDHTConfigErrors(t *testing.T) {
	for name, c := range map[string]Config{
		"bootstrap without identity": {DHTBootstrap: []string{"ws://127.0.0.1:1/v1/signal"}},
		"bad bootstrap URL":          {DHTIdentity: newIdentity(t), DHTBootstrap: []string{"http://x"}},
	} {
		c.ServerNames = []string{"127.0.0.1"}
		c.InsecureListener = nil
		c.STUNConns = rfc5780Conns(t)[:1]
		if err := c.Validate(); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("%s: Validate = %v", name, err)
		}
	}
}

// TestDHTProxyAcrossServers: a peer behind NAT at server A stores its
// record there; a peer at server B, which reaches no DHT node but B, finds
// it. The servers know each other only through DHTBootstrap.
func TestDHTProxyAcrossServers(t *testing.T) {
	lnB, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	urlB := "ws://" + lnB.Addr().String() + "/v1/signal"
	a := newServer(t, func(c *Config) {
		c.DHTIdentity = newIdentity(t)
		c.DHTBootstrap = []string{urlB}
	})
	b := startServer(t, Config{
		Listener: lnB, ServerNames: []string{"127.0.0.1"}, Logger: testLogger(t),
		DHTIdentity: newIdentity(t), DHTBootstrap: []string{wsURL(a)},
	})
	idP := newIdentity(t)
	p := dialAs(t, a, idP)
	q := dial(t, b)
	rec := &dht.Record{Seq: 1, Expires: time.Now().Add(time.Hour), Rendezvous: []string{wsURL(a)}}
	if err := rec.Sign(idP); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(60 * time.Second)
	for !hasContact(a.dht.node, b.dht.id.PeerID()) || !hasContact(b.dht.node, a.dht.id.PeerID()) {
		if time.Now().After(deadline) {
			t.Fatal("the servers never joined each other")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, m := dhtAsk(t, p, &dht.Put{Record: rec}); m.(*dht.PutResult).Code.Err() != nil {
		t.Fatalf("PUT at A: %v", m.(*dht.PutResult).Code.Err())
	}
	_, m := dhtAsk(t, q, &dht.Get{Key: idP.PeerID()})
	v, ok := m.(*dht.Values)
	if !ok || len(v.Records) != 1 || v.Records[0].PeerID() != idP.PeerID() {
		t.Fatalf("GET at B for the record stored at A: %v", m)
	}
	if !slices.Equal(v.Records[0].Rendezvous, []string{wsURL(a)}) {
		t.Fatalf("record names %q", v.Records[0].Rendezvous)
	}
	// A forged record (signature broken) is refused at A.
	forged := &dht.Record{Seq: 2, Expires: time.Now().Add(time.Hour), Rendezvous: []string{"ws://evil/v1/signal"}}
	if err := forged.Sign(idP); err != nil {
		t.Fatal(err)
	}
	forged.Signature[0] ^= 1
	_, m = dhtAsk(t, p, &dht.Put{Record: forged})
	if pr, ok := m.(*dht.PutResult); !ok || pr.Code.Err() == nil {
		t.Fatalf("forged record: %v", m)
	}
}
