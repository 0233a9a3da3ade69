package sdk

import (
	"context"
	"errors"
	"fmt"
	"net"
	"testing"
	"time"

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
