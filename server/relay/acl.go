package relay

import (
	"net"
	"net/netip"
)

// ACL reasons: the label values of ferry_relay_acl_denials_total{reason}.
const (
	ReasonOperator    = "operator"     // an explicit DenyPeers prefix
	ReasonInvalid     = "invalid"      // not an IP address
	ReasonThisNetwork = "this_network" // 0.0.0.0/8
	ReasonPrivate     = "private"      // RFC 1918
	ReasonShared      = "shared"       // 100.64.0.0/10, carrier-grade NAT
	ReasonLoopback    = "loopback"     // 127.0.0.0/8, ::1
	ReasonLinkLocal   = "link_local"   // 169.254.0.0/16 (cloud metadata), fe80::/10
	ReasonIETF        = "ietf"         // 192.0.0.0/24, IETF protocol assignments
	ReasonBenchmark   = "benchmark"    // 198.18.0.0/15
	ReasonMulticast   = "multicast"    // 224.0.0.0/4, ff00::/8
	ReasonReserved    = "reserved"     // 240.0.0.0/4, including 255.255.255.255
	ReasonUnspecified = "unspecified"  // ::
	ReasonNAT64       = "nat64"        // 64:ff9b::/96
	ReasonDiscard     = "discard"      // 100::/64
	ReasonULA         = "ula"          // fc00::/7
)

type aclEntry struct {
	prefix netip.Prefix
	reason string
}

// DefaultDeniedPeers is the deny-by-default list: ranges a relay on the public
// internet must never relay into, because they reach the relay's own host, its
// private network, its cloud's metadata service, or nothing legitimate.
var DefaultDeniedPeers = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),
	netip.MustParsePrefix("10.0.0.0/8"),
	netip.MustParsePrefix("100.64.0.0/10"),
	netip.MustParsePrefix("127.0.0.0/8"),
	netip.MustParsePrefix("169.254.0.0/16"),
	netip.MustParsePrefix("172.16.0.0/12"),
	netip.MustParsePrefix("192.0.0.0/24"),
	netip.MustParsePrefix("192.168.0.0/16"),
	netip.MustParsePrefix("198.18.0.0/15"),
	netip.MustParsePrefix("224.0.0.0/4"),
	netip.MustParsePrefix("240.0.0.0/4"),
	netip.MustParsePrefix("::/128"),
	netip.MustParsePrefix("::1/128"),
	netip.MustParsePrefix("64:ff9b::/96"),
	netip.MustParsePrefix("100::/64"),
	netip.MustParsePrefix("fc00::/7"),
	netip.MustParsePrefix("fe80::/10"),
	netip.MustParsePrefix("ff00::/8"),
}

var defaultDenyReasons = []string{
	ReasonThisNetwork, ReasonPrivate, ReasonShared, ReasonLoopback, ReasonLinkLocal, ReasonPrivate,
	ReasonIETF, ReasonPrivate, ReasonBenchmark, ReasonMulticast, ReasonReserved,
	ReasonUnspecified, ReasonLoopback, ReasonNAT64, ReasonDiscard, ReasonULA, ReasonLinkLocal, ReasonMulticast,
}

var nat64Prefix = netip.MustParsePrefix("64:ff9b::/96")

// ACL decides which peer addresses an allocation may relay to. The relay
// consults it for CreatePermission, ChannelBind, Send and (RFC 6062) Connect.
//
// Precedence, highest first: an explicit deny (DenyPeers), an explicit allow
// (AllowPeers), the default deny list (DefaultDeniedPeers), and finally allow.
//
// Addresses are canonicalised before they are judged: an IPv4-mapped IPv6
// address (::ffff:a.b.c.d) is judged as the IPv4 address, zones are dropped,
// and a NAT64 address (64:ff9b::/96) is judged both as itself and as the IPv4
// address it embeds; either verdict can deny it. So allowing 64:ff9b::/96 to
// reach the IPv4 internet through a NAT64 gateway never opens 64:ff9b::a00:1
// (10.0.0.1).
type ACL struct {
	allow []netip.Prefix
	deny  []netip.Prefix
	defs  []aclEntry
}

// NewACL returns an ACL with the default deny list plus the operator's
// allow and deny prefixes. Prefixes are masked; IPv4-mapped prefixes are
// converted to IPv4.
func NewACL(allow, deny []netip.Prefix) *ACL {
	a := &ACL{}
	for _, p := range allow {
		a.allow = append(a.allow, canonPrefix(p))
	}
	for _, p := range deny {
		a.deny = append(a.deny, canonPrefix(p))
	}
	for i, p := range DefaultDeniedPeers {
		a.defs = append(a.defs, aclEntry{p, defaultDenyReasons[i]})
	}
	return a
}

func canonPrefix(p netip.Prefix) netip.Prefix {
	addr := p.Addr().WithZone("")
	bits := p.Bits()
	if addr.Is4In6() && bits >= 96 {
		addr = addr.Unmap()
		bits -= 96
	}
	return netip.PrefixFrom(addr, bits).Masked()
}

// Canonical returns the address the ACL judges for ip: unmapped, without zone.
func Canonical(ip netip.Addr) netip.Addr { return ip.Unmap().WithZone("") }

// Check reports whether relaying to ip is allowed, and when it is not, the
// reason (one of the Reason* constants).
func (a *ACL) Check(ip netip.Addr) (ok bool, reason string) {
	if !ip.IsValid() {
		return false, ReasonInvalid
	}
	ip = Canonical(ip)
	if ok, reason = a.judge(ip); !ok {
		return false, reason
	}
	if ip.Is6() && nat64Prefix.Contains(ip) {
		b := ip.As16()
		return a.judge(netip.AddrFrom4([4]byte{b[12], b[13], b[14], b[15]}))
	}
	return true, ""
}

func (a *ACL) judge(ip netip.Addr) (bool, string) {
	for _, p := range a.deny {
		if p.Contains(ip) {
			return false, ReasonOperator
		}
	}
	for _, p := range a.allow {
		if p.Contains(ip) {
			return true, ""
		}
	}
	for _, e := range a.defs {
		if e.prefix.Contains(ip) {
			return false, e.reason
		}
	}
	return true, ""
}

// The ACL in the server: pion/turn's PermissionHandler, Send indications
// and RFC 6062 Connect all ask permitAddr.

// permit is the ACL as pion's PermissionHandler, for CreatePermission,
// ChannelBind and Connect.
func (s *Server) permit(client netip.AddrPort, tcp bool, peer net.IP, verb string) bool {
	ip, _ := netip.AddrFromSlice(peer)
	if !s.permitAddr(client, ip, verb) {
		return false
	}
	// Bound the state one allocation can make: every permission and
	// channel costs memory here and in pion/turn.
	s.mu.Lock()
	rc := s.byClient[clientKey{client, tcp}]
	s.mu.Unlock()
	if rc == nil {
		return true
	}
	ip = ip.Unmap()
	full := false
	switch verb {
	case VerbCreatePermission:
		full = !rc.permitted(ip) && rc.permissions() >= MaxPeersPerAllocation
	case VerbChannelBind:
		full = (!rc.permitted(ip) && rc.permissions() >= MaxPeersPerAllocation) ||
			rc.channels() >= MaxPeersPerAllocation
	}
	if full {
		s.m.quotaRejections.WithLabelValues(QuotaPeers).Inc()
		s.log.Debug("permission refused: too many peers", "client", client, "peer", ip, "verb", verb)
		return false
	}
	return true
}

// MaxPeersPerAllocation caps the permissions (peer IPs) and the channels of
// one allocation; requests beyond it are refused.
const MaxPeersPerAllocation = 1024

func (s *Server) permitAddr(client netip.AddrPort, ip netip.Addr, verb string) bool {
	ok, reason := s.acl.Check(ip)
	if !ok {
		if verb == "" {
			verb = "unknown"
		}
		s.m.aclDenials.WithLabelValues(verb, reason).Inc()
		s.log.Debug("peer denied by ACL", "client", client, "peer", ip, "verb", verb, "reason", reason)
	}
	return ok
}

func verbOf(method uint16) string {
	switch method {
	case methodCreatePermission:
		return VerbCreatePermission
	case methodChannelBind:
		return VerbChannelBind
	case methodConnect:
		return VerbConnect
	}
	return ""
}
