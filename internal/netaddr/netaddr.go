// Package netaddr converts the net.Addr values that sockets report into
// canonical netip.AddrPort values: IPv4-mapped IPv6 addresses (::ffff:a.b.c.d,
// what a dual-stack socket reports for an IPv4 peer) are unmapped, so that
// one peer has one key in every map, ACL and log of Ferry's.
package netaddr

import (
	"net"
	"net/netip"
)

// AddrPort returns the unmapped IP and port of a *net.UDPAddr or
// *net.TCPAddr, or of any other net.Addr whose String is "ip:port". It
// returns the zero AddrPort (IsValid false) for anything else.
func AddrPort(a net.Addr) netip.AddrPort {
	var ap netip.AddrPort
	switch v := a.(type) {
	case *net.UDPAddr:
		ap = v.AddrPort()
	case *net.TCPAddr:
		ap = v.AddrPort()
	case nil:
		return netip.AddrPort{}
	default:
		var err error
		if ap, err = netip.ParseAddrPort(a.String()); err != nil {
			return netip.AddrPort{}
		}
	}
	return Unmap(ap)
}

// Unmap returns ap with an IPv4-mapped IPv6 address turned into IPv4 (and the
// zone dropped with it); other addresses are returned unchanged.
func Unmap(ap netip.AddrPort) netip.AddrPort {
	if ap.Addr().Is4In6() {
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	}
	return ap
}
