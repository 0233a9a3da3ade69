package relay

import (
	"net"
	"net/netip"

	"github.com/pion/turn/v5"

	"github.com/ferrynet/ferry/internal/netaddr"
)

// pion/turn's callbacks: authentication (AuthHandler, OnAuth), quotas
// (QuotaHandler), and the events that mirror allocations, permissions and
// channels into the fast path; and the bookkeeping when an allocation ends.

// authHandle is pion's AuthHandler.
func (s *Server) authHandle(ra *turn.RequestAttributes) (string, []byte, bool) {
	user, key, reason := s.auth.key(ra.Username, ra.Realm)
	if reason != "" {
		s.m.authFailures.WithLabelValues(reason).Inc()
		s.log.Debug("auth failed", "client", ra.SrcAddr, "username", ra.Username, "reason", reason)
		return "", nil, false
	}
	return userIDOf(user, netaddr.AddrPort(ra.SrcAddr).Addr()), key, true
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
	user, ip := splitUserID(userID)
	reason := ""
	if s.draining.Load() {
		reason = QuotaDraining
	} else {
		reason = s.quota.check(user, ip)
	}
	if reason != "" {
		s.m.quotaRejections.WithLabelValues(reason).Inc()
		s.log.Debug("allocation refused", "client", src, "user", user, "reason", reason)
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
		if rc.lis == nil {
			rc.ctrl = s.tcpConnOf(client)
		}
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
		rl.ctrl = s.tcpConnOf(client)
		s.live.Add(1) // pion's accept loop for the allocation
		transport = "tcp"
	default:
		return
	}
	s.allocs.Add(1)
	s.m.allocCreated.WithLabelValues(transport).Inc()
	user, _ := splitUserID(userID)
	s.log.Debug("allocation created", "client", client, "relay", key, "user", user, "transport", transport)
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
	// A channel to a port the ACL refuses (the relay's own address off the
	// relay port range) never enters the fast path; pion's own path for
	// it ends in relayConn.WriteTo, which drops it.
	if rc := s.relayByAddr(relayAddr); rc != nil && s.acl.portOK(netaddr.AddrPort(peer)) {
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
	s.quota.release(splitUserID(rc.user))
	if rc.ctrl != nil {
		rc.ctrl.allocationEnded()
	}
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
	s.quota.release(splitUserID(rl.user))
	if rl.ctrl != nil {
		rl.ctrl.allocationEnded()
	}
	if rl.established {
		s.allocationEnded("tcp")
	}
}

// tcpConnOf returns the TCP or TLS connection of client, marked as holding
// an allocation, or nil.
func (s *Server) tcpConnOf(client netip.AddrPort) *tcpConn {
	for _, l := range s.tcp {
		if tc := l.conn(client); tc != nil {
			tc.allocated()
			return tc
		}
	}
	return nil
}
