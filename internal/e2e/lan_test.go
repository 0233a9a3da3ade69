package e2e

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/ferrynet/ferry/internal/natlab"
	"github.com/ferrynet/ferry/internal/natlab/natlabtest"
	"github.com/ferrynet/ferry/internal/nattype"
	"github.com/ferrynet/ferry/internal/testutil"
	"github.com/ferrynet/ferry/sdk"
)

// lanNode starts a node inside h's namespace (its LAN and mDNS sockets are
// opened there) with opts; no rendezvous unless opts name one.
func lanNode(t *testing.T, ctx context.Context, h *natlab.Host, opts ...sdk.NodeOption) *sdk.Node {
	t.Helper()
	var n *sdk.Node
	if err := h.Do(func() error {
		var err error
		n, err = sdk.New(ctx, opts...)
		return err
	}); err != nil {
		t.Fatalf("%v: %v", h, err)
	}
	t.Cleanup(func() { _ = n.Close() })
	return n
}

func findsOnLAN(n *sdk.Node, peer sdk.PeerID) bool {
	return slices.ContainsFunc(n.LANPeers(), func(p sdk.LANPeer) bool { return p.ID == peer })
}

// dialLAN dials b from a, checks b accepts it, that the session runs
// between their LAN addresses with no ICE, and exchanges data.
func dialLAN(t *testing.T, ctx context.Context, a, b *sdk.Node, hb *natlab.Host) {
	t.Helper()
	ca, cb := dialAccepted(ctx, t, a, b, "dial over the LAN")
	defer ca.Close()
	defer cb.Close()
	p := ca.Path()
	remote, err := netip.ParseAddrPort(p.RemoteAddr)
	if err != nil || remote.Addr() != hb.Addr() || p.Relayed || p.LocalCandidate != "" {
		t.Errorf("path %+v: want a direct session to %v with no ICE", p, hb.Addr())
	}
	if err := exchange(ctx, ca, cb, 256<<10); err != nil {
		t.Errorf("exchange: %v", err)
	}
}

// TestLANNoServer: two nodes of one lab LAN, with no rendezvous and no
// relay, find each other by mDNS and connect directly; a node on another
// LAN neither finds them nor is found, and cannot dial them.
func TestLANNoServer(t *testing.T) {
	testutil.CheckLeaks(t)
	defer testutil.Deadline(t, 3*time.Minute)()
	lab := natlabtest.New(t, natlab.Config{Sites: []natlab.SiteConfig{
		{Name: "lan", NAT: nattype.PortRestrictedCone, Hosts: 2},
		{Name: "far", NAT: nattype.PortRestrictedCone, Hosts: 1},
	}})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	lan, far := lab.Site("lan"), lab.Site("far")
	a := lanNode(t, ctx, lan.Host(0))
	b := lanNode(t, ctx, lan.Host(1))
	c := lanNode(t, ctx, far.Host(0))
	testutil.WaitFor(t, time.Minute, "the LAN nodes find each other", func() bool {
		return findsOnLAN(a, b.PeerID()) && findsOnLAN(b, a.PeerID())
	})
	dialLAN(t, ctx, a, b, lan.Host(1))

	if findsOnLAN(a, c.PeerID()) || findsOnLAN(b, c.PeerID()) || len(c.LANPeers()) != 0 {
		t.Errorf("mDNS crossed LANs: a %v, b %v, c %v", a.LANPeers(), b.LANPeers(), c.LANPeers())
	}
	dctx, dcancel := context.WithTimeout(ctx, 20*time.Second)
	defer dcancel()
	if _, err := c.Dial(dctx, a.PeerID()); !errors.Is(err, sdk.ErrPeerNotFound) {
		t.Errorf("far node dials a LAN node: err %v, want ErrPeerNotFound", err)
	}
}

// TestLANPreferred: nodes logged in to a rendezvous, with LAN discovery
// on, dial each other at their LAN address rather than through ICE.
func TestLANPreferred(t *testing.T) {
	testutil.CheckLeaks(t)
	defer testutil.Deadline(t, 3*time.Minute)()
	lab := natlabtest.New(t, natlab.Config{Sites: []natlab.SiteConfig{
		{Name: "lan", NAT: nattype.PortRestrictedCone, Hosts: 2},
	}})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	w := newWorld(t, lab)
	lan := lab.Site("lan")
	node := func(h *natlab.Host) *sdk.Node {
		var n *sdk.Node
		if err := h.Do(func() error {
			var err error
			n, err = w.Node(ctx, h, sdk.WithLAN(true))
			return err
		}); err != nil {
			t.Fatalf("%v: %v", h, err)
		}
		t.Cleanup(func() { _ = n.Close() })
		return n
	}
	a, b := node(lan.Host(0)), node(lan.Host(1))
	testutil.WaitFor(t, time.Minute, "a finds b on the LAN", func() bool { return findsOnLAN(a, b.PeerID()) })
	dialLAN(t, ctx, a, b, lan.Host(1))
}

// BenchmarkLANFind measures, on one lab LAN with no server, the time from
// starting two nodes to each listing the other (lan-find-ms), and from
// Dial to connected (lan-dial-ms).
func BenchmarkLANFind(b *testing.B) {
	lab := natlabtest.New(b, natlab.Config{Sites: []natlab.SiteConfig{
		{Name: "lan", NAT: nattype.PortRestrictedCone, Hosts: 2},
	}})
	lan := lab.Site("lan")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	start := func(h *natlab.Host) *sdk.Node {
		var n *sdk.Node
		if err := h.Do(func() error {
			var err error
			n, err = sdk.New(ctx)
			return err
		}); err != nil {
			b.Fatal(err)
		}
		return n
	}
	var find, dial time.Duration
	for b.Loop() {
		t0 := time.Now()
		na, nb := start(lan.Host(0)), start(lan.Host(1))
		if !testutil.Poll(time.Minute, func() bool { return findsOnLAN(na, nb.PeerID()) && findsOnLAN(nb, na.PeerID()) }) {
			b.Fatal("the LAN nodes do not find each other")
		}
		find += time.Since(t0)
		t1 := time.Now()
		c, err := na.Dial(ctx, nb.PeerID())
		if err != nil {
			b.Fatal(err)
		}
		dial += time.Since(t1)
		_ = c.Close()
		_ = na.Close()
		_ = nb.Close()
	}
	b.ReportMetric(float64(find.Microseconds())/1000/float64(b.N), "lan-find-ms")
	b.ReportMetric(float64(dial.Microseconds())/1000/float64(b.N), "lan-dial-ms")
}
