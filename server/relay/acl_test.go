package relay

import (
	"log/slog"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/ferrynet/ferry/internal/cliconf/cliconftest"
	"github.com/ferrynet/ferry/internal/netaddr"
	"github.com/ferrynet/ferry/internal/testutil"
)

func TestACLDefaultTable(t *testing.T) {
	acl := NewACL(nil, nil)
	tests := []struct {
		ip     string
		ok     bool
		reason string
	}{
		// The table: every one of these is refused.
		{"0.0.0.0", false, ReasonThisNetwork},
		{"0.1.2.3", false, ReasonThisNetwork},
		{"::", false, ReasonUnspecified},
		{"::1", false, ReasonLoopback},
		{"::ffff:127.0.0.1", false, ReasonLoopback},
		{"::ffff:10.0.0.1", false, ReasonPrivate},
		{"64:ff9b::a00:1", false, ReasonNAT64},
		{"169.254.169.254", false, ReasonLinkLocal},
		{"100.64.0.1", false, ReasonShared},
		{"224.0.0.1", false, ReasonMulticast},
		{"255.255.255.255", false, ReasonReserved},
		{"fe80::1", false, ReasonLinkLocal},
		{"fe80::1%eth0", false, ReasonLinkLocal},
		{"fc00::1", false, ReasonULA},
		// The rest of the default list.
		{"127.0.0.1", false, ReasonLoopback},
		{"10.255.255.255", false, ReasonPrivate},
		{"172.16.0.1", false, ReasonPrivate},
		{"172.31.255.255", false, ReasonPrivate},
		{"192.168.1.1", false, ReasonPrivate},
		{"192.0.0.8", false, ReasonIETF},
		{"198.18.0.1", false, ReasonBenchmark},
		{"198.19.255.255", false, ReasonBenchmark},
		{"240.0.0.1", false, ReasonReserved},
		{"100::1", false, ReasonDiscard},
		{"fd12:3456::1", false, ReasonULA},
		{"ff02::1", false, ReasonMulticast},
		{"::ffff:169.254.169.254", false, ReasonLinkLocal},
		// Every IPv6 encoding of an IPv4 address is judged by that address
		// (finding 4 of issue 11).
		{"2002:7f00:1::", false, ReasonLoopback},                 // 6to4 of 127.0.0.1
		{"2002:a00:1::", false, ReasonPrivate},                   // 6to4 of 10.0.0.1
		{"2002:a9fe:a9fe::", false, ReasonLinkLocal},             // 6to4 of 169.254.169.254
		{"2002:c0a8:101:1::5", false, ReasonPrivate},             // 6to4 of 192.168.1.1, any subnet
		{"::7f00:1", false, ReasonV4Compat},                      // IPv4-compatible 127.0.0.1
		{"::cb00:7105", false, ReasonV4Compat},                   // IPv4-compatible, even of a public address
		{"::ffff:0:a00:1", false, ReasonV4Trans},                 // IPv4-translated 10.0.0.1
		{"::ffff:0:cb00:7105", false, ReasonV4Trans},             // IPv4-translated, even of a public address
		{"64:ff9b:1::a00:1", false, ReasonNAT64},                 // local-use NAT64
		{"64:ff9b:1:ffff::cb00:7105", false, ReasonNAT64},        // local-use NAT64 of a public address
		{"2001:0:a00:1::1", false, ReasonPrivate},                // Teredo, server 10.0.0.1
		{"2001:0:cb00:7105::80ff:fffe", false, ReasonLoopback},   // Teredo, client 127.0.0.1 (inverted)
		{"2001:0:cb00:7105:0:0:f5ff:fffe", false, ReasonPrivate}, // Teredo, client 10.0.0.1
		{"fec0::1", false, ReasonSiteLocal},
		{"feff::1", false, ReasonSiteLocal},
		// Public addresses are allowed, in every encoding.
		{"2002:cb00:7105::1", true, ""},                    // 6to4 of 203.0.113.5
		{"2001:0:4136:e378:8000:63bf:3fff:fdd2", true, ""}, // RFC 4380's example
		{"203.0.113.5", true, ""},
		{"198.51.100.7", true, ""},
		{"8.8.8.8", true, ""},
		{"172.32.0.1", true, ""},
		{"100.128.0.1", true, ""},
		{"192.0.1.1", true, ""},
		{"2001:db8::1", true, ""},
		{"::ffff:203.0.113.5", true, ""},
		{"100:0:0:1::1", true, ""},
	}
	for _, tc := range tests {
		ok, reason := acl.Check(netip.MustParseAddr(tc.ip))
		if ok != tc.ok || reason != tc.reason {
			t.Errorf("Check(%s) = %v %q, want %v %q", tc.ip, ok, reason, tc.ok, tc.reason)
		}
	}
	if ok, reason := acl.Check(netip.Addr{}); ok || reason != ReasonInvalid {
		t.Errorf("Check(invalid) = %v %q", ok, reason)
	}
}

func TestACLOverrides(t *testing.T) {
	pp := func(s ...string) []netip.Prefix {
		var out []netip.Prefix
		for _, x := range s {
			out = append(out, netip.MustParsePrefix(x))
		}
		return out
	}
	tests := []struct {
		name        string
		allow, deny []netip.Prefix
		ip          string
		ok          bool
		reason      string
	}{
		{"allow beats default", pp("127.0.0.0/8"), nil, "127.0.0.1", true, ""},
		{"allow covers mapped form", pp("127.0.0.0/8"), nil, "::ffff:127.0.0.1", true, ""},
		{"allow ::1 is not IPv4-compatible 0.0.0.1", pp("::1/128"), nil, "::1", true, ""},
		{"allow given as mapped prefix", pp("::ffff:127.0.0.0/104"), nil, "127.0.0.2", true, ""},
		{"allow is narrow", pp("127.0.0.0/8"), nil, "10.0.0.1", false, ReasonPrivate},
		{"deny beats allow", pp("10.0.0.0/8"), pp("10.1.0.0/16"), "10.1.2.3", false, ReasonOperator},
		{"allow outside deny", pp("10.0.0.0/8"), pp("10.1.0.0/16"), "10.2.0.1", true, ""},
		{"deny public", nil, pp("203.0.113.0/24"), "203.0.113.9", false, ReasonOperator},
		{"deny public mapped", nil, pp("203.0.113.0/24"), "::ffff:203.0.113.9", false, ReasonOperator},
		{"nat64 allowed reaches public v4", pp("64:ff9b::/96"), nil, "64:ff9b::808:808", true, ""},
		{"nat64 allowed still judges embedded v4", pp("64:ff9b::/96"), nil, "64:ff9b::a00:1", false, ReasonPrivate},
		{"nat64 embedded loopback", pp("64:ff9b::/96"), nil, "64:ff9b::7f00:1", false, ReasonLoopback},
		{"nat64 embedded operator deny", pp("64:ff9b::/96"), pp("203.0.113.0/24"), "64:ff9b::cb00:7101", false, ReasonOperator},
		{"nat64 embedded allowed private", pp("64:ff9b::/96", "10.0.0.0/8"), nil, "64:ff9b::a00:1", true, ""},
		{"local nat64 allowed still judges embedded v4", pp("64:ff9b:1::/48"), nil, "64:ff9b:1::a00:1", false, ReasonPrivate},
		{"local nat64 allowed reaches public v4", pp("64:ff9b:1::/48"), nil, "64:ff9b:1::cb00:7105", true, ""},
		{"ipv4-compatible allowed still judges embedded v4", pp("::/96"), nil, "::a00:1", false, ReasonPrivate},
		{"ipv4-translated allowed still judges embedded v4", pp("::ffff:0:0:0/96"), nil, "::ffff:0:7f00:1", false, ReasonLoopback},
		{"6to4 embedded operator deny", nil, pp("203.0.113.0/24"), "2002:cb00:7105::1", false, ReasonOperator},
		{"teredo client operator deny", nil, pp("203.0.113.0/24"), "2001:0:4136:e378:8000:63bf:34ff:8efa", false, ReasonOperator},
		{"6to4 embedded allowed private", pp("10.0.0.0/8"), nil, "2002:a00:1::", true, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ok, reason := NewACL(tc.allow, tc.deny).Check(netip.MustParseAddr(tc.ip))
			if ok != tc.ok || reason != tc.reason {
				t.Errorf("Check(%s) = %v %q, want %v %q", tc.ip, ok, reason, tc.ok, tc.reason)
			}
		})
	}
}

// TestACLSelf: the relay's own addresses are denied after the default list,
// and an explicit allow still opens them.
func TestACLSelf(t *testing.T) {
	acl := NewACL(nil, nil)
	pub := netip.MustParseAddr("198.51.100.200")
	if ok, _ := acl.Check(pub); !ok {
		t.Fatalf("%v denied before SetSelf", pub)
	}
	acl.SetSelf([]netip.Addr{pub, netip.MustParseAddr("::ffff:198.51.100.201"), netip.MustParseAddr("127.0.0.1"), {}})
	for _, tc := range []struct {
		ip     string
		reason string
	}{
		{"198.51.100.200", ReasonSelf},
		{"::ffff:198.51.100.200", ReasonSelf},
		{"198.51.100.201", ReasonSelf},
		{"2002:c633:64c8::1", ReasonSelf}, // 6to4 of 198.51.100.200
		{"127.0.0.1", ReasonLoopback},
	} {
		if ok, reason := acl.Check(netip.MustParseAddr(tc.ip)); ok || reason != tc.reason {
			t.Errorf("Check(%s) = %v %q, want denied %q", tc.ip, ok, reason, tc.reason)
		}
	}
	if ok, _ := acl.Check(netip.MustParseAddr("198.51.100.202")); !ok {
		t.Error("a neighbour of the relay's address is denied")
	}
	allowing := NewACL([]netip.Prefix{netip.MustParsePrefix("198.51.100.0/24")}, nil)
	allowing.SetSelf([]netip.Addr{pub})
	if ok, reason := allowing.Check(pub); !ok {
		t.Errorf("an explicit allow does not open the relay's own address: %q", reason)
	}
}

// TestServerDeniesOwnAddresses: every interface address of the host, and the
// relay's listener address, are denied as peers.
func TestServerDeniesOwnAddresses(t *testing.T) {
	testutil.CheckLeaks(t)
	testutil.Deadline(t, 30*time.Second)
	s := startServer(t, nil)
	addrs := append(interfaceAddrs(), netaddr.AddrPort(s.UDPAddrs()[0]).Addr())
	if len(addrs) < 2 {
		t.Fatalf("the host has no interface addresses: %v", addrs)
	}
	for _, ip := range addrs {
		if ok, _ := s.checkPeer(ip); ok {
			t.Errorf("the relay may relay to its own address %v", ip)
		}
	}
}

func BenchmarkACLCheck(b *testing.B) {
	acl := NewACL(nil, nil)
	ips := []netip.Addr{netip.MustParseAddr("203.0.113.5"), netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("::ffff:10.0.0.1")}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		acl.Check(ips[i%len(ips)])
		i++
	}
}

// TestAllowCoveringSelfWarns: an allow range that re-opens the relay's own
// addresses is said at start.
func TestAllowCoveringSelfWarns(t *testing.T) {
	testutil.CheckLeaks(t)
	testutil.Deadline(t, 30*time.Second)
	for _, tc := range []struct {
		allow []netip.Prefix
		warns bool
	}{{loopback, true}, {[]netip.Prefix{netip.MustParsePrefix("10.99.0.0/16")}, false}} {
		var logs cliconftest.SyncBuffer
		startServer(t, func(c *Config) {
			c.AllowPeers = tc.allow
			c.Logger = slog.New(slog.NewTextHandler(&logs, nil))
		})
		if got := strings.Contains(logs.String(), "covers the relay's own addresses"); got != tc.warns {
			t.Errorf("allow %v: warned %v, want %v\n%s", tc.allow, got, tc.warns, logs.String())
		}
	}
}
