package relay

import (
	"net/netip"
	"testing"
)

// The unauthenticated-reply limit counts an IPv6 /64 as one source, and an
// IPv4-mapped address as the IPv4 address.
func TestIPLimiterKeysSources(t *testing.T) {
	for _, pair := range [][2]string{
		{"2001:db8:1:2::1", "2001:db8:1:2:ffff::9"},
		{"192.0.2.7", "::ffff:192.0.2.7"},
	} {
		l := newIPLimiter(0.001) // burst 1, no refill during the test
		if !l.allow(netip.MustParseAddr(pair[0])) {
			t.Fatalf("first reply to %s refused", pair[0])
		}
		if l.allow(netip.MustParseAddr(pair[1])) {
			t.Errorf("%s got a reply of its own after %s used up their shared one", pair[1], pair[0])
		}
	}
	if l := newIPLimiter(-1); !l.allow(netip.MustParseAddr("192.0.2.1")) {
		t.Error("a negative rate must mean no limit")
	}
}
