package netaddr

import (
	"net"
	"net/netip"
	"testing"
)

type strAddr string

func (s strAddr) Network() string { return "x" }
func (s strAddr) String() string  { return string(s) }

func TestAddrPort(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   net.Addr
		want string
	}{
		{"udp4", &net.UDPAddr{IP: net.IPv4(10, 0, 0, 1), Port: 1}, "10.0.0.1:1"},
		{"udp mapped", net.UDPAddrFromAddrPort(netip.MustParseAddrPort("[::ffff:127.0.0.1]:3478")), "127.0.0.1:3478"},
		{"tcp6", &net.TCPAddr{IP: net.ParseIP("2001:db8::1"), Port: 443}, "[2001:db8::1]:443"},
		{"other, parsable", strAddr("[::ffff:203.0.113.9]:9"), "203.0.113.9:9"},
		{"other, garbage", strAddr("not an address"), "invalid AddrPort"},
		{"nil", nil, "invalid AddrPort"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := AddrPort(tc.in).String(); got != tc.want {
				t.Errorf("AddrPort(%v) = %s, want %s", tc.in, got, tc.want)
			}
		})
	}
}
