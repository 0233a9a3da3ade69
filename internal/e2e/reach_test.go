package e2e

import (
	"context"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferrynet/ferry/identity"
	"github.com/ferrynet/ferry/internal/natlab"
	"github.com/ferrynet/ferry/internal/natlab/labworld"
	"github.com/ferrynet/ferry/internal/natlab/natlabtest"
	"github.com/ferrynet/ferry/internal/nattype"
	"github.com/ferrynet/ferry/internal/testutil"
	"github.com/ferrynet/ferry/sdk"
	"github.com/ferrynet/ferry/server/rendezvous"
)

// RFC 5780 STUN ports of the reachability world's rendezvous, on both of
// the server host's addresses (3478 on the second address is the relay's).
const (
	reachSTUNPort1 = 3490
	reachSTUNPort2 = 3491
)

// newReachWorld starts the lab's servers with a rendezvous that runs a DHT
// node and serves RFC 5780 STUN (two addresses, two ports), which is what
// the nodes' reachability probe needs.
func newReachWorld(t testing.TB, lab *natlab.Lab) *labworld.World {
	t.Helper()
	srv := lab.Server()
	var conns []net.PacketConn
	for _, ap := range []netip.AddrPort{
		netip.AddrPortFrom(natlab.ServerAddr, reachSTUNPort1), netip.AddrPortFrom(natlab.ServerAddr, reachSTUNPort2),
		netip.AddrPortFrom(natlab.ServerAltAddr, reachSTUNPort1), netip.AddrPortFrom(natlab.ServerAltAddr, reachSTUNPort2),
	} {
		c, err := srv.ListenUDP("udp4", net.UDPAddrFromAddrPort(ap))
		if err != nil {
			for _, c := range conns {
				_ = c.Close()
			}
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	key, err := identity.Generate()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	w, err := labworld.New(ctx, lab, labLogger(), labworld.WithRendezvousConfig(func(c *rendezvous.Config) {
		// The world's single STUN socket is replaced by the four.
		for _, pc := range c.STUNConns {
			_ = pc.Close()
		}
		c.STUNConns = conns
		c.DHTIdentity = key
	}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := w.Close(); err != nil {
			t.Errorf("world close: %v", err)
		}
	})
	return w
}

// TestReachabilityDHTMode: in auto mode, a node on an open site and one
// behind a full cone become DHT servers, one behind a port-restricted cone
// stays a client; a third node (behind a symmetric NAT) finds the two
// server nodes and keeps them in its routing table, and its lookup gets
// an answer only a server node holds.
func TestReachabilityDHTMode(t *testing.T) {
	testutil.CheckLeaks(t)
	defer testutil.Deadline(t, 4*time.Minute)()
	lab := natlabtest.New(t, natlab.Config{Sites: []natlab.SiteConfig{
		{Name: "open", NAT: nattype.None},
		{Name: "fc", NAT: nattype.FullCone},
		{Name: "prc", NAT: nattype.PortRestrictedCone},
		{Name: "sym", NAT: nattype.Symmetric},
	}})
	w := newReachWorld(t, lab)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	type started struct {
		n    *sdk.Node
		d    *sdk.Discovery
		took time.Duration // StartDiscovery, the probe included
	}
	sites := []struct {
		name string
		want sdk.DHTMode
		why  string
	}{
		{"open", sdk.DHTServer, "no NAT"},
		{"fc", sdk.DHTServer, "endpoint-independent"},
		{"prc", sdk.DHTClient, "filtering"},
	}
	nodes := make([]started, len(sites))
	var wg sync.WaitGroup
	for i, s := range sites {
		wg.Go(func() {
			t0 := time.Now()
			n, d := reachNode(t, ctx, w, lab.Site(s.name).Host(0), sdk.DiscoveryOptions{})
			nodes[i] = started{n, d, time.Since(t0)}
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	for i, s := range sites {
		d := nodes[i].d
		t.Logf("%s: DHT %v (%s); StartDiscovery took %v", s.name, d.Mode(), d.ModeReason(), nodes[i].took.Round(time.Millisecond))
		if d.Mode() != s.want || !strings.Contains(d.ModeReason(), s.why) {
			t.Errorf("%s: DHT %v (%q), want %v with %q", s.name, d.Mode(), d.ModeReason(), s.want, s.why)
		}
	}
	servers := []sdk.PeerID{nodes[0].n.PeerID(), nodes[1].n.PeerID()}

	// The servers announce themselves in the background of their
	// StartDiscovery; only they do.
	testutil.WaitFor(t, time.Minute, "the server nodes' announcements", func() bool {
		lctx, lcancel := context.WithTimeout(ctx, 15*time.Second)
		defer lcancel()
		ps, err := nodes[2].d.Lookup(lctx, sdk.DHTServersTopic)
		var ids []sdk.PeerID
		for _, p := range ps {
			ids = append(ids, p.ID)
		}
		return err == nil && len(ids) == 2 && slices.Contains(ids, servers[0]) && slices.Contains(ids, servers[1])
	})
	// The third node, started once the servers announced themselves.
	_, third := reachNode(t, ctx, w, lab.Site("sym").Host(0), sdk.DiscoveryOptions{})
	if third.Mode() != sdk.DHTClient {
		t.Errorf("symmetric NAT: DHT %v (%s), want client", third.Mode(), third.ModeReason())
	}
	testutil.WaitFor(t, time.Minute, "the server nodes in the third node's routing table", func() bool {
		cs := third.Contacts()
		return slices.Contains(cs, servers[0]) && slices.Contains(cs, servers[1])
	})
	if slices.Contains(third.Contacts(), nodes[2].n.PeerID()) {
		t.Error("the port-restricted client node is in the third node's table")
	}
	// The open node joins a topic: its announcement is stored on the
	// server nodes (and the rendezvous); the third node's lookup finds it.
	tp, err := nodes[0].n.Join(ctx, "reach-test")
	if err != nil {
		t.Fatal(err)
	}
	defer tp.Close()
	testutil.WaitFor(t, time.Minute, "the third node to find the open node's announcement", func() bool {
		lctx, lcancel := context.WithTimeout(ctx, 15*time.Second)
		defer lcancel()
		ps, err := third.Lookup(lctx, "reach-test")
		return err == nil && slices.ContainsFunc(ps, func(p sdk.PeerInfo) bool { return p.ID == servers[0] })
	})
}

// reachNode starts a node on h logged in at the world's rendezvous, with
// discovery started with o (retried until the rendezvous' DHT answers).
func reachNode(t testing.TB, ctx context.Context, w *labworld.World, h *natlab.Host, o sdk.DiscoveryOptions) (*sdk.Node, *sdk.Discovery) {
	t.Helper()
	n, err := h.Net()
	if err != nil {
		t.Error(err)
		return nil, nil
	}
	id, err := sdk.GenerateIdentity()
	if err != nil {
		t.Error(err)
		return nil, nil
	}
	node, err := sdk.New(ctx, sdk.WithIdentity(id), sdk.WithRendezvous(w.SignalURL()), sdk.WithNetwork(n, h.DialContext),
		sdk.WithLogger(w.Log.With("host", h.Name())))
	if err != nil {
		t.Errorf("%v: %v", h, err)
		return nil, nil
	}
	t.Cleanup(func() { _ = node.Close() })
	for {
		d, err := node.StartDiscovery(ctx, o)
		if err == nil {
			return node, d
		}
		if ctx.Err() != nil {
			t.Errorf("%v: start discovery: %v", h, err)
			return nil, nil
		}
		time.Sleep(200 * time.Millisecond)
	}
}
