package portmap_test

import (
	"context"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/ferrynet/ferry/internal/natlab"
	"github.com/ferrynet/ferry/internal/natlab/natlabtest"
	"github.com/ferrynet/ferry/internal/testutil"
	"github.com/ferrynet/ferry/sdk/internal/portmap"
)

// TestMain checks that the lab test left no namespace behind.
func TestMain(m *testing.M) {
	os.Exit(natlabtest.Run(m))
}

// TestMiniUPnPdInLab: behind a symmetric NAT running miniupnpd, the
// Mapper gets the site's public address with the socket's port, the
// mapping shows in miniupnpd's nftables rules, is renewed, carries an
// unsolicited packet from the server to the socket, and is deleted on
// Close.
func TestMiniUPnPdInLab(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.RequireBinary(t, "miniupnpd", "miniupnpd-nftables")
	testutil.RequireBinary(t, "turnserver", "coturn")
	testutil.Deadline(t, 2*time.Minute)
	lab := natlabtest.New(t, natlab.Config{Sites: []natlab.SiteConfig{
		{Name: "s", NAT: natlab.Symmetric, PortMapping: true},
	}})
	ctx := context.Background()
	site := lab.Site("s")
	h := site.Host(0)
	sock, err := h.ListenPacket(ctx, "udp4", h.Addr().String()+":0")
	if err != nil {
		t.Fatal(err)
	}
	defer sock.Close()
	localAP := sock.LocalAddr().(*net.UDPAddr).AddrPort()
	m, err := portmap.Start(portmap.Config{
		Gateway: h.Gateway(), Local: localAP, Lifetime: 12 * time.Second, Do: h.Do,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	want := netip.AddrPortFrom(site.PublicAddr, localAP.Port())
	testutil.WaitFor(t, 20*time.Second, "a mapped address", func() bool { return m.Addr() == want })
	rule := "to " + localAP.String()
	hasRule := func() bool {
		rules, err := site.PortMapper().Mappings(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return len(rules) == 1 && strings.Contains(rules[0], rule)
	}
	if !hasRule() {
		out, _ := site.PortMapper().Rules(ctx)
		t.Fatalf("no DNAT rule %q in miniupnpd's table:\n%s", rule, out)
	}
	// Granted 12 s: renewed after 6.
	testutil.WaitFor(t, 30*time.Second, "a renewal", func() bool { return m.Renewals() >= 2 })
	if !hasRule() {
		t.Fatal("the rule is gone after the renewal")
	}

	srv, err := lab.Server().ListenPacket(ctx, "udp4", natlab.ServerAddr.String()+":0")
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	natlabtest.SendUntilHeard(t, srv, want, sock, "hello", 20*time.Second)

	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if hasRule() {
		t.Fatal("the mapping survived Close")
	}
	if rules, _ := site.PortMapper().Mappings(ctx); len(rules) != 0 {
		t.Fatalf("rules after Close: %q", rules)
	}
}

// TestUPnPOnlyInLab: behind a miniupnpd that answers UPnP IGD only, the
// Mapper (NAT-PMP first, as by default) falls back to UPnP, gets the
// site's public address with the socket's port, renews it, carries an
// unsolicited packet, and deletes it on Close.
func TestUPnPOnlyInLab(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.RequireBinary(t, "miniupnpd", "miniupnpd-nftables")
	testutil.RequireBinary(t, "turnserver", "coturn")
	testutil.Deadline(t, 2*time.Minute)
	lab := natlabtest.New(t, natlab.Config{Sites: []natlab.SiteConfig{
		{Name: "u", NAT: natlab.Symmetric, PortMapping: true, PortMapUPnPOnly: true},
	}})
	ctx := context.Background()
	site := lab.Site("u")
	h := site.Host(0)
	sock, err := h.ListenPacket(ctx, "udp4", h.Addr().String()+":0")
	if err != nil {
		t.Fatal(err)
	}
	defer sock.Close()
	localAP := sock.LocalAddr().(*net.UDPAddr).AddrPort()
	var events []portmap.Event
	evc := make(chan portmap.Event, 16)
	m, err := portmap.Start(portmap.Config{
		Gateway: h.Gateway(), Local: localAP, Lifetime: 4 * time.Second, Timeout: time.Second, Do: h.Do,
		OnEvent: func(e portmap.Event) {
			select {
			case evc <- e:
			default:
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	want := netip.AddrPortFrom(site.PublicAddr, localAP.Port())
	testutil.WaitFor(t, 30*time.Second, "a mapped address", func() bool { return m.Addr() == want })
	if p := m.Protocol(); p != portmap.UPnP {
		t.Fatalf("mapped with %q, want upnp", p)
	}
	rules, err := site.PortMapper().Mappings(ctx)
	if err != nil || len(rules) != 1 || !strings.Contains(rules[0], "to "+localAP.String()) {
		t.Fatalf("miniupnpd's rules %q (%v): want one to %v", rules, err, localAP)
	}
	// 4 s asked: renewed at 2 s (minRenew).
	testutil.WaitFor(t, 30*time.Second, "a renewal", func() bool { return m.Renewals() >= 2 })
	srv, err := lab.Server().ListenPacket(ctx, "udp4", natlab.ServerAddr.String()+":0")
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	natlabtest.SendUntilHeard(t, srv, want, sock, "hello", 20*time.Second)
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if rules, _ := site.PortMapper().Mappings(ctx); len(rules) != 0 {
		t.Fatalf("rules after Close: %q", rules)
	}
	close(evc)
	for e := range evc {
		events = append(events, e)
	}
	if len(events) < 3 || events[0].Kind != portmap.Obtained || events[0].Protocol != portmap.UPnP || events[len(events)-1].Kind != portmap.Deleted {
		t.Fatalf("events %+v: want obtained (upnp), renewed..., deleted", events)
	}
}

// TestMappedAddressFromConePeer: a host behind a symmetric NAT with a
// mapping is reached directly by a peer behind a port-restricted cone NAT
// at the mapped address, and the host's answers from the mapped socket
// reach the peer (they leave through the mapping, so the peer's NAT lets
// them in), also when the host had sent to the peer first, as an ICE
// agent does: the peer's packets to the mapped port then still arrive.
func TestMappedAddressFromConePeer(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.RequireBinary(t, "miniupnpd", "miniupnpd-nftables")
	testutil.RequireBinary(t, "turnserver", "coturn")
	testutil.Deadline(t, 2*time.Minute)
	lab := natlabtest.New(t, natlab.Config{Sites: []natlab.SiteConfig{
		{Name: "s", NAT: natlab.Symmetric, PortMapping: true},
		{Name: "p", NAT: natlab.PortRestrictedCone},
	}})
	ctx := context.Background()
	h, peer := lab.Site("s").Host(0), lab.Site("p").Host(0)
	hs, err := h.ListenPacket(ctx, "udp4", h.Addr().String()+":0")
	if err != nil {
		t.Fatal(err)
	}
	defer hs.Close()
	ps, err := peer.ListenPacket(ctx, "udp4", peer.Addr().String()+":0")
	if err != nil {
		t.Fatal(err)
	}
	defer ps.Close()
	m, err := portmap.Start(portmap.Config{Gateway: h.Gateway(), Local: hs.LocalAddr().(*net.UDPAddr).AddrPort(), Do: h.Do})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	testutil.WaitFor(t, 20*time.Second, "a mapped address", func() bool { return m.Addr().IsValid() })
	mapped := m.Addr()
	// The peer's public address: the cone NAT keeps the port.
	peerPub := netip.AddrPortFrom(lab.Site("p").PublicAddr, ps.LocalAddr().(*net.UDPAddr).AddrPort().Port())

	// The host speaks first, as both ICE agents do: its packet leaves
	// through the symmetric NAT on a random port and is filtered by the
	// peer's NAT (the peer never sent there).
	if _, err := hs.WriteTo([]byte("early"), net.UDPAddrFromAddrPort(peerPub)); err != nil {
		t.Fatal(err)
	}
	// The peer sends to the mapped address until the host hears it.
	from := natlabtest.SendUntilHeard(t, ps, mapped, hs, "ping", 30*time.Second)
	if from.Addr() != peerPub.Addr() {
		t.Fatalf("the host heard the peer from %v, want %v", from, peerPub.Addr())
	}
	// (The port may differ from the local one: the host's early packet
	// to peerPub can hold that tuple in the peer NAT's conntrack.)
	t.Logf("peer %v heard from %v; mapped %v", peerPub, from, mapped)
	// The host answers the address it heard from; the answer must come
	// from the mapped address, or the peer's NAT would drop it.
	if src := natlabtest.SendUntilHeard(t, hs, from, ps, "pong", 20*time.Second); src != mapped {
		t.Fatalf("the answer came from %v, want the mapped %v", src, mapped)
	}
}

// BenchmarkMapInLab: how long a Mapper takes from Start to a granted
// mapping behind miniupnpd, with NAT-PMP and with UPnP (SSDP, description,
// two SOAP calls), and to delete it on Close. No delay on the LAN.
func BenchmarkMapInLab(b *testing.B) {
	testutil.RequireRoot(b)
	testutil.RequireBinary(b, "miniupnpd", "miniupnpd-nftables")
	testutil.RequireBinary(b, "turnserver", "coturn")
	lab := natlabtest.New(b, natlab.Config{Sites: []natlab.SiteConfig{
		{Name: "s", NAT: natlab.Symmetric, PortMapping: true},
	}})
	ctx := context.Background()
	h := lab.Site("s").Host(0)
	sock, err := h.ListenPacket(ctx, "udp4", h.Addr().String()+":0")
	if err != nil {
		b.Fatal(err)
	}
	defer sock.Close()
	localAP := sock.LocalAddr().(*net.UDPAddr).AddrPort()
	for _, proto := range []string{portmap.NATPMP, portmap.UPnP} {
		b.Run(proto, func(b *testing.B) {
			var mapTime, delTime time.Duration
			for b.Loop() {
				got := make(chan struct{}, 1)
				start := time.Now()
				m, err := portmap.Start(portmap.Config{
					Gateway: h.Gateway(), Local: localAP, Protocols: []string{proto}, Do: h.Do,
					OnChange: func(a netip.AddrPort) {
						if a.IsValid() {
							select {
							case got <- struct{}{}:
							default:
							}
						}
					},
				})
				if err != nil {
					b.Fatal(err)
				}
				select {
				case <-got:
				case <-time.After(20 * time.Second):
					b.Fatal("no mapping in 20s")
				}
				mapTime += time.Since(start)
				start = time.Now()
				if err := m.Close(); err != nil {
					b.Fatal(err)
				}
				delTime += time.Since(start)
			}
			b.ReportMetric(float64(mapTime.Microseconds())/1000/float64(b.N), "ms/map")
			b.ReportMetric(float64(delTime.Microseconds())/1000/float64(b.N), "ms/delete")
		})
	}
}
