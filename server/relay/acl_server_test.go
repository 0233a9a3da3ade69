package relay

import (
	"net"
	"net/netip"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/pion/stun/v4"

	"github.com/ferrynet/ferry/internal/netaddr"
	"github.com/ferrynet/ferry/internal/testutil"
)

// aclRig is a relay on IPv4 and IPv6 loopback, UDP and TCP, with one UDP and
// one TCP allocation per family, relaying through a confinedNet.
type aclRig struct {
	s      *testServer
	net    *confinedNet
	udp    map[bool]*authed // keyed by "IPv6"
	tcp    map[bool]*authed
	relays []net.PacketConn
}

func newACLRig(t *testing.T, allow []netip.Prefix) *aclRig {
	t.Helper()
	cn := &confinedNet{}
	s := startServer(t, func(c *Config) {
		c.ListenUDP = []string{"127.0.0.1:0", "[::1]:0"}
		c.UDPSockets = 1
		c.ListenTCP = []string{"127.0.0.1:0", "[::1]:0"}
		c.RelayIPs = []netip.Addr{netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("::1")}
		c.ExternalIPs = []netip.Addr{netip.MustParseAddr(rigExternalV4), netip.MustParseAddr(rigExternalV6)}
		c.RelayNet = cn
		c.AllowPeers = allow
		// The table makes many refused requests from one IP, and pion
		// answers a refused ChannelBind with 401: the reply cap (tested
		// on its own) would drop some, and the client's retransmissions
		// then cost seconds each.
		c.UnauthRepliesPerIP = -1
	})
	r := &aclRig{s: s, net: cn, udp: map[bool]*authed{}, tcp: map[bool]*authed{}}
	for i, v6 := range []bool{false, true} {
		uc := newClient(t, s.UDPAddrs()[i].String(), "udp"+strconv.Itoa(i), testSecret)
		relay, err := uc.Allocate()
		if err != nil {
			t.Fatalf("Allocate over UDP (v6=%v): %v", v6, err)
		}
		t.Cleanup(func() { _ = relay.Close() })
		r.relays = append(r.relays, relay)
		r.udp[v6] = newAuthed(uc.Client, "udp"+strconv.Itoa(i))

		tc := newTCPClient(t, s.TCPAddrs()[i])
		alloc, err := tc.AllocateTCP()
		if err != nil {
			t.Fatalf("Allocate over TCP (v6=%v): %v", v6, err)
		}
		t.Cleanup(func() { _ = alloc.Close() })
		r.tcp[v6] = newAuthed(tc, "tcpuser")
	}
	return r
}

// The rig's advertised addresses: public, so that only the relay's own-address
// rule denies them.
const (
	rigExternalV4 = "198.51.100.200"
	rigExternalV6 = "2001:db8::200"
)

func (r *aclRig) denials(t *testing.T, verb string) float64 {
	return r.s.counter(t, "ferry_relay_acl_denials_total", "verb", verb)
}

// wantDenials checks that the last request of a was denied, and counted once
// for each copy of it the client sent (a retransmission is judged again).
func (r *aclRig) wantDenials(t *testing.T, what, verb string, before float64, a *authed) {
	t.Helper()
	if d, sent := r.denials(t, verb)-before, a.lastSent(); d < 1 || d > float64(sent) {
		t.Errorf("%s: %v ACL denials counted, want 1 for each of the %d copies sent", what, d, sent)
	}
}

// TestACLEveryVerb is the table: each address is refused for
// CreatePermission, ChannelBind, Send and Connect; a public address is
// allowed; 127.0.0.1 is allowed once --allow-peer 127.0.0.0/8 is given.
func TestACLEveryVerb(t *testing.T) {
	testutil.CheckLeaks(t)
	testutil.Deadline(t, 120*time.Second)
	r := newACLRig(t, nil)

	denied := []string{
		"0.0.0.0", "0.1.2.3", "::", "::1", "::ffff:127.0.0.1", "::ffff:10.0.0.1", "64:ff9b::a00:1",
		"169.254.169.254", "100.64.0.1", "224.0.0.1", "255.255.255.255", "fe80::1", "fc00::1",
		// Finding 4 of issue 11: the other encodings of private IPv4, and the
		// relay's own addresses.
		"2002:7f00:1::", "2002:a00:1::", "2002:a9fe:a9fe::", "::7f00:1", "::ffff:0:a00:1",
		"64:ff9b:1::a00:1", "64:ff9b:1::cb00:7105", "2001:0:a00:1::1", "2001:0:cb00:7105::80ff:fffe",
		"fec0::1",
	}
	for i, a := range denied {
		ip := netip.MustParseAddr(a)
		// IPv4-mapped addresses are IPv4 peers: pion judges the family by the
		// unmapped form, so they go on the IPv4 allocation, encoded as IPv6.
		v6 := ip.Is6() && !ip.Is4In6()
		peer := netip.AddrPortFrom(ip, 9)
		t.Run(a, func(t *testing.T) {
			u, tc := r.udp[v6], r.tcp[v6]

			before := r.denials(t, VerbCreatePermission)
			res, err := u.request(stun.MethodCreatePermission, xorPeer(peer))
			if err != nil {
				t.Fatal(err)
			}
			if c := code(res); c != 403 {
				t.Errorf("CreatePermission: code %d, want 403", c)
			}
			r.wantDenials(t, "CreatePermission", VerbCreatePermission, before, u)

			before = r.denials(t, VerbChannelBind)
			res, err = u.request(stun.MethodChannelBind, xorPeer(peer), channelAttr(0x4000+uint16(i)))
			if err != nil {
				t.Fatal(err)
			}
			if c := code(res); c == 0 {
				t.Errorf("ChannelBind succeeded")
			}
			r.wantDenials(t, "ChannelBind", VerbChannelBind, before, u)

			before = r.denials(t, VerbSend)
			if err = u.send(peer, []byte("leak?")); err != nil {
				t.Fatal(err)
			}
			testutil.WaitFor(t, 5*time.Second, "the Send denial to be counted", func() bool { return r.denials(t, VerbSend)-before == 1 })

			before = r.denials(t, VerbConnect)
			res, err = tc.request(stun.MethodConnect, xorPeer(peer))
			if err != nil {
				t.Fatal(err)
			}
			if c := code(res); c != 403 {
				t.Errorf("Connect: code %d, want 403", c)
			}
			r.wantDenials(t, "Connect", VerbConnect, before, tc)
		})
	}
	if w, d := r.net.attempts(); len(w) != 0 || len(d) != 0 {
		t.Fatalf("denied peers were contacted: writes %v, dials %v", w, d)
	}

	// The relay's own allocation addresses (here the advertised ones, and a
	// 6to4 address wrapping one) may be another client's allocation, which
	// two clients of one relay need, so a permission for them is granted;
	// but Send and Connect to a port off the relay port range (the host's
	// other services) are denied, and nothing reaches such a port.
	for _, a := range []string{rigExternalV4, rigExternalV6, "2002:c633:64c8::1"} {
		ip := netip.MustParseAddr(a)
		off := netip.AddrPortFrom(ip, 9)
		t.Run("own "+a, func(t *testing.T) {
			u, tc := r.udp[ip.Is6()], r.tcp[ip.Is6()]
			res, err := u.request(stun.MethodCreatePermission, xorPeer(off))
			if err != nil || code(res) != 0 {
				t.Fatalf("CreatePermission for an own address: %v code %d, want success", err, code(res))
			}
			before := r.denials(t, VerbSend)
			if err = u.send(off, []byte("leak?")); err != nil {
				t.Fatal(err)
			}
			testutil.WaitFor(t, 5*time.Second, "the Send denial to be counted", func() bool { return r.denials(t, VerbSend)-before == 1 })
			before = r.denials(t, VerbConnect)
			if res, err = tc.request(stun.MethodConnect, xorPeer(off)); err != nil {
				t.Fatal(err)
			}
			if c := code(res); c != 403 {
				t.Errorf("Connect to an own address off the relay ports: code %d, want 403", c)
			}
			r.wantDenials(t, "Connect", VerbConnect, before, tc)
			// On a relay port, another allocation may listen: allowed.
			on := netip.AddrPortFrom(ip, DefaultRelayPortMin+7)
			if err = u.send(on, []byte("to an allocation")); err != nil {
				t.Fatal(err)
			}
			testutil.WaitFor(t, 5*time.Second, "the datagram to an own relay port", func() bool {
				w, _ := r.net.attempts()
				return slices.Contains(w, on)
			})
		})
	}
	if w, d := r.net.attempts(); slices.ContainsFunc(w, func(x netip.AddrPort) bool { return x.Port() == 9 }) || len(d) != 0 {
		t.Fatalf("own addresses off the relay ports were contacted: writes %v, dials %v", w, d)
	}

	// Public addresses are allowed for every verb (the confined network
	// records the traffic instead of sending it).
	for i, a := range []string{"203.0.113.5", "2001:db8::5", "2002:cb00:7105::1", "2001:0:4136:e378:8000:63bf:3fff:fdd2"} {
		ip := netip.MustParseAddr(a)
		peer := netip.AddrPortFrom(ip, 4000)
		t.Run("allowed "+a, func(t *testing.T) {
			u, tc := r.udp[ip.Is6()], r.tcp[ip.Is6()]
			deniedBefore := r.s.counter(t, "ferry_relay_acl_denials_total")
			res, err := u.request(stun.MethodCreatePermission, xorPeer(peer))
			if err != nil || code(res) != 0 {
				t.Fatalf("CreatePermission: %v code %d", err, code(res))
			}
			res, err = u.request(stun.MethodChannelBind, xorPeer(peer), channelAttr(0x5000+uint16(i)))
			if err != nil || code(res) != 0 {
				t.Fatalf("ChannelBind: %v code %d", err, code(res))
			}
			if err = u.send(peer, []byte("hello")); err != nil {
				t.Fatal(err)
			}
			testutil.WaitFor(t, 5*time.Second, "the denied dial attempt", func() bool {
				w, _ := r.net.attempts()
				for _, x := range w {
					if x == peer {
						return true
					}
				}
				return false
			})
			res, err = tc.request(stun.MethodConnect, xorPeer(peer))
			if err != nil {
				t.Fatal(err)
			}
			if c := code(res); c != 447 {
				t.Errorf("Connect: code %d, want 447 (the confined dial fails)", c)
			}
			if _, d := r.net.attempts(); len(d) == 0 || d[len(d)-1] != peer {
				t.Errorf("Connect: no dial to %v recorded (dials %v)", peer, d)
			}
			if got := r.s.counter(t, "ferry_relay_acl_denials_total"); got != deniedBefore {
				t.Errorf("ACL denials went from %v to %v for an allowed peer", deniedBefore, got)
			}
		})
	}
}

// TestACLAllowPeer: with --allow-peer 127.0.0.0/8, 127.0.0.1 is relayed to for
// every verb, including its IPv4-mapped spelling.
func TestACLAllowPeer(t *testing.T) {
	testutil.CheckLeaks(t)
	testutil.Deadline(t, 60*time.Second)
	r := newACLRig(t, []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")})
	echo := startEcho(t, "udp4", "127.0.0.1:0")
	peer := netaddr.AddrPort(echo.pc.LocalAddr())
	u, tc := r.udp[false], r.tcp[false]

	for _, p := range []netip.AddrPort{peer, netip.AddrPortFrom(netip.AddrFrom16(peer.Addr().As16()), peer.Port())} {
		res, err := u.request(stun.MethodCreatePermission, xorPeer(p))
		if err != nil || code(res) != 0 {
			t.Fatalf("CreatePermission %v: %v code %d", p, err, code(res))
		}
	}
	res, err := u.request(stun.MethodChannelBind, xorPeer(peer), channelAttr(0x4001))
	if err != nil || code(res) != 0 {
		t.Fatalf("ChannelBind: %v code %d", err, code(res))
	}
	if err = u.send(peer, []byte("via send")); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 5*time.Second, "the echo peer to hear the relayed datagram", func() bool { return echo.received() > 0 })

	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, aerr := ln.Accept()
		if aerr == nil {
			accepted <- c
		}
		close(accepted)
	}()
	res, err = tc.request(stun.MethodConnect, xorPeer(netaddr.AddrPort(ln.Addr())))
	if err != nil || code(res) != 0 {
		t.Fatalf("Connect: %v code %d", err, code(res))
	}
	select {
	case c := <-accepted:
		if c == nil {
			t.Fatal("accept failed")
		}
		_ = c.Close()
	case <-time.After(5 * time.Second):
		t.Fatal("the relay did not connect to the allowed peer")
	}
	if got := r.s.counter(t, "ferry_relay_acl_denials_total"); got != 0 {
		t.Errorf("ACL denials = %v, want 0", got)
	}
}
