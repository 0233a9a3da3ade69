package relay

import (
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"

	"github.com/pion/turn/v5"

	"github.com/ferrynet/ferry/internal/netaddr"
)

// Allocation: the generator pion/turn asks for relay sockets, with quota
// reservation, the relay addresses of each family, and the relay port range.

// generator is pion's RelayAddressGenerator for one TURN listener.
type generator struct {
	s          *Server
	lis        *udpListener // UDP TURN socket, for the fast path
	tcpControl bool         // the listener is TCP or TLS
}

func (g *generator) Validate() error { return nil }

// reserve takes a quota slot for a new relay socket.
func (s *Server) reserve(userID string) error {
	if s.draining.Load() {
		s.m.quotaRejections.WithLabelValues(QuotaDraining).Inc()
		return ErrDraining
	}
	if r := s.quota.acquire(splitUserID(userID)); r != "" {
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
	requested := c.RequestedPort
	if requested == 0 && g.lis != nil {
		requested = g.lis.st.port
	}
	var rc *relayConn
	err := s.allocate(c.Network, c.UserID, requested, func(local, adv netip.AddrPort) error {
		pc, err := s.cfg.RelayNet.ListenPacket(c.Network, local)
		if err != nil {
			return err
		}
		rc = newRelayConn(s, pc, local, adv, c.UserID, g.lis)
		return nil
	})
	if err != nil {
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
	var rl *relayListener
	err := s.allocate(c.Network, c.UserID, c.RequestedPort, func(local, adv netip.AddrPort) error {
		ln, err := s.cfg.RelayNet.ListenTCP(c.Network, local)
		if err != nil {
			return err
		}
		rl = &relayListener{
			s: s, ln: ln, local: local, adv: adv, user: c.UserID,
			shard: &s.m.traffic[int(local.Port())%counterShards],
			up:    newByteLimiter(s.cfg.AllocationBandwidth), down: newByteLimiter(s.cfg.AllocationBandwidth),
		}
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	s.mu.Lock()
	s.tcpRelays[rl.adv] = rl
	s.mu.Unlock()
	return rl, net.TCPAddrFromAddrPort(rl.adv), nil
}

// allocate takes a quota slot for user and calls open with the local and
// advertised addresses of ports from the relay range (requested, when not
// 0) until one opens. If none does, the slot is given back.
func (s *Server) allocate(network, user string, requested int, open func(local, adv netip.AddrPort) error) error {
	local, adv, err := s.relayIPs(network)
	if err != nil {
		return err
	}
	if err = s.reserve(user); err != nil {
		return err
	}
	err = s.bindPort(requested, func(port uint16) error {
		return open(netip.AddrPortFrom(local, port), netip.AddrPortFrom(adv, port))
	})
	if err != nil {
		s.quota.release(splitUserID(user))
	}
	return err
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
	if !s.permitAddrPort(netaddr.AddrPort(c.LocalAddr), peer, VerbConnect) { // pion asked permit (IP only) already; this is the last word
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
