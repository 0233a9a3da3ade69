package gossip

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/ferrynet/ferry/identity"
)

func mesh(t *testing.T, n int, opts ...Option) (*testNet, []*testNode) {
	t.Helper()
	net := newTestNet(t)
	nodes := make([]*testNode, n)
	for i := range nodes {
		nodes[i] = net.add(opts...)
		net.run(50 * time.Millisecond)
	}
	net.run(time.Second)
	return net, nodes
}

// checkAll asserts that every node but the publishers' own got want
// messages per origin, each once, in sequence order.
func checkAll(t *testing.T, nodes []*testNode, pubs []*testNode, per int) {
	t.Helper()
	for i, n := range nodes {
		byOrigin := map[identity.PeerID][]uint64{}
		for _, m := range n.got {
			byOrigin[m.Origin] = append(byOrigin[m.Origin], m.Seq)
		}
		for _, p := range pubs {
			seqs := byOrigin[p.key.PeerID()]
			want := per
			if p == n {
				want = 0
			}
			if len(seqs) != want {
				t.Errorf("node %d got %d messages from %s, want %d", i, len(seqs), p.key.PeerID().Short(), want)
				continue
			}
			for j := 1; j < len(seqs); j++ {
				if seqs[j] != seqs[j-1]+1 {
					t.Errorf("node %d: from %s seq %d after %d", i, p.key.PeerID().Short(), seqs[j], seqs[j-1])
				}
			}
		}
	}
}

func TestDeliveryOnceInOrder(t *testing.T) {
	net, nodes := mesh(t, 12)
	pubs := nodes[:3]
	for i := range 100 {
		for _, p := range pubs {
			if err := p.top.Publish(context.Background(), fmt.Appendf(nil, "m%d", i)); err != nil {
				t.Fatal(err)
			}
		}
		net.run(5 * time.Millisecond)
	}
	net.run(10 * time.Second)
	checkAll(t, nodes, pubs, 100)
	var dups, delivered uint64
	for _, n := range nodes {
		m := n.r.Metrics()
		dups += m.MsgsReceived
		delivered += m.Delivered
	}
	if ratio := float64(dups) / float64(delivered); ratio > 3 {
		t.Errorf("%.2f copies per delivery, want at most 3", ratio)
	}
}

func TestSubscribeChannel(t *testing.T) {
	net, nodes := mesh(t, 4)
	ch, cancel := nodes[3].top.Subscribe()
	if err := nodes[0].top.Publish(context.Background(), []byte("hello")); err != nil {
		t.Fatal(err)
	}
	net.run(2 * time.Second)
	select {
	case m := <-ch:
		if string(m.Data) != "hello" || m.Origin != nodes[0].key.PeerID() || m.Topic != "t" {
			t.Errorf("got %+v", m)
		}
	default:
		t.Fatal("no message on the channel")
	}
	cancel()
	cancel()
	if _, ok := <-ch; ok {
		t.Error("channel not closed by cancel")
	}
}

func TestMeshRepairAfterLeave(t *testing.T) {
	net, nodes := mesh(t, 10)
	// Half the nodes but the publisher leave without a word.
	for _, n := range nodes[5:] {
		n.down = true
		for _, o := range nodes[:5] {
			o.r.PeerDown(n.key.PeerID())
		}
	}
	net.run(2 * time.Second)
	for i, n := range nodes[:5] {
		e, l := n.top.Neighbours()
		if len(e)+len(l) == 0 {
			t.Errorf("node %d has no neighbour left", i)
		}
	}
	for range 20 {
		if err := nodes[0].top.Publish(context.Background(), []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	net.run(5 * time.Second)
	checkAll(t, nodes[:5], nodes[:1], 20)
}

func TestPublishErrors(t *testing.T) {
	_, nodes := mesh(t, 1)
	top := nodes[0].top
	if err := top.Publish(context.Background(), make([]byte, DefaultMaxData+1)); !errors.Is(err, ErrTooLarge) {
		t.Errorf("oversized publish: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := top.Publish(ctx, nil); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled publish: %v", err)
	}
	for _, name := range []string{"", string(make([]byte, MaxTopicLen+1))} {
		if _, err := nodes[0].r.Join(name); !errors.Is(err, ErrBadTopic) {
			t.Errorf("Join(%d bytes): %v", len(name), err)
		}
	}
	if err := nodes[0].r.Close(); err != nil {
		t.Fatal(err)
	}
	if err := nodes[0].r.Close(); err != nil {
		t.Fatal(err)
	}
	if err := top.Publish(context.Background(), nil); !errors.Is(err, ErrClosed) {
		t.Errorf("publish after close: %v", err)
	}
	if _, err := New(nil, nil); err == nil {
		t.Error("New(nil, nil) succeeded")
	}
	if _, err := New(testKey(t, 9), testTransport{}, WithMaxData(0)); err == nil {
		t.Error("WithMaxData(0) accepted")
	}
}

// attack sets up a mesh and an attacker peer that talks to node 0 with
// raw frames; it returns a function that checks that the honest mesh still
// delivers.
func attack(t *testing.T, opts ...Option) (net *testNet, nodes []*testNode, attacker identity.PeerID, hit func(b []byte), stillWorks func()) {
	t.Helper()
	net, nodes = mesh(t, 6, opts...)
	attacker = testKey(t, 999).PeerID()
	hit = func(b []byte) { nodes[0].r.HandleFrame(attacker, b) }
	stillWorks = func() {
		t.Helper()
		before := make([]int, len(nodes))
		for i, n := range nodes {
			before[i] = len(n.got)
		}
		if err := nodes[1].top.Publish(context.Background(), []byte("after")); err != nil {
			t.Fatal(err)
		}
		net.run(3 * time.Second)
		for i, n := range nodes {
			if i != 1 && len(n.got) != before[i]+1 {
				t.Errorf("node %d got %d messages after the attack, want 1", i, len(n.got)-before[i])
			}
		}
	}
	return net, nodes, attacker, hit, stillWorks
}

func TestForgedDropped(t *testing.T) {
	net, nodes, attacker, hit, stillWorks := attack(t)
	victim := testKey(t, 500)
	b := signed(t, victim, 10, 10, []byte("real"))
	b[len(b)-1] ^= 1 // break the signature
	hit(b)
	net.run(time.Second)
	m := nodes[0].r.Metrics()
	if m.Forged != 1 || m.Delivered != 0 {
		t.Fatalf("forged %d, delivered %d; want 1, 0", m.Forged, m.Delivered)
	}
	for i, n := range nodes {
		if len(n.got) != 0 {
			t.Errorf("node %d delivered the forged message", i)
		}
	}
	// Two more forgeries cross the prune threshold (the score recovered
	// a point meanwhile): the attacker is ignored from then on, even with
	// a valid message.
	hit(b)
	hit(b)
	hit(signed(t, victim, 11, 11, []byte("valid")))
	m = nodes[0].r.Metrics()
	if m.Forged != 3 || m.Pruned != 1 || m.Blocked != 1 {
		t.Errorf("forged %d, pruned %d, blocked %d; want 3, 1, 1", m.Forged, m.Pruned, m.Blocked)
	}
	e, l := nodes[0].top.Neighbours()
	for _, p := range append(e, l...) {
		if p == attacker {
			t.Error("attacker still in the mesh")
		}
	}
	stillWorks()
}

func TestReplayDropped(t *testing.T) {
	net, nodes, _, hit, stillWorks := attack(t)
	origin := testKey(t, 501)
	first := signed(t, origin, 1, 1, []byte("one"))
	hit(first)
	net.run(time.Second)
	for i, n := range nodes {
		if len(n.got) != 1 {
			t.Fatalf("node %d got %d messages, want 1", i, len(n.got))
		}
	}
	// Within the window a replay is a duplicate: not delivered again.
	hit(first)
	if m := nodes[0].r.Metrics(); m.Duplicates != 1 || m.Delivered != 1 {
		t.Errorf("duplicates %d, delivered %d; want 1, 1", m.Duplicates, m.Delivered)
	}
	// Past the window (the origin went on), a replay is stale.
	hit(signed(t, origin, 1, 1+DefaultSeenWindow, []byte("later")))
	net.run(DefaultGapWait + time.Second) // it waits for the gap before it
	hit(first)
	net.run(time.Second)
	m := nodes[0].r.Metrics()
	if m.Stale != 1 {
		t.Errorf("stale %d, want 1", m.Stale)
	}
	for i, n := range nodes {
		if len(n.got) != 2 {
			t.Errorf("node %d got %d messages, want 2", i, len(n.got))
		}
	}
	stillWorks()
}

func TestOversizedDropped(t *testing.T) {
	net, nodes, _, hit, stillWorks := attack(t)
	hit(signed(t, testKey(t, 502), 1, 1, make([]byte, DefaultMaxData+1)))
	net.run(time.Second)
	if m := nodes[0].r.Metrics(); m.Oversized != 1 || m.Delivered != 0 {
		t.Errorf("oversized %d, delivered %d; want 1, 0", m.Oversized, m.Delivered)
	}
	for i, n := range nodes {
		if len(n.got) != 0 {
			t.Errorf("node %d delivered the oversized message", i)
		}
	}
	stillWorks()
}

func TestMalformedDropped(t *testing.T) {
	net, nodes, _, hit, stillWorks := attack(t)
	for _, b := range [][]byte{nil, {1}, {9, 1, 1, 't'}, {1, 99, 1, 't'}, {1, 1, 1, 't', 0}} {
		hit(b)
	}
	net.run(time.Second)
	// Two cross the prune threshold; the rest are ignored unread.
	if m := nodes[0].r.Metrics(); m.Malformed != 2 || m.Pruned != 1 || m.Blocked != 3 {
		t.Errorf("malformed %d, pruned %d, blocked %d; want 2, 1, 3", m.Malformed, m.Pruned, m.Blocked)
	}
	stillWorks()
}

func TestFloodDropped(t *testing.T) {
	const burst = 100
	net, nodes, _, hit, stillWorks := attack(t, WithRate(50, burst))
	origin := testKey(t, 503)
	// Valid, distinct messages, far over the rate: the burst passes (and
	// is forwarded, as it is valid), the rest is dropped and scores the
	// flooder down until it is pruned.
	for i := range burst + 500 {
		hit(signed(t, origin, 1, uint64(i+1), []byte("flood")))
	}
	m := nodes[0].r.Metrics()
	if m.Flood == 0 || m.Pruned != 1 || m.Flood+m.Blocked != 500 {
		t.Errorf("flood %d, blocked %d, pruned %d; want flood+blocked 500, pruned 1", m.Flood, m.Blocked, m.Pruned)
	}
	net.run(5 * time.Second)
	stillWorks()
}

func TestGapOrder(t *testing.T) {
	net := newTestNet(t)
	a := net.add()
	origin := testKey(t, 504)
	from := testKey(t, 505).PeerID()
	// 3 before 2: 3 waits for 2.
	for _, s := range []uint64{1, 3, 2} {
		a.r.HandleFrame(from, signed(t, origin, 1, s, nil))
	}
	// 5 waits for 4, which does not come in time: 5 is delivered after
	// the gap wait, and 4, coming later, is dropped as late.
	a.r.HandleFrame(from, signed(t, origin, 1, 5, nil))
	if len(a.got) != 3 {
		t.Fatalf("delivered %d before the gap wait, want 3", len(a.got))
	}
	net.run(DefaultGapWait + time.Second)
	a.r.HandleFrame(from, signed(t, origin, 1, 4, nil))
	var seqs []uint64
	for _, m := range a.got {
		seqs = append(seqs, m.Seq)
	}
	if fmt.Sprint(seqs) != "[1 2 3 5]" {
		t.Errorf("delivered %v, want [1 2 3 5]", seqs)
	}
	if m := a.r.Metrics(); m.Late != 1 || m.GapsSkipped != 1 {
		t.Errorf("late %d, gaps skipped %d; want 1, 1", m.Late, m.GapsSkipped)
	}
	// A new run of the origin (higher First) starts over.
	a.r.HandleFrame(from, signed(t, origin, 100, 100, nil))
	if last := a.got[len(a.got)-1]; last.Seq != 100 {
		t.Errorf("new run: last delivered seq %d, want 100", last.Seq)
	}
}
