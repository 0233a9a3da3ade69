package relay

import (
	"net/netip"
	"testing"
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
		// Public addresses are allowed.
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
