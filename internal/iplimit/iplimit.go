// Package iplimit says what one source is for a per-source limit: one IPv4
// address, or one IPv6 /64, the unit a single subscriber controls (RFC 6177
// assigns end sites a /64 or more, so a limit per IPv6 address would be a
// limit on nothing). Both servers key their per-IP limits with it.
package iplimit

import "net/netip"

// Key returns the key of ip's source: ip itself for IPv4 (an IPv4-mapped
// IPv6 address counts as the IPv4 address it maps), the first address of
// its /64 (zone dropped) for IPv6. Keys are comparable, so they serve as map
// keys; the zero Addr keys to itself.
func Key(ip netip.Addr) netip.Addr {
	ip = ip.Unmap()
	if ip.Is6() {
		p, _ := ip.WithZone("").Prefix(64) // cannot fail for an IPv6 address
		ip = p.Addr()
	}
	return ip
}
