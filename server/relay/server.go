package relay

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ferrynet/ferry/internal/netaddr"
	"github.com/ferrynet/ferry/internal/pionlog"

	"github.com/pion/turn/v5"
)

// Server is a running TURN relay.
type Server struct {
	cfg  Config
	log  *slog.Logger
	acl  *ACL
	auth *authenticator
	m    *metrics
	turn *turn.Server

	ctx    context.Context
	cancel context.CancelFunc

	udp []*udpListener
	tcp []*tcpListener

	relayV4, relayV6 netip.Addr // local relay addresses
	advV4, advV6     netip.Addr // advertised relay addresses

	bwUp, bwDown *byteLimiter
	unauth       *ipLimiter
	quota        *quota
	draining     atomic.Bool

	resvMu sync.Mutex
	resv   map[string]reservation

	mu        sync.Mutex
	byClient  map[clientKey]*relayConn          // UDP relays by client
	relays    map[netip.AddrPort]*relayConn     // by advertised address
	tcpRelays map[netip.AddrPort]*relayListener // by advertised address
	allocs    atomic.Int64
	allocGone chan struct{} // signalled (non-blocking) when an allocation ends

	// live counts what pion/turn runs goroutines for (listener read loops,
	// accept loops, allocation read loops, TCP connections); Close waits
	// for it.
	live sync.WaitGroup

	closeOnce sync.Once
	closeErr  error
}

// New starts a relay. It takes ownership of the sockets in cfg; if it fails,
// it closes them and everything it opened, and leaves nothing running.
func New(cfg Config) (_ *Server, err error) {
	var owned []io.Closer
	for _, pc := range cfg.PacketConns {
		owned = append(owned, pc)
	}
	for _, ln := range cfg.TCPListeners {
		owned = append(owned, ln)
	}
	for _, ln := range cfg.TLSListeners {
		owned = append(owned, ln)
	}
	defer func() {
		if err != nil {
			for _, c := range owned {
				_ = c.Close()
			}
		}
	}()
	if err = cfg.Validate(); err != nil {
		return nil, err
	}
	c := cfg.withDefaults()
	ctx, cancel := context.WithCancel(context.Background())
	defer func() {
		if err != nil {
			cancel()
		}
	}()

	// Open the sockets named by address.
	pcs := append([]net.PacketConn(nil), c.PacketConns...)
	for _, a := range c.ListenUDP {
		conns, lerr := ListenUDP(ctx, a, c.UDPSockets)
		if lerr != nil {
			return nil, lerr
		}
		for _, pc := range conns {
			owned = append(owned, pc)
			pcs = append(pcs, pc)
		}
	}
	tcps := append([]net.Listener(nil), c.TCPListeners...)
	tlss := append([]net.Listener(nil), c.TLSListeners...)
	for _, list := range []struct {
		addrs []string
		dst   *[]net.Listener
	}{{c.ListenTCP, &tcps}, {c.ListenTLS, &tlss}} {
		for _, a := range list.addrs {
			ln, lerr := ListenTCP(ctx, a)
			if lerr != nil {
				return nil, lerr
			}
			owned = append(owned, ln)
			*list.dst = append(*list.dst, ln)
		}
	}

	s := &Server{
		cfg:       c,
		log:       c.Logger,
		acl:       NewACL(c.AllowPeers, c.DenyPeers),
		auth:      newAuthenticator(c.Realm, c.AuthSeparator, c.AuthSecrets, c.Users, c.now),
		ctx:       ctx,
		cancel:    cancel,
		bwUp:      newByteLimiter(c.ServerBandwidth),
		bwDown:    newByteLimiter(c.ServerBandwidth),
		unauth:    newIPLimiter(c.UnauthRepliesPerIP),
		quota:     newQuota(c.MaxAllocationsPerUser, c.MaxAllocations),
		relays:    map[netip.AddrPort]*relayConn{},
		byClient:  map[clientKey]*relayConn{},
		tcpRelays: map[netip.AddrPort]*relayListener{},
		allocGone: make(chan struct{}, 1),
		resv:      map[string]reservation{},
	}
	s.m = newMetrics(func() float64 { return float64(s.allocs.Load()) })
	if err = s.pickRelayIPs(pcs, tcps, tlss); err != nil {
		return nil, err
	}
	if err = s.m.register(c.Registerer); err != nil {
		return nil, fmt.Errorf("relay: register metrics: %w", err)
	}
	defer func() {
		if err != nil {
			_ = s.m.unregister(c.Registerer)
		}
	}()

	sc := turn.ServerConfig{
		Realm:              c.Realm,
		LoggerFactory:      pionlog.Factory{L: s.log},
		AuthHandler:        s.authHandle,
		QuotaHandler:       s.quotaHandle,
		AllocationLifetime: c.AllocationLifetime,
		EventHandler: turn.EventHandler{
			OnAuth:              s.onAuth,
			OnAllocationCreated: s.onAllocationCreated,
			OnPermissionCreated: s.onPermissionCreated,
			OnPermissionDeleted: s.onPermissionDeleted,
			OnChannelCreated:    s.onChannelCreated,
			OnChannelDeleted:    s.onChannelDeleted,
		},
	}
	for _, pc := range pcs {
		l := newUDPListener(s, pc)
		s.udp = append(s.udp, l)
		sc.PacketConnConfigs = append(sc.PacketConnConfigs, turn.PacketConnConfig{
			PacketConn:            l,
			RelayAddressGenerator: &generator{s: s, lis: l},
			PermissionHandler: func(client net.Addr, peer net.IP) bool {
				return s.permit(netaddr.AddrPort(client), false, peer, l.st.verb)
			},
		})
	}
	for i, ln := range append(tcps, tlss...) {
		var tc *tls.Config
		if i >= len(tcps) {
			tc = c.TLSConfig
		}
		l := newTCPListener(s, ln, tc)
		s.tcp = append(s.tcp, l)
		sc.ListenerConfigs = append(sc.ListenerConfigs, turn.ListenerConfig{
			Listener:              l,
			RelayAddressGenerator: &generator{s: s, tcpControl: true},
			PermissionHandler: func(client net.Addr, peer net.IP) bool {
				ap := netaddr.AddrPort(client)
				return s.permit(ap, true, peer, l.verbOf(ap))
			},
		})
	}
	s.live.Add(len(s.udp) + len(s.tcp))
	s.turn, err = turn.NewServer(sc)
	if err != nil {
		s.live.Add(-len(s.udp) - len(s.tcp))
		return nil, fmt.Errorf("relay: %w", err)
	}
	for _, adv := range []netip.Addr{s.advV4, s.advV6} {
		if adv.IsValid() && (adv.IsPrivate() || adv.IsLoopback() || adv.IsLinkLocalUnicast()) {
			s.log.Warn("the relay advertises a non-public address; clients on the internet need ExternalIPs (--external-ip)",
				"advertised", adv)
		}
	}
	s.log.Info("relay started", "udp_sockets", len(s.udp), "tcp_listeners", len(tcps), "tls_listeners", len(tlss),
		"relay_v4", s.relayV4, "relay_v6", s.relayV6, "advertised_v4", s.advV4, "advertised_v6", s.advV6,
		"ports", fmt.Sprintf("%d-%d", c.RelayPortMin, c.RelayPortMax), "realm", c.Realm)
	return s, nil
}

// pickRelayIPs chooses the local relay address of each family (see
// Config.RelayIPs) and the advertised one.
func (s *Server) pickRelayIPs(pcs []net.PacketConn, lists ...[]net.Listener) error {
	for _, ip := range s.cfg.RelayIPs {
		if ip = ip.Unmap(); ip.Is4() {
			s.relayV4 = ip
		} else {
			s.relayV6 = ip
		}
	}
	consider := func(a net.Addr) {
		ip := netaddr.AddrPort(a).Addr()
		switch {
		case !ip.IsValid() || ip.IsUnspecified():
		case ip.Is4() && !s.relayV4.IsValid():
			s.relayV4 = ip
		case ip.Is6() && !s.relayV6.IsValid():
			s.relayV6 = ip
		}
	}
	wildcard := false
	check := func(a net.Addr) {
		if ip := netaddr.AddrPort(a).Addr(); !ip.IsValid() || ip.IsUnspecified() {
			wildcard = true
		}
		consider(a)
	}
	for _, pc := range pcs {
		check(pc.LocalAddr())
	}
	for _, l := range lists {
		for _, ln := range l {
			check(ln.Addr())
		}
	}
	if wildcard && len(s.cfg.RelayIPs) == 0 {
		v4, v6 := hostAddrs()
		if !s.relayV4.IsValid() {
			s.relayV4 = v4
		}
		if !s.relayV6.IsValid() {
			s.relayV6 = v6
		}
	}
	if !s.relayV4.IsValid() && !s.relayV6.IsValid() {
		return fmt.Errorf("%w: the listeners are on wildcard addresses and the host has no global unicast address; set RelayIPs (--relay-ip)", ErrNoRelayIP)
	}
	s.advV4, s.advV6 = s.relayV4, s.relayV6
	for _, ip := range s.cfg.ExternalIPs {
		if ip = ip.Unmap(); ip.Is4() {
			s.advV4 = ip
		} else {
			s.advV6 = ip
		}
	}
	return nil
}

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

// clientKey identifies an allocation by its client and control transport.
type clientKey struct {
	client netip.AddrPort
	tcp    bool
}

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

// inspect runs the relay's own checks on a STUN message before pion/turn
// handles it, and reports whether pion should see it. It sets *verb to the
// ACL verb of a request, may rewrite LIFETIME in place (re-signing the
// message with the key it was verified with), and drops Send indications to
// denied peers.
func (s *Server) inspect(b []byte, client netip.AddrPort, st *reqState) bool {
	st.port = 0
	m, ok := parseSTUN(b)
	if !ok {
		s.m.drop[DropMalformed].Inc()
		return false
	}
	switch m.class() {
	case classRequest:
	case classIndication:
		if m.method() == methodSend {
			if v, _, found := m.attr(attrXORPeerAddress); found {
				if peer, valid := m.xorAddr(v); valid && !s.permitAddr(client, peer.Addr(), VerbSend) {
					s.m.drop[DropACL].Inc()
					return false
				}
			}
		}
		return true
	default:
		return true
	}
	method := m.method()
	st.verb = verbOf(method)
	mi := m.integrityOffset()
	if mi < 0 {
		if method != methodBinding {
			s.m.authChallenges.Inc()
		}
		return true
	}
	lifetime := method == methodAllocate || method == methodRefresh
	if !s.auth.needsVerify() && !lifetime {
		return true
	}
	uv, _, ok1 := m.attr(attrUsername)
	rv, _, ok2 := m.attr(attrRealm)
	if !ok1 || !ok2 {
		return true
	}
	key, ok := s.auth.verify(m, mi, string(uv), string(rv))
	if !ok {
		return true
	}
	if lifetime {
		s.clampLifetime(m, mi, key, method)
	}
	if method == methodAllocate && st.sharedTokens {
		s.takeReservation(m, mi, key, st)
	}
	return true
}

// reqState is what inspect learns about the request it hands to pion, for
// the hooks pion calls while handling it on the same goroutine.
type reqState struct {
	verb         string // ACL verb, for the permission handler
	port         int    // relay port reserved by a RESERVATION-TOKEN, for the generator
	sharedTokens bool   // resolve RESERVATION-TOKENs server-wide (UDP sockets)
}

// Reservations (RFC 8656 EVEN-PORT with the R bit, used for RTP/RTCP pairs).
// pion/turn keeps them per socket, but with SO_REUSEPORT the kernel may
// deliver the RTCP allocation's request, from another client port, to another
// socket. The relay therefore records each token pion hands out, and when an
// Allocate presents one it disguises the attribute as an unknown optional one
// (re-signing the request) and gives the reserved port to its own generator.

const (
	attrReservationToken = 0x0022
	attrXORRelayedAddr   = 0x0016
	attrHiddenToken      = 0xC0DE // comprehension-optional, unknown to pion
	reservationTTL       = 30 * time.Second
	maxReservations      = 4096
)

type reservation struct {
	port    int
	expires time.Time
}

// noteReservation records the token in an Allocate success response.
func (s *Server) noteReservation(p []byte) {
	m, ok := parseSTUN(p)
	if !ok {
		return
	}
	tok, _, ok1 := m.attr(attrReservationToken)
	ra, _, ok2 := m.attr(attrXORRelayedAddr)
	if !ok1 || !ok2 {
		return
	}
	relayed, ok := m.xorAddr(ra)
	if !ok {
		return
	}
	now := time.Now()
	s.resvMu.Lock()
	defer s.resvMu.Unlock()
	if len(s.resv) >= maxReservations {
		for k, r := range s.resv {
			if now.After(r.expires) {
				delete(s.resv, k)
			}
		}
		if len(s.resv) >= maxReservations {
			return
		}
	}
	s.resv[string(tok)] = reservation{port: int(relayed.Port()) + 1, expires: now.Add(reservationTTL)}
}

func (s *Server) takeReservation(m stunMsg, mi int, key []byte, st *reqState) {
	tok, off, ok := m.attr(attrReservationToken)
	if !ok || off > mi {
		return
	}
	s.resvMu.Lock()
	r, found := s.resv[string(tok)]
	if found {
		delete(s.resv, string(tok))
	}
	s.resvMu.Unlock()
	if !found || time.Now().After(r.expires) {
		return // pion answers 508, as for any unknown token
	}
	binary.BigEndian.PutUint16(m.b[off:off+2], attrHiddenToken)
	m.resign(mi, key)
	st.port = r.port
}

// clampLifetime enforces the lifetime bounds on an Allocate or Refresh whose
// integrity was verified with key, re-signing it after the change.
func (s *Server) clampLifetime(m stunMsg, mi int, key []byte, method uint16) {
	v, off, ok := m.attr(attrLifetime)
	if !ok || len(v) != 4 || off > mi {
		return
	}
	secs := binary.BigEndian.Uint32(v)
	if secs == 0 && method == methodRefresh {
		return
	}
	d := time.Duration(secs) * time.Second
	want := min(max(d, s.cfg.MinAllocationLifetime), s.cfg.MaxAllocationLifetime)
	if want >= pionMaxLifetime {
		want = pionMaxLifetime - time.Second
	}
	if want == d {
		return
	}
	binary.BigEndian.PutUint32(v, uint32(want/time.Second)) //nolint:gosec // <= 1h
	m.resign(mi, key)
}

// authHandle is pion's AuthHandler.
func (s *Server) authHandle(ra *turn.RequestAttributes) (string, []byte, bool) {
	userID, key, reason := s.auth.key(ra.Username, ra.Realm)
	if reason != "" {
		s.m.authFailures.WithLabelValues(reason).Inc()
		s.log.Debug("auth failed", "client", ra.SrcAddr, "username", ra.Username, "reason", reason)
		return "", nil, false
	}
	return userID, key, true
}

// onAuth counts integrity failures: pion calls it after checking the key.
func (s *Server) onAuth(src, _ net.Addr, _, username, _, method string, ok bool) {
	if !ok {
		s.m.authFailures.WithLabelValues(AuthBadIntegrity).Inc()
		s.log.Debug("auth failed", "client", src, "username", username, "method", method, "reason", AuthBadIntegrity)
	}
}

// quotaHandle is pion's QuotaHandler, consulted before an allocation is made.
func (s *Server) quotaHandle(userID, _ string, src net.Addr) bool {
	reason := ""
	if s.draining.Load() {
		reason = QuotaDraining
	} else {
		reason = s.quota.check(userID)
	}
	if reason != "" {
		s.m.quotaRejections.WithLabelValues(reason).Inc()
		s.log.Debug("allocation refused", "client", src, "user", userID, "reason", reason)
		return false
	}
	return true
}

func (s *Server) onAllocationCreated(src, _ net.Addr, _, userID, _ string, relayAddr net.Addr, _ int) {
	key := netaddr.AddrPort(relayAddr)
	client := netaddr.AddrPort(src)
	s.mu.Lock()
	rc := s.relays[key]
	rl := s.tcpRelays[key]
	s.mu.Unlock()
	transport := ""
	switch {
	case rc != nil:
		rc.client = client
		rc.established = true
		s.mu.Lock()
		s.byClient[clientKey{client, rc.lis == nil}] = rc
		s.mu.Unlock()
		s.live.Add(1) // pion's read loop for the allocation
		if rc.lis != nil {
			rc.lis.addClient(client, rc)
		}
		transport = "udp"
	case rl != nil:
		rl.established = true
		s.live.Add(1) // pion's accept loop for the allocation
		transport = "tcp"
	default:
		return
	}
	s.allocs.Add(1)
	s.m.allocCreated.WithLabelValues(transport).Inc()
	s.log.Debug("allocation created", "client", client, "relay", key, "user", userID, "transport", transport)
}

func (s *Server) relayByAddr(a net.Addr) *relayConn {
	key := netaddr.AddrPort(a)
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.relays[key]
}

func (s *Server) onPermissionCreated(_, _ net.Addr, _, _, _ string, relayAddr net.Addr, peer net.IP) {
	if rc := s.relayByAddr(relayAddr); rc != nil {
		ip, _ := netip.AddrFromSlice(peer)
		rc.setPermission(ip.Unmap(), true)
	}
}

func (s *Server) onPermissionDeleted(_, _ net.Addr, _, _, _ string, relayAddr net.Addr, peer net.IP) {
	if rc := s.relayByAddr(relayAddr); rc != nil {
		ip, _ := netip.AddrFromSlice(peer)
		rc.setPermission(ip.Unmap(), false)
	}
}

func (s *Server) onChannelCreated(_, _ net.Addr, _, _, _ string, relayAddr, peer net.Addr, number uint16) {
	if rc := s.relayByAddr(relayAddr); rc != nil {
		rc.addChannel(number, netaddr.AddrPort(peer))
	}
}

func (s *Server) onChannelDeleted(_, _ net.Addr, _, _, _ string, relayAddr, _ net.Addr, number uint16) {
	if rc := s.relayByAddr(relayAddr); rc != nil {
		rc.removeChannel(number)
	}
}

func (s *Server) allocationEnded(transport string) {
	s.allocs.Add(-1)
	s.m.allocDeleted.WithLabelValues(transport).Inc()
	select {
	case s.allocGone <- struct{}{}:
	default:
	}
}

// relayClosed is called once when a UDP relay socket closes.
func (s *Server) relayClosed(rc *relayConn) {
	if rc.lis != nil && rc.established {
		rc.lis.removeClient(rc.client, rc)
	}
	s.mu.Lock()
	if s.relays[rc.adv] == rc {
		delete(s.relays, rc.adv)
	}
	if k := (clientKey{rc.client, rc.lis == nil}); rc.established && s.byClient[k] == rc {
		delete(s.byClient, k)
	}
	s.mu.Unlock()
	s.quota.release(rc.user)
	if rc.established {
		s.allocationEnded("udp")
		s.log.Debug("allocation deleted", "client", rc.client, "relay", rc.adv, "user", rc.user)
	}
}

func (s *Server) tcpRelayClosed(rl *relayListener) {
	s.mu.Lock()
	if s.tcpRelays[rl.adv] == rl {
		delete(s.tcpRelays, rl.adv)
	}
	s.mu.Unlock()
	s.quota.release(rl.user)
	if rl.established {
		s.allocationEnded("tcp")
	}
}

// generator is pion's RelayAddressGenerator for one TURN listener.
type generator struct {
	s          *Server
	lis        *udpListener // UDP TURN socket, for the fast path
	tcpControl bool         // the listener is TCP or TLS
}

func (g *generator) Validate() error { return nil }

// reserve takes a quota slot for a new relay socket.
func (s *Server) reserve(user string) error {
	if s.draining.Load() {
		s.m.quotaRejections.WithLabelValues(QuotaDraining).Inc()
		return ErrDraining
	}
	if r := s.quota.acquire(user); r != "" {
		s.m.quotaRejections.WithLabelValues(r).Inc()
		return fmt.Errorf("%w: %s", ErrQuota, r)
	}
	return nil
}

func (s *Server) relayIPs(network string) (local, adv netip.Addr, err error) {
	switch network {
	case "udp4", "tcp4":
		local, adv = s.relayV4, s.advV4
	case "udp6", "tcp6":
		local, adv = s.relayV6, s.advV6
	}
	if !local.IsValid() {
		return local, adv, fmt.Errorf("%w: %s", ErrFamily, network)
	}
	return local, adv, nil
}

// bindPort calls open with ports from the relay range, starting at a random
// one, until one binds.
func (s *Server) bindPort(requested int, open func(port uint16) error) error {
	if requested != 0 {
		if requested < int(s.cfg.RelayPortMin) || requested > int(s.cfg.RelayPortMax) {
			return fmt.Errorf("%w: requested port %d is outside the relay range", ErrPortsExhausted, requested)
		}
		return open(uint16(requested)) //nolint:gosec // range-checked
	}
	lo, hi := int(s.cfg.RelayPortMin), int(s.cfg.RelayPortMax)
	span := hi - lo + 1
	start := rand.IntN(span) //nolint:gosec // port choice, not a secret
	var last error
	for i := range min(span, 64) {
		// Stride through the range so that a run of busy ports is skipped.
		p := lo + (start+i*7919)%span
		if last = open(uint16(p)); last == nil { //nolint:gosec // within uint16 range
			return nil
		}
	}
	s.m.quotaRejections.WithLabelValues(QuotaPorts).Inc()
	return fmt.Errorf("%w: %w", ErrPortsExhausted, last)
}

// AllocatePacketConn opens a UDP relay socket for a new allocation.
func (g *generator) AllocatePacketConn(c turn.AllocateListenerConfig) (net.PacketConn, net.Addr, error) {
	s := g.s
	local, adv, err := s.relayIPs(c.Network)
	if err != nil {
		return nil, nil, err
	}
	if err = s.reserve(c.UserID); err != nil {
		return nil, nil, err
	}
	requested := c.RequestedPort
	if requested == 0 && g.lis != nil {
		requested = g.lis.st.port
	}
	var rc *relayConn
	err = s.bindPort(requested, func(port uint16) error {
		pc, lerr := s.cfg.RelayNet.ListenPacket(c.Network, netip.AddrPortFrom(local, port))
		if lerr != nil {
			return lerr
		}
		rc = newRelayConn(s, pc, netip.AddrPortFrom(local, port), netip.AddrPortFrom(adv, port), c.UserID, g.lis)
		return nil
	})
	if err != nil {
		s.quota.release(c.UserID)
		return nil, nil, err
	}
	s.mu.Lock()
	s.relays[rc.adv] = rc
	s.mu.Unlock()
	return rc, net.UDPAddrFromAddrPort(rc.adv), nil
}

// AllocateListener opens an RFC 6062 TCP relay listener.
func (g *generator) AllocateListener(c turn.AllocateListenerConfig) (net.Listener, net.Addr, error) {
	s := g.s
	if !g.tcpControl {
		return nil, nil, ErrTCPOverUDP
	}
	local, adv, err := s.relayIPs(c.Network)
	if err != nil {
		return nil, nil, err
	}
	if err = s.reserve(c.UserID); err != nil {
		return nil, nil, err
	}
	var rl *relayListener
	err = s.bindPort(c.RequestedPort, func(port uint16) error {
		ln, lerr := s.cfg.RelayNet.ListenTCP(c.Network, netip.AddrPortFrom(local, port))
		if lerr != nil {
			return lerr
		}
		rl = &relayListener{
			s: s, ln: ln, local: netip.AddrPortFrom(local, port), adv: netip.AddrPortFrom(adv, port), user: c.UserID,
			shard: &s.m.traffic[int(port)%counterShards],
			up:    newByteLimiter(s.cfg.AllocationBandwidth), down: newByteLimiter(s.cfg.AllocationBandwidth),
		}
		return nil
	})
	if err != nil {
		s.quota.release(c.UserID)
		return nil, nil, err
	}
	s.mu.Lock()
	s.tcpRelays[rl.adv] = rl
	s.mu.Unlock()
	return rl, net.TCPAddrFromAddrPort(rl.adv), nil
}

// AllocateConn dials a peer for an RFC 6062 Connect, from the allocation's
// relay address.
func (g *generator) AllocateConn(c turn.AllocateConnConfig) (net.Conn, error) {
	s := g.s
	s.mu.Lock()
	rl := s.tcpRelays[netaddr.AddrPort(c.LocalAddr)]
	s.mu.Unlock()
	if rl == nil {
		return nil, fmt.Errorf("relay: no TCP allocation at %v", c.LocalAddr)
	}
	peer := netaddr.AddrPort(c.RemoteAddr)
	if ok, _ := s.acl.Check(peer.Addr()); !ok {
		return nil, ErrPeerDenied
	}
	ctx, cancel := s.dialContext()
	defer cancel()
	conn, err := s.cfg.RelayNet.DialTCP(ctx, c.Network, rl.local, peer)
	if err != nil {
		return nil, err
	}
	return s.newPeerConn(rl, conn), nil
}

// Drain stops accepting new allocations (Allocate gets 486 Allocation Quota
// Reached) while live allocations go on being served. It returns when none is
// left, or with ctx's error when ctx ends first. Draining cannot be undone.
func (s *Server) Drain(ctx context.Context) error {
	s.StartDrain()
	for s.allocs.Load() > 0 {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-s.allocGone:
		case <-time.After(time.Second):
		}
	}
	return nil
}

// StartDrain makes the server refuse new allocations, without waiting.
func (s *Server) StartDrain() {
	if !s.draining.Swap(true) {
		s.m.draining.Store(true)
		s.log.Info("draining: refusing new allocations", "allocations", s.allocs.Load())
	}
}

// Draining reports whether the server is draining.
func (s *Server) Draining() bool { return s.draining.Load() }

// Allocations returns the number of live allocations.
func (s *Server) Allocations() int { return int(s.allocs.Load()) }

// Traffic returns the relayed traffic totals.
func (s *Server) Traffic() Traffic { return s.m.totals() }

// UDPAddrs returns the local addresses of the UDP TURN sockets.
func (s *Server) UDPAddrs() []net.Addr {
	var out []net.Addr
	for _, l := range s.udp {
		out = append(out, l.LocalAddr())
	}
	return out
}

// TCPAddrs returns the addresses of the TCP and TLS listeners, in the order
// TCP then TLS.
func (s *Server) TCPAddrs() []net.Addr {
	var out []net.Addr
	for _, l := range s.tcp {
		out = append(out, l.Addr())
	}
	return out
}

// closeWait bounds how long Close waits for pion's goroutines.
const closeWait = 10 * time.Second

// Close stops the relay: it closes every socket and allocation, waits for the
// goroutines pion/turn runs for them, and unregisters the metrics. It is
// idempotent.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		s.StartDrain()
		s.cancel()
		var errs []error
		if err := s.turn.Close(); err != nil {
			errs = append(errs, err)
		}
		// pion closes the listeners but not the connections they accepted.
		for _, l := range s.tcp {
			_ = l.Close()
		}
		done := make(chan struct{})
		go func() {
			s.live.Wait()
			close(done)
		}()
		select {
		case <-done:
		case <-time.After(closeWait):
			errs = append(errs, ErrCloseTimeout)
		}
		errs = append(errs, s.m.unregister(s.cfg.Registerer))
		s.closeErr = errors.Join(errs...)
		s.log.Info("relay stopped")
	})
	return s.closeErr
}
