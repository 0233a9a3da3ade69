package relay

import (
	"net"
	"net/netip"
	"sync/atomic"
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
	ReasonSiteLocal   = "site_local"   // fec0::/10, deprecated by RFC 3879
	ReasonV4Compat    = "ipv4_compat"  // ::/96, IPv4-compatible, deprecated by RFC 4291
	ReasonV4Trans     = "ipv4_trans"   // ::ffff:0:0:0/96, IPv4-translated (RFC 2765 SIIT)
	ReasonSelf        = "self"         // the relay's own addresses and the host's interface addresses
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
	netip.MustParsePrefix("64:ff9b:1::/48"),
	netip.MustParsePrefix("fec0::/10"),
	netip.MustParsePrefix("::/96"),
	netip.MustParsePrefix("::ffff:0:0:0/96"),
}

var defaultDenyReasons = []string{
	ReasonThisNetwork, ReasonPrivate, ReasonShared, ReasonLoopback, ReasonLinkLocal, ReasonPrivate,
	ReasonIETF, ReasonPrivate, ReasonBenchmark, ReasonMulticast, ReasonReserved,
	ReasonUnspecified, ReasonLoopback, ReasonNAT64, ReasonDiscard, ReasonULA, ReasonLinkLocal, ReasonMulticast,
	ReasonNAT64, ReasonSiteLocal, ReasonV4Compat, ReasonV4Trans,
}

// IPv6 ranges that carry an IPv4 address (see embeddedV4).
var (
	nat64Prefix      = netip.MustParsePrefix("64:ff9b::/96")    // RFC 6052 well-known prefix
	nat64LocalPrefix = netip.MustParsePrefix("64:ff9b:1::/48")  // RFC 8215 local use
	v4CompatPrefix   = netip.MustParsePrefix("::/96")           // RFC 4291 section 2.5.5.1
	v4TransPrefix    = netip.MustParsePrefix("::ffff:0:0:0/96") // RFC 2765 section 2.1
	sixToFourPrefix  = netip.MustParsePrefix("2002::/16")       // RFC 3056
	teredoPrefix     = netip.MustParsePrefix("2001::/32")       // RFC 4380
	ipv6Unspecified  = netip.IPv6Unspecified()
	ipv6Loopback     = netip.IPv6Loopback()
)

// ACL decides which peer addresses an allocation may relay to. The relay
// consults it for CreatePermission, ChannelBind, Send and (RFC 6062) Connect.
//
// Precedence, highest first: an explicit deny (DenyPeers), an explicit allow
// (AllowPeers), the default deny list (DefaultDeniedPeers, then the relay's
// own addresses, see SetSelf), and finally allow.
//
// Addresses are canonicalised before they are judged: an IPv4-mapped IPv6
// address (::ffff:a.b.c.d) is judged as the IPv4 address, and zones are
// dropped. An IPv6 address that carries an IPv4 address is judged both as
// itself and as every IPv4 address it carries, and either verdict can deny
// it: NAT64 (64:ff9b::/96 and the local-use 64:ff9b:1::/48, the IPv4
// address in the last 32 bits), IPv4-compatible (::a.b.c.d),
// IPv4-translated (::ffff:0:a.b.c.d), 6to4 (2002:AABB:CCDD::/48) and Teredo
// (2001:0:SSSS:SSSS::, the server's address, and the client's, stored
// inverted in the last 32 bits). So allowing 64:ff9b::/96 to reach the IPv4
// internet through a NAT64 gateway never opens 64:ff9b::a00:1 (10.0.0.1),
// and 2002:7f00:1:: never reaches 127.0.0.1 through a 6to4 router.
type ACL struct {
	allow []netip.Prefix
	deny  []netip.Prefix
	defs  []aclEntry
	self  atomic.Pointer[map[netip.Addr]struct{}]
	// relays are the own addresses allocations live on, with the relay
	// port range: a peer there may be another client's allocation, which
	// two clients of one relay need (two UDP-blocked peers have no other
	// path), so it is allowed on those ports and denied (ReasonSelf) on
	// every other (SetRelayAddrs, CheckPort).
	relays           map[netip.Addr]struct{}
	portMin, portMax uint16
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

// SetSelf replaces the set of the relay's own addresses: they are denied with
// ReasonSelf unless AllowPeers covers them, after the default deny list (so
// 127.0.0.1 keeps the reason loopback). The relay sets its relay, advertised
// and listener addresses and every address of the host's interfaces, so that
// a client cannot reach the relay host's other services (its metrics port,
// an SSH daemon) through its public address.
func (a *ACL) SetSelf(addrs []netip.Addr) {
	m := make(map[netip.Addr]struct{}, len(addrs))
	for _, ip := range addrs {
		if ip.IsValid() {
			m[Canonical(ip)] = struct{}{}
		}
	}
	a.self.Store(&m)
}

// SetRelayAddrs names the own addresses allocations are relayed on and the
// relay port range. Call it before the ACL is in use. Those addresses are
// allowed by Check (a permission names an IP only) and by CheckPort on a
// port of the range: another allocation on this relay. On any other port
// CheckPort denies them with ReasonSelf, unless AllowPeers covers them.
func (a *ACL) SetRelayAddrs(addrs []netip.Addr, portMin, portMax uint16) {
	a.relays = make(map[netip.Addr]struct{}, len(addrs))
	for _, ip := range addrs {
		if ip.IsValid() {
			a.relays[Canonical(ip)] = struct{}{}
		}
	}
	a.portMin, a.portMax = portMin, portMax
}

// CheckPort is Check for a peer transport address: it also denies the
// relay's own allocation addresses on ports outside the relay port range
// (the host's other services, the TURN listener itself).
func (a *ACL) CheckPort(ap netip.AddrPort) (ok bool, reason string) {
	if ok, reason = a.Check(ap.Addr()); !ok {
		return false, reason
	}
	if !a.portOK(ap) {
		return false, ReasonSelf
	}
	return true, ""
}

func (a *ACL) allowed(ip netip.Addr) bool {
	for _, p := range a.allow {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

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
	v4s, n := embeddedV4(ip)
	for _, v4 := range v4s[:n] {
		if ok, reason = a.judge(v4); !ok {
			return false, reason
		}
	}
	return true, ""
}

// embeddedV4 returns the IPv4 addresses an IPv6 address carries (see ACL).
func embeddedV4(ip netip.Addr) (out [2]netip.Addr, n int) {
	if !ip.Is6() {
		return out, 0
	}
	b := ip.As16()
	v4 := func(i int) netip.Addr { return netip.AddrFrom4([4]byte(b[i : i+4])) }
	switch {
	case ip == ipv6Unspecified || ip == ipv6Loopback: // in ::/96, but not IPv4-compatible
	case nat64Prefix.Contains(ip), nat64LocalPrefix.Contains(ip), v4CompatPrefix.Contains(ip), v4TransPrefix.Contains(ip):
		out[0], n = v4(12), 1
	case sixToFourPrefix.Contains(ip):
		out[0], n = v4(2), 1
	case teredoPrefix.Contains(ip):
		client := [4]byte{^b[12], ^b[13], ^b[14], ^b[15]}
		out[0], out[1], n = v4(4), netip.AddrFrom4(client), 2
	}
	return out, n
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
	if self := a.self.Load(); self != nil {
		if _, found := (*self)[ip]; found {
			if _, relay := a.relays[ip]; relay {
				return true, "" // ports are CheckPort's
			}
			return false, ReasonSelf
		}
	}
	return true, ""
}

// The ACL in the server: pion/turn's PermissionHandler, Send indications
// and RFC 6062 Connect all ask permitAddr.

// permit is the ACL as pion's PermissionHandler, for CreatePermission,
// ChannelBind and Connect.
func (s *Server) permit(client netip.AddrPort, tcp bool, peer net.IP, st reqState) bool {
	verb := st.verb
	ip, _ := netip.AddrFromSlice(peer)
	if st.offPort {
		return s.noteVerdict(client, ip, verb, false, ReasonSelf)
	}
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
	ok, reason := s.checkPeer(ip)
	return s.noteVerdict(client, ip, verb, ok, reason)
}

// permitAddrPort is permitAddr for a peer whose port is known (Send,
// ChannelBind's fast path, Connect, every datagram pion relays).
func (s *Server) permitAddrPort(client netip.AddrPort, peer netip.AddrPort, verb string) bool {
	ok, reason := s.checkPeer(peer.Addr())
	if ok {
		ok, reason = s.acl.CheckPort(peer)
	}
	return s.noteVerdict(client, peer.Addr(), verb, ok, reason)
}

func (s *Server) noteVerdict(client netip.AddrPort, ip netip.Addr, verb string, ok bool, reason string) bool {
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

// portOK is the per-datagram half of CheckPort: false only for one of the
// relay's own allocation addresses on a port outside the relay port range
// (and not re-opened by AllowPeers). It costs a map lookup per datagram.
func (a *ACL) portOK(ap netip.AddrPort) bool {
	if len(a.relays) == 0 {
		return true
	}
	if ap.Port() >= a.portMin && ap.Port() <= a.portMax {
		return true
	}
	ip := Canonical(ap.Addr())
	v4s, n := embeddedV4(ip)
	for _, c := range append([]netip.Addr{ip}, v4s[:n]...) {
		if _, relay := a.relays[c]; relay && !a.allowed(c) {
			return false
		}
	}
	return true
}
