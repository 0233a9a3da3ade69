package streams_test

import (
	"context"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/ferrynet/ferry/gossip"
	"github.com/ferrynet/ferry/gossip/streams"
	"github.com/ferrynet/ferry/identity"
	"github.com/ferrynet/ferry/internal/rvtest"
	"github.com/ferrynet/ferry/internal/testutil"
	"github.com/ferrynet/ferry/sdk"
)

// TestSDKNodes runs gossip between real sdk nodes on loopback, over
// streams of protocol ferry/gossip/1.
func TestSDKNodes(t *testing.T) {
	testutil.CheckLeaks(t)
	defer testutil.Deadline(t, 2*time.Minute)()
	url := rvtest.URL(t)
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	const n = 3
	type gnode struct {
		top *gossip.Topic
		sub <-chan gossip.Message
		id  identity.PeerID
	}
	nodes := make([]gnode, n)
	for i := range nodes {
		key, err := identity.Generate()
		if err != nil {
			t.Fatal(err)
		}
		// The router signs with the node's own identity.
		node, err := sdk.New(ctx, sdk.WithIdentity(key), sdk.WithRendezvous(url), sdk.WithLoopbackCandidates(),
			sdk.WithCandidateFilter(func(ip net.IP) bool { return ip.IsLoopback() }))
		if err != nil {
			t.Fatal(err)
		}
		tr := streams.New(func(ctx context.Context, p identity.PeerID) (net.Conn, error) {
			return node.DialStream(ctx, p, streams.Protocol)
		})
		l, err := node.Listen(streams.Protocol)
		if err != nil {
			t.Fatal(err)
		}
		r, err := gossip.New(key, tr)
		if err != nil {
			t.Fatal(err)
		}
		tr.Attach(r)
		served := make(chan struct{})
		go func() {
			defer close(served)
			_ = tr.Serve(l, func(c net.Conn) (identity.PeerID, error) {
				a, ok := c.RemoteAddr().(sdk.Addr)
				if !ok {
					return identity.PeerID{}, fmt.Errorf("remote address %T", c.RemoteAddr())
				}
				return a.Peer, nil
			})
		}()
		t.Cleanup(func() {
			_ = r.Close()
			_ = tr.Close()
			_ = node.Close()
			<-served
		})
		top, err := r.Join("t")
		if err != nil {
			t.Fatal(err)
		}
		sub, _ := top.Subscribe()
		if node.PeerID() != r.ID() {
			t.Fatal("node and router identities differ")
		}
		nodes[i] = gnode{top: top, sub: sub, id: node.PeerID()}
	}
	for i, g := range nodes {
		for j, o := range nodes {
			if i != j {
				g.top.AddPeers(o.id)
			}
		}
	}
	testutil.WaitFor(t, 60*time.Second, "every node has two neighbours", func() bool {
		for _, g := range nodes {
			if e, l := g.top.Neighbours(); len(e)+len(l) < n-1 {
				return false
			}
		}
		return true
	})
	const per = 20
	for i := range per {
		if err := nodes[0].top.Publish(ctx, fmt.Appendf(nil, "%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	for i, g := range nodes[1:] {
		var last uint64
		for k := range per {
			select {
			case m := <-g.sub:
				if k > 0 && m.Seq != last+1 {
					t.Errorf("node %d: seq %d after %d", i+1, m.Seq, last)
				}
				last = m.Seq
			case <-ctx.Done():
				t.Fatalf("node %d: %d of %d messages", i+1, k, per)
			}
		}
	}
}
