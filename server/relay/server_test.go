package relay

import (
	"bytes"
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/pion/stun/v4"

	"github.com/ferrynet/ferry/internal/netaddr"
	"github.com/ferrynet/ferry/internal/testutil"
)

func TestRelayUDPEcho(t *testing.T) {
	testutil.CheckLeaks(t)
	testutil.Deadline(t, 60*time.Second)
	s := startServer(t, func(c *Config) { c.AllowPeers = loopback })
	peer := startEcho(t, "udp4", "127.0.0.1:0")

	c := newClient(t, s.udpAddr(), "alice", testSecret)
	relay, err := c.Allocate()
	if err != nil {
		t.Fatalf("Allocate: %v", err)
	}
	defer relay.Close()

	// The first packets go as Send indications while the channel binds;
	// then ChannelData takes the fast path.
	for i := range 50 {
		msg := []byte(fmt.Sprintf("hello %d", i))
		if err := roundTrip(relay, peer.pc.LocalAddr(), msg, 5*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	if got := s.Allocations(); got != 1 {
		t.Errorf("Allocations() = %d, want 1", got)
	}
	// Counters are bumped just after each send, so allow them a moment.
	testutil.WaitFor(t, 5*time.Second, "50 packets relayed each way", func() bool {
		tr := s.Traffic()
		return tr.ToPeerPackets >= 50 && tr.ToClientPackets >= 50
	})
	if v := s.counter(t, "ferry_relay_allocations_created_total", "transport", "udp"); v != 1 {
		t.Errorf("allocations_created_total = %v", v)
	}
	if v := s.counter(t, "ferry_relay_relayed_bytes_total", "direction", "to_peer"); v < 50*7 {
		t.Errorf("relayed_bytes_total{to_peer} = %v", v)
	}
	big := bytes.Repeat([]byte{0xAB}, 1200)
	if err := roundTrip(relay, peer.pc.LocalAddr(), big, 5*time.Second); err != nil {
		t.Fatal(err)
	}

	if err := relay.Close(); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 5*time.Second, "no live allocations", func() bool { return s.Allocations() == 0 })
	if v := s.counter(t, "ferry_relay_allocations_deleted_total", "transport", "udp"); v != 1 {
		t.Errorf("allocations_deleted_total = %v", v)
	}
}

// TestExternalIPAndPortRange: the relayed address advertises the external IP
// and a port from the range, while sockets bind the relay IP (RFC 6062
// Connect included); an exhausted range refuses allocations.
func TestExternalIPAndPortRange(t *testing.T) {
	testutil.CheckLeaks(t)
	testutil.Deadline(t, 60*time.Second)
	ext := netip.MustParseAddr("203.0.113.50")
	// Find three free ports for a tiny range.
	lo := 0
	for p := 41000; p < 41900 && lo == 0; p += 3 {
		ok := true
		for q := p; q < p+3; q++ {
			pc, err := net.ListenPacket("udp4", fmt.Sprintf("127.0.0.1:%d", q))
			if err != nil {
				ok = false
				break
			}
			_ = pc.Close()
		}
		if ok {
			lo = p
		}
	}
	if lo == 0 {
		t.Fatal("no free port range")
	}
	mod := func(c *Config) {
		c.ListenTCP = []string{"127.0.0.1:0"}
		c.RelayIPs = []netip.Addr{netip.MustParseAddr("127.0.0.1")}
		c.ExternalIPs = []netip.Addr{ext}
		c.AllowPeers = loopback
	}
	s := startServer(t, func(c *Config) {
		mod(c)
		c.RelayPortMin, c.RelayPortMax = uint16(lo), uint16(lo+2)
	})

	peer := startEcho(t, "udp4", "127.0.0.1:0")
	var relays []net.PacketConn
	for i := range 3 {
		c := newClient(t, s.udpAddr(), fmt.Sprintf("u%d", i), testSecret)
		r, err := c.Allocate()
		if err != nil {
			t.Fatalf("allocation %d: %v", i, err)
		}
		defer r.Close()
		relays = append(relays, r)
		ap := netaddr.AddrPort(r.LocalAddr())
		if ap.Addr() != ext || int(ap.Port()) < lo || int(ap.Port()) > lo+2 {
			t.Fatalf("relayed address %v, want %v with a port in %d-%d", ap, ext, lo, lo+2)
		}
	}
	if err := roundTrip(relays[0], peer.pc.LocalAddr(), []byte("via external"), 5*time.Second); err != nil {
		t.Fatal(err)
	}
	u, p := RESTCredentials(testSecret, "u9", ":", time.Now().Add(time.Hour))
	if c := rawAllocate(t, s.udpAddr(), u, p, testRealm); c != 508 {
		t.Fatalf("allocation beyond the port range: %d, want 508", c)
	}
	if v := s.counter(t, "ferry_relay_quota_rejections_total", "reason", QuotaPorts); v != 1 {
		t.Errorf("ports rejections = %v", v)
	}

	// RFC 6062: the relay dials from the relay IP, not the advertised one.
	s = startServer(t, mod)
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		if c, aerr := ln.Accept(); aerr == nil {
			_ = c.Close()
		}
	}()
	tc := newTCPClient(t, s.TCPAddrs()[0])
	alloc, err := tc.AllocateTCP()
	if err != nil {
		t.Fatal(err)
	}
	defer alloc.Close()
	if ap := netaddr.AddrPort(alloc.Addr()); ap.Addr() != ext {
		t.Fatalf("TCP relayed address %v", ap)
	}
	a := newAuthed(tc, "tcpuser")
	res, err := a.request(stun.MethodConnect, xorPeer(netaddr.AddrPort(ln.Addr())))
	if err != nil || code(res) != 0 {
		t.Fatalf("Connect with an external IP: %v, code %d", err, code(res))
	}
}

// TestDualStackListener: a wildcard listener is one dual-stack socket per
// core; IPv4 clients reach it as IPv4-mapped addresses, and the fast path
// must answer them as such.
func TestDualStackListener(t *testing.T) {
	testutil.CheckLeaks(t)
	testutil.Deadline(t, 60*time.Second)
	s := startServer(t, func(c *Config) {
		c.ListenUDP = []string{":0"}
		c.RelayIPs = []netip.Addr{netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("::1")}
		c.AllowPeers = loopback
	})
	port := s.UDPAddrs()[0].(*net.UDPAddr).Port
	for _, tc := range []struct{ server, peerNet, peer string }{
		{fmt.Sprintf("127.0.0.1:%d", port), "udp4", "127.0.0.1:0"},
		{fmt.Sprintf("[::1]:%d", port), "udp6", "[::1]:0"},
	} {
		peer := startEcho(t, tc.peerNet, tc.peer)
		c := newClient(t, tc.server, "ds", testSecret)
		relay, err := c.Allocate()
		if err != nil {
			t.Fatalf("%s: %v", tc.server, err)
		}
		for i := range 30 {
			if err := roundTrip(relay, peer.pc.LocalAddr(), []byte{byte(i), 'x'}, 5*time.Second); err != nil {
				t.Fatalf("%s: %v", tc.server, err)
			}
		}
		_ = relay.Close()
	}
}

// plainPC hides a *net.UDPConn behind net.PacketConn, as a socket from
// pion's vnet or any wrapper would be.
type plainPC struct{ net.PacketConn }

// plainRelayNet opens relay sockets that are not OS sockets to the relay.
type plainRelayNet struct{ OSRelayNet }

func (n plainRelayNet) ListenPacket(network string, laddr netip.AddrPort) (net.PacketConn, error) {
	pc, err := n.OSRelayNet.ListenPacket(network, laddr)
	if err != nil {
		return nil, err
	}
	return plainPC{pc}, nil
}

// TestRelayThroughPlainPacketConns: TURN and relay sockets that are not
// *net.UDPConn get no fast path, and relay through pion both ways.
func TestRelayThroughPlainPacketConns(t *testing.T) {
	testutil.CheckLeaks(t)
	testutil.Deadline(t, 30*time.Second)
	turnPC, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := startServer(t, func(c *Config) {
		c.ListenUDP = nil
		c.PacketConns = []net.PacketConn{plainPC{turnPC}}
		c.RelayNet = plainRelayNet{}
		c.AllowPeers = loopback
	})
	peer := startEcho(t, "udp4", "127.0.0.1:0")
	c := newClient(t, s.udpAddr(), "plain", testSecret)
	relay, err := c.Allocate()
	if err != nil {
		t.Fatalf("Allocate: %v", err)
	}
	defer relay.Close()
	for i := range 20 {
		if err := roundTrip(relay, peer.pc.LocalAddr(), []byte(fmt.Sprintf("plain %d", i)), 5*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	testutil.WaitFor(t, 5*time.Second, "20 packets counted each way", func() bool {
		tr := s.Traffic()
		return tr.ToPeerPackets >= 20 && tr.ToClientPackets >= 20
	})
}
