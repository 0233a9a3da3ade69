package sdk

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/ferrynet/ferry/gossip"
	"github.com/ferrynet/ferry/internal/rvtest"
	"github.com/ferrynet/ferry/internal/testutil"
	"github.com/ferrynet/ferry/server/rendezvous"
)

// gossipNode is a node on a DHT rendezvous, joined to one topic and
// subscribed to it.
type gossipNode struct {
	n   *Node
	top *Topic
	sub *Subscription
}

// startGossipNode starts a node at url, joins topic and subscribes.
func startGossipNode(t *testing.T, ctx context.Context, url, topic string) *gossipNode {
	t.Helper()
	n, err := New(ctx, WithIdentity(newIdentity(t)), WithRendezvous(url),
		WithLoopbackCandidates(), WithCandidateFilter(func(ip net.IP) bool { return ip.IsLoopback() }))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = n.Close() })
	if _, err := n.StartDiscovery(ctx, DiscoveryOptions{Refresh: 200 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	top, err := n.Join(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	sub, err := top.Subscribe()
	if err != nil {
		t.Fatal(err)
	}
	return &gossipNode{n: n, top: top, sub: sub}
}

// dhtURL starts a rendezvous server with a DHT node.
func dhtURL(t *testing.T) string {
	t.Helper()
	_, url := rvtest.Start(t, rendezvous.Config{DHTIdentity: newIdentity(t)})
	return url
}

// expectMessages reads want messages from sub, from the origins in per
// (count each), and checks each arrives once and in order per origin.
func expectMessages(t *testing.T, ctx context.Context, name string, sub *Subscription, per map[PeerID]int) {
	t.Helper()
	want := 0
	for _, c := range per {
		want += c
	}
	next := map[PeerID]int{}
	last := map[PeerID]uint64{}
	for got := 0; got < want; got++ {
		m, err := sub.Next(ctx)
		if err != nil {
			t.Fatalf("%s: %d of %d messages, then %v (per origin %v)", name, got, want, err, next)
		}
		c, ok := per[m.Origin]
		if !ok {
			t.Fatalf("%s: message from unexpected origin %s", name, m.Origin.Short())
		}
		if l, seen := last[m.Origin]; seen && m.Seq <= l {
			t.Fatalf("%s: seq %d after %d from %s", name, m.Seq, l, m.Origin.Short())
		}
		last[m.Origin] = m.Seq
		if want := fmt.Sprintf("%s-%d", m.Origin.Short(), next[m.Origin]); string(m.Data) != want {
			t.Fatalf("%s: got %q, want %q", name, m.Data, want)
		}
		next[m.Origin]++
		if next[m.Origin] > c {
			t.Fatalf("%s: more than %d messages from %s", name, c, m.Origin.Short())
		}
	}
}

// TestTopicPublishSubscribe: four nodes that found each other through a
// topic gossip over Ferry streams; every subscriber gets every message of
// the other origins once, in order; a node that leaves is routed around.
func TestTopicPublishSubscribe(t *testing.T) {
	testutil.CheckLeaks(t)
	defer testutil.Deadline(t, 3*time.Minute)()
	url := dhtURL(t)
	ctx := ctxT(t, 150*time.Second)
	nodes := make([]*gossipNode, 4)
	for i := range nodes {
		nodes[i] = startGossipNode(t, ctx, url, "chat")
	}
	testutil.WaitFor(t, 90*time.Second, "every node has a gossip neighbour for each other node", func() bool {
		for _, g := range nodes {
			if len(g.top.GossipNeighbours()) < len(nodes)-1 {
				return false
			}
		}
		return true
	})
	const per = 50
	pubs := nodes[:2]
	for i := range per {
		for _, p := range pubs {
			if err := p.top.Publish(ctx, fmt.Appendf(nil, "%s-%d", p.n.PeerID().Short(), i)); err != nil {
				t.Fatal(err)
			}
		}
	}
	for i, g := range nodes {
		want := map[PeerID]int{}
		for _, p := range pubs {
			if p != g {
				want[p.n.PeerID()] = per
			}
		}
		expectMessages(t, ctx, fmt.Sprintf("node %d", i), g.sub, want)
	}
	if m := nodes[3].n.GossipMetrics(); m.Delivered != 2*per || m.Forged+m.Stale+m.Malformed+m.Oversized+m.Flood != 0 {
		t.Fatalf("node 3 metrics: %+v", m)
	}

	// Node 1 goes away abruptly: the others notice, and publishing goes on.
	_ = nodes[1].n.Close()
	gone := nodes[1].n.PeerID()
	testutil.WaitFor(t, 60*time.Second, "the gone node left every mesh", func() bool {
		for _, g := range []*gossipNode{nodes[0], nodes[2], nodes[3]} {
			for _, p := range g.top.GossipNeighbours() {
				if p == gone {
					return false
				}
			}
		}
		return true
	})
	for i := range per {
		if err := nodes[0].top.Publish(ctx, fmt.Appendf(nil, "%s-%d", nodes[0].n.PeerID().Short(), per+i)); err != nil {
			t.Fatal(err)
		}
	}
	for _, i := range []int{2, 3} {
		readAfter(t, ctx, fmt.Sprintf("node %d after the leave", i), nodes[i].sub, nodes[0].n.PeerID(), per, per)
	}

	// Closing the subscription ends its channel; Publish on a closed topic
	// fails.
	_ = nodes[2].sub.Close()
	if _, err := nodes[2].sub.Next(ctx); !errors.Is(err, ErrClosed) {
		t.Fatalf("Next after Close: %v", err)
	}
	_ = nodes[2].top.Close()
	if err := nodes[2].top.Publish(ctx, []byte("x")); !errors.Is(err, ErrClosed) {
		t.Fatalf("Publish after Topic.Close: %v", err)
	}
	if _, err := nodes[2].top.Subscribe(); !errors.Is(err, ErrClosed) {
		t.Fatalf("Subscribe after Topic.Close: %v", err)
	}
}

// readAfter reads count messages from origin, numbered from first on.
func readAfter(t *testing.T, ctx context.Context, name string, sub *Subscription, origin PeerID, first, count int) {
	t.Helper()
	for k := range count {
		m, err := sub.Next(ctx)
		if err != nil {
			t.Fatalf("%s: %d of %d messages, then %v", name, k, count, err)
		}
		if want := fmt.Sprintf("%s-%d", origin.Short(), first+k); m.Origin != origin || string(m.Data) != want {
			t.Fatalf("%s: got %q from %s, want %q", name, m.Data, m.Origin.Short(), want)
		}
	}
}

// TestPublishBadInput: oversized data and a node that is closed.
func TestPublishBadInput(t *testing.T) {
	testutil.CheckLeaks(t)
	defer testutil.Deadline(t, time.Minute)()
	url := dhtURL(t)
	ctx := ctxT(t, 40*time.Second)
	g := startGossipNode(t, ctx, url, "big")
	// Options: after the gossip started (Subscribe), and bad values.
	if err := g.n.SetGossipOptions(GossipOptions{GapWait: time.Second}); !errors.Is(err, ErrGossipStarted) {
		t.Fatalf("SetGossipOptions after Subscribe: %v", err)
	}
	for _, o := range []GossipOptions{{GapWait: -1}, {MaxHeld: -1}, {MaxHeld: 1 << 21}} {
		if err := g.n.SetGossipOptions(o); err == nil || errors.Is(err, ErrGossipStarted) {
			t.Errorf("SetGossipOptions(%+v): %v", o, err)
		}
	}
	if err := g.top.Publish(ctx, make([]byte, 4097)); err == nil {
		t.Fatal("published 4097 bytes")
	}
	if err := g.top.Publish(ctx, make([]byte, 4096)); err != nil {
		t.Fatalf("4096 bytes: %v", err)
	}
	_ = g.n.Close()
	if err := g.top.Publish(ctx, []byte("x")); !errors.Is(err, ErrClosed) {
		t.Fatalf("Publish after the node closed: %v", err)
	}
	if _, ok := <-g.sub.Messages(); ok {
		t.Fatal("subscription open after the node closed")
	}
}

// writeGossipFrame writes f on a gossip stream, length-prefixed.
func writeGossipFrame(t *testing.T, c net.Conn, f gossip.Frame) {
	t.Helper()
	b, err := f.Append(make([]byte, 4, 4+f.Len()))
	if err != nil {
		t.Fatal(err)
	}
	binary.BigEndian.PutUint32(b, uint32(len(b)-4))
	if _, err := c.Write(b); err != nil {
		t.Fatal(err)
	}
}

// TestGossipBadNeighbour: nodes that speak the gossip wire themselves
// send an honest node forged, replayed and oversized messages and a flood.
// Each is dropped and counted in GossipMetrics; a forger's second forgery
// and the flood get their senders pruned; the honest nodes' messages still
// reach everyone, once, and the bad messages reach no one.
func TestGossipBadNeighbour(t *testing.T) {
	testutil.CheckLeaks(t)
	defer testutil.Deadline(t, 3*time.Minute)()
	url := dhtURL(t)
	ctx := ctxT(t, 150*time.Second)
	honest := make([]*gossipNode, 3)
	for i := range honest {
		honest[i] = startGossipNode(t, ctx, url, "room")
	}
	testutil.WaitFor(t, 90*time.Second, "the honest nodes are each other's neighbours", func() bool {
		for _, g := range honest {
			if len(g.top.GossipNeighbours()) < len(honest)-1 {
				return false
			}
		}
		return true
	})
	victim := honest[0]
	// Each bad node runs no gossip of its own: it writes frames on a
	// gossip stream to the victim. One per offence, since penalties add
	// up per sender.
	type badNode struct {
		key *Identity
		n   *Node
		s   net.Conn
	}
	newBad := func() *badNode {
		key := newIdentity(t)
		n, err := New(ctx, WithIdentity(key), WithRendezvous(url),
			WithLoopbackCandidates(), WithCandidateFilter(func(ip net.IP) bool { return ip.IsLoopback() }))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = n.Close() })
		s, err := n.DialStream(ctx, victim.n.PeerID(), GossipProtocol)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Close() })
		writeGossipFrame(t, s, gossip.Frame{Type: gossip.TypeJoin, Topic: "room"})
		return &badNode{key: key, n: n, s: s}
	}
	const first = 1000
	// An honest message first from each: delivered, which proves the
	// stream works.
	forger, replayer, bloater, flooder := newBad(), newBad(), newBad(), newBad()
	for _, b := range []*badNode{forger, replayer, bloater, flooder} {
		writeGossipFrame(t, b.s, gossip.SignedMsg(b.key, "room", first, first, []byte("honest")))
	}
	bads := map[PeerID]bool{forger.n.PeerID(): true, replayer.n.PeerID(): true, bloater.n.PeerID(): true, flooder.n.PeerID(): true}
	// Forged: the signature is over other data.
	f := gossip.SignedMsg(forger.key, "room", first, first+1, []byte("signed"))
	f.Msg.Data = []byte("forged")
	writeGossipFrame(t, forger.s, f)
	// Replayed: far below the highest sequence number seen.
	writeGossipFrame(t, replayer.s, gossip.SignedMsg(replayer.key, "room", first, first+5000, []byte("jump")))
	writeGossipFrame(t, replayer.s, gossip.SignedMsg(replayer.key, "room", first, first, []byte("honest")))
	// Oversized: 4097 bytes of data, validly signed.
	writeGossipFrame(t, bloater.s, gossip.SignedMsg(bloater.key, "room", first, first+1, make([]byte, 4097)))
	testutil.WaitFor(t, 30*time.Second, "forged, stale and oversized counted", func() bool {
		m := victim.n.GossipMetrics()
		return m.Forged >= 1 && m.Stale >= 1 && m.Oversized >= 1
	})
	if m := victim.n.GossipMetrics(); m.Pruned != 0 {
		t.Fatalf("pruned after one offence each: %+v", m)
	}
	// Two more forgeries (another key's signature) bring the forger under
	// the pruning score (it recovers a point a second).
	for k := range 2 {
		f = gossip.SignedMsg(newIdentity(t), "room", first, first+2+uint64(k), []byte("other key"))
		f.Msg.PublicKey = forger.key.PublicKey()
		writeGossipFrame(t, forger.s, f)
	}
	testutil.WaitFor(t, 30*time.Second, "the forger pruned", func() bool {
		m := victim.n.GossipMetrics()
		return m.Forged >= 3 && m.Pruned >= 1
	})
	// A flood: many more frames than the burst the victim takes from one
	// peer in a second.
	ihave := gossip.Frame{Type: gossip.TypeIHave, Topic: "room", IHave: []gossip.Announce{{ID: gossip.MsgID{Origin: flooder.key.PeerID(), Seq: first}}}}
	frame, err := ihave.Append(make([]byte, 4, 4+ihave.Len()))
	if err != nil {
		t.Fatal(err)
	}
	binary.BigEndian.PutUint32(frame, uint32(len(frame)-4))
	burst := make([]byte, 0, len(frame)*1000)
	for range 1000 {
		burst = append(burst, frame...)
	}
	for range 3 * gossip.DefaultBurst / 1000 {
		if _, err := flooder.s.Write(burst); err != nil {
			break // the victim may cut the stream once it pruned us
		}
	}
	testutil.WaitFor(t, 60*time.Second, "the flood counted and the flooder pruned", func() bool {
		m := victim.n.GossipMetrics()
		return m.Flood > 0 && m.Pruned >= 2
	})
	m := victim.n.GossipMetrics()
	t.Logf("victim metrics: forged %d, stale %d, oversized %d, flood %d, pruned %d, blocked %d",
		m.Forged, m.Stale, m.Oversized, m.Flood, m.Pruned, m.Blocked)
	for _, p := range victim.top.GossipNeighbours() {
		if p == forger.n.PeerID() || p == flooder.n.PeerID() {
			t.Fatalf("pruned node %s is still a neighbour", p.Short())
		}
	}

	// The rest of the mesh is unaffected: every honest message reaches
	// every other honest node once, in order, and of the bad node's only
	// the two honest ones ("honest", then "jump") arrived.
	const per = 30
	for i := range per {
		for _, p := range honest {
			if err := p.top.Publish(ctx, fmt.Appendf(nil, "%s-%d", p.n.PeerID().Short(), i)); err != nil {
				t.Fatal(err)
			}
		}
	}
	for i, g := range honest {
		want := map[PeerID]int{}
		for _, p := range honest {
			if p != g {
				want[p.n.PeerID()] = per
			}
		}
		var fromBad []string
		got := 0
		for got < 2*per {
			m, err := g.sub.Next(ctx)
			if err != nil {
				t.Fatalf("node %d: %d of %d, then %v", i, got, 2*per, err)
			}
			if bads[m.Origin] {
				fromBad = append(fromBad, string(m.Data))
				continue
			}
			if _, ok := want[m.Origin]; !ok {
				t.Fatalf("node %d: message from %s", i, m.Origin.Short())
			}
			got++
		}
		for _, d := range fromBad {
			if d != "honest" && d != "jump" {
				t.Errorf("node %d: delivered the bad node's %q", i, d)
			}
		}
		if gm := g.n.GossipMetrics(); i > 0 && gm.Forged+gm.Oversized+gm.Flood != 0 {
			t.Errorf("node %d (not the victim) saw bad input: %+v", i, gm)
		}
	}
}

// shortGossipTimers makes the gossip started during t reap idle
// connections after idle, looking every reap.
func shortGossipTimers(t *testing.T, idle, reap time.Duration) {
	t.Helper()
	oldIdle, oldReap := gossipIdle, gossipReap
	gossipIdle, gossipReap = idle, reap
	t.Cleanup(func() { gossipIdle, gossipReap = oldIdle, oldReap })
}

// TestGossipConnsReaped: when a node leaves a topic (its node stays up),
// the connections dialed for gossip to and from it are closed once idle;
// the other two keep theirs and still gossip.
func TestGossipConnsReaped(t *testing.T) {
	testutil.CheckLeaks(t)
	defer testutil.Deadline(t, 2*time.Minute)()
	shortGossipTimers(t, 300*time.Millisecond, 100*time.Millisecond)
	url := dhtURL(t)
	ctx := ctxT(t, 100*time.Second)
	nodes := make([]*gossipNode, 3)
	for i := range nodes {
		nodes[i] = startGossipNode(t, ctx, url, "reap")
	}
	testutil.WaitFor(t, 60*time.Second, "a full mesh", func() bool {
		for _, g := range nodes {
			if len(g.top.GossipNeighbours()) < 2 {
				return false
			}
		}
		return true
	})
	leaver := nodes[2]
	_ = leaver.top.Close()
	gone := leaver.n.PeerID()
	testutil.WaitFor(t, 30*time.Second, "no connection to the node that left", func() bool {
		return nodes[0].n.existingConn(gone) == nil && nodes[1].n.existingConn(gone) == nil
	})
	// The two members still gossip (over a connection of theirs, which
	// the reaper leaves alone while they are neighbours).
	testutil.WaitFor(t, 30*time.Second, "the members neighbours and connected", func() bool {
		return len(nodes[0].top.GossipNeighbours()) == 1 && nodes[0].n.existingConn(nodes[1].n.PeerID()) != nil
	})
	if err := nodes[0].top.Publish(ctx, []byte("still here")); err != nil {
		t.Fatal(err)
	}
	if m, err := nodes[1].sub.Next(ctx); err != nil || string(m.Data) != "still here" {
		t.Fatalf("after the leave: %q, %v", m.Data, err)
	}
}
