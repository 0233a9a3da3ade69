package iplimit

import (
	"net/netip"
	"testing"
)

func TestKey(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"192.0.2.1", "192.0.2.1"},
		{"::ffff:192.0.2.1", "192.0.2.1"},
		{"2001:db8:1:2:3:4:5:6", "2001:db8:1:2::"},
		{"2001:db8:1:2::", "2001:db8:1:2::"},
		{"2001:db8:1:2:ffff:ffff:ffff:ffff", "2001:db8:1:2::"},
		{"fe80::1%eth0", "fe80::"},
		{"::1", "::"},
	} {
		if got := Key(netip.MustParseAddr(tc.in)); got != netip.MustParseAddr(tc.want) {
			t.Errorf("Key(%s) = %v, want %s", tc.in, got, tc.want)
		}
	}
	if got := Key(netip.Addr{}); got.IsValid() {
		t.Errorf("Key(zero) = %v", got)
	}
	// One /64 is one source; the next /64 is another, and so is each IPv4
	// address.
	same := []string{"2001:db8::1", "2001:db8::2:1"}
	if Key(netip.MustParseAddr(same[0])) != Key(netip.MustParseAddr(same[1])) {
		t.Errorf("%v are one /64 but two keys", same)
	}
	for _, pair := range [][2]string{{"2001:db8::1", "2001:db8:0:1::1"}, {"192.0.2.1", "192.0.2.2"}} {
		if Key(netip.MustParseAddr(pair[0])) == Key(netip.MustParseAddr(pair[1])) {
			t.Errorf("%v share a key", pair)
		}
	}
}
