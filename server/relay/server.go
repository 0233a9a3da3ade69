package relay

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
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

	relayV4, relayV6 netip.Addr   // local relay addresses
	advV4, advV6     netip.Addr   // advertised relay addresses
	fixedSelf        []netip.Addr // relay, advertised and listener addresses, for the ACL
	selfAt           atomic.Int64 // when the ACL's own addresses were last refreshed (Unix ns)

	bwUp, bwDown *byteLimiter
	unauth       *ipLimiter
	quota        *quota
	connIPs      *ipCounter // TCP and TLS client connections per source
	unalloc      unallocList
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

// clientKey identifies an allocation by its client and control transport.
type clientKey struct {
	client netip.AddrPort
	tcp    bool
}

// New starts a relay. It takes ownership of the sockets in cfg; if it fails,
// it closes them and everything it opened, and leaves nothing running.
func New(cfg Config) (_ *Server, err error) {
	so := sockets{
		pcs:  slices.Clone(cfg.PacketConns),
		tcps: slices.Clone(cfg.TCPListeners),
		tlss: slices.Clone(cfg.TLSListeners),
	}
	defer func() {
		if err != nil {
			so.close()
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
	if err = so.listen(ctx, c); err != nil {
		return nil, err
	}

	s := &Server{
		cfg:       c,
		log:       c.Logger,
		acl:       NewACL(c.AllowPeers, c.DenyPeers),
		auth:      newAuthenticator(c.Realm, c.AuthSeparator, c.AuthSecrets, c.Users, c.now, c.MaxCredentialLifetime),
		ctx:       ctx,
		cancel:    cancel,
		bwUp:      newByteLimiter(c.ServerBandwidth),
		bwDown:    newByteLimiter(c.ServerBandwidth),
		unauth:    newIPLimiter(c.UnauthRepliesPerIP),
		quota:     newQuota(c.MaxAllocationsPerUser, c.MaxAllocationsPerIP, c.MaxAllocations),
		connIPs:   newIPCounter(c.MaxConnsPerIP),
		relays:    map[netip.AddrPort]*relayConn{},
		byClient:  map[clientKey]*relayConn{},
		tcpRelays: map[netip.AddrPort]*relayListener{},
		allocGone: make(chan struct{}, 1),
		resv:      map[string]reservation{},
	}
	s.m = newMetrics(func() float64 { return float64(s.allocs.Load()) })
	if err = s.pickRelayIPs(so.pcs, so.tcps, so.tlss); err != nil {
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

	sc := s.turnConfig(so)
	s.live.Add(len(s.udp) + len(s.tcp))
	s.turn, err = turn.NewServer(sc)
	if err != nil {
		s.live.Add(-len(s.udp) - len(s.tcp))
		return nil, fmt.Errorf("relay: %w", err)
	}
	s.logStarted(so)
	return s, nil
}

// sockets are the TURN sockets a server serves: those handed in and those
// it opened.
type sockets struct {
	pcs  []net.PacketConn
	tcps []net.Listener // TURN over TCP
	tlss []net.Listener // TURN over TLS: plain TCP listeners, TLS is the server's
}

// listen opens the sockets c names by address and adds them. When one fails
// to open, those opened before it are in so already, for close.
func (so *sockets) listen(ctx context.Context, c Config) error {
	for _, a := range c.ListenUDP {
		conns, err := ListenUDP(ctx, a, c.UDPSockets)
		if err != nil {
			return err
		}
		so.pcs = append(so.pcs, conns...)
	}
	for _, list := range []struct {
		addrs []string
		dst   *[]net.Listener
	}{{c.ListenTCP, &so.tcps}, {c.ListenTLS, &so.tlss}} {
		for _, a := range list.addrs {
			ln, err := ListenTCP(ctx, a)
			if err != nil {
				return err
			}
			*list.dst = append(*list.dst, ln)
		}
	}
	return nil
}

// close closes every socket, for a New that fails.
func (so *sockets) close() {
	for _, pc := range so.pcs {
		_ = pc.Close()
	}
	for _, ln := range append(so.tcps, so.tlss...) {
		_ = ln.Close()
	}
}

// turnConfig wraps each socket in the relay's listener (udpListener,
// tcpListener) and returns pion/turn's configuration with the relay's hooks:
// authentication, quotas, events, and per listener the relay address
// generator and the ACL as permission handler.
func (s *Server) turnConfig(so sockets) turn.ServerConfig {
	c := s.cfg
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
	for _, pc := range so.pcs {
		l := newUDPListener(s, pc)
		s.udp = append(s.udp, l)
		sc.PacketConnConfigs = append(sc.PacketConnConfigs, turn.PacketConnConfig{
			PacketConn:            l,
			RelayAddressGenerator: &generator{s: s, lis: l},
			PermissionHandler: func(client net.Addr, peer net.IP) bool {
				return s.permit(netaddr.AddrPort(client), false, peer, l.st)
			},
		})
	}
	for i, ln := range append(so.tcps, so.tlss...) {
		var tc *tls.Config
		if i >= len(so.tcps) {
			tc = c.TLSConfig
		}
		l := newTCPListener(s, ln, tc)
		s.tcp = append(s.tcp, l)
		sc.ListenerConfigs = append(sc.ListenerConfigs, turn.ListenerConfig{
			Listener:              l,
			RelayAddressGenerator: &generator{s: s, tcpControl: true},
			PermissionHandler: func(client net.Addr, peer net.IP) bool {
				ap := netaddr.AddrPort(client)
				return s.permit(ap, true, peer, l.stateOf(ap))
			},
		})
	}
	return sc
}

// logStarted logs what the relay serves, and warns when the address it
// advertises cannot be reached from the internet.
func (s *Server) logStarted(so sockets) {
	for _, adv := range []netip.Addr{s.advV4, s.advV6} {
		if adv.IsValid() && (adv.IsPrivate() || adv.IsLoopback() || adv.IsLinkLocalUnicast()) {
			s.log.Warn("the relay advertises a non-public address; clients on the internet need ExternalIPs (--external-ip)",
				"advertised", adv)
		}
	}
	for _, p := range s.acl.allow {
		var own []netip.Addr
		for _, ip := range append(slices.Clone(s.fixedSelf), interfaceAddrs()...) {
			if ip = Canonical(ip); ip.IsValid() && p.Contains(ip) && !slices.Contains(own, ip) {
				own = append(own, ip)
			}
		}
		if len(own) > 0 {
			s.log.Warn("an allowed peer range covers the relay's own addresses: clients can reach this host's services through them",
				"allow_peer", p, "addresses", own)
		}
	}
	s.log.Info("relay started", "udp_sockets", len(s.udp), "tcp_listeners", len(so.tcps), "tls_listeners", len(so.tlss),
		"relay_v4", s.relayV4, "relay_v6", s.relayV6, "advertised_v4", s.advV4, "advertised_v6", s.advV6,
		"ports", fmt.Sprintf("%d-%d", s.cfg.RelayPortMin, s.cfg.RelayPortMax), "realm", s.cfg.Realm)
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
		} else {
			s.fixedSelf = append(s.fixedSelf, ip)
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
	s.fixedSelf = append(s.fixedSelf, s.relayV4, s.relayV6, s.advV4, s.advV6)
	s.acl.SetRelayAddrs([]netip.Addr{s.relayV4, s.relayV6, s.advV4, s.advV6}, s.cfg.RelayPortMin, s.cfg.RelayPortMax)
	s.refreshSelf()
	return nil
}

// Shutdown is the graceful stop: it refuses new allocations (Allocate gets
// 486 Allocation Quota Reached, and Ready reports ErrDraining) while the live
// ones go on being served, waits until none is left or ctx ends, and then
// closes the server as Close does. It returns ctx's error when allocations
// were still live as ctx ended, joined with what Close returns. A second call
// returns at once with the first Close's result.
func (s *Server) Shutdown(ctx context.Context) error {
	s.startDrain()
	var err error
wait:
	for s.allocs.Load() > 0 {
		select {
		case <-ctx.Done():
			err = ctx.Err()
			s.log.Warn("shutdown grace ended with allocations still live", "allocations", s.allocs.Load())
			break wait
		case <-s.allocGone:
		case <-time.After(time.Second):
		}
	}
	return errors.Join(err, s.Close())
}

// startDrain makes the server refuse new allocations, without waiting.
func (s *Server) startDrain() {
	if !s.draining.Swap(true) {
		s.m.draining.Store(true)
		s.log.Info("draining: refusing new allocations", "allocations", s.allocs.Load())
	}
}

// Draining reports whether Shutdown (or Close) has begun.
func (s *Server) Draining() bool { return s.draining.Load() }

// Ready reports whether the server wants new clients: nil until Shutdown or
// Close begins, then ErrDraining. The ops endpoint /readyz answers with it.
func (s *Server) Ready() error {
	if s.draining.Load() {
		return ErrDraining
	}
	return nil
}

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

// Close stops the relay at once: it closes every socket and allocation, waits
// for the goroutines pion/turn runs for them, and unregisters the metrics. It
// is idempotent. Shutdown is the graceful stop.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		s.startDrain()
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
