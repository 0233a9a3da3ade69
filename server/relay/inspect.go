package relay

import (
	"encoding/binary"
	"net/netip"
	"time"
)

// What the relay checks in a STUN message before pion/turn sees it
// (stunraw.go is the allocation-free view it reads through): malformed
// messages, Send indications to denied peers, lifetime bounds, several REST
// secrets, and reservations across SO_REUSEPORT sockets.

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
				if peer, valid := m.xorAddr(v); valid && !s.permitAddrPort(client, peer, VerbSend) {
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
	st.offPort = false
	if method == methodChannelBind || method == methodConnect {
		// pion's PermissionHandler sees the peer's IP only; the port is
		// judged here (the relay's own addresses off its port range).
		if v, _, found := m.attr(attrXORPeerAddress); found {
			if peer, valid := m.xorAddr(v); valid && !s.acl.portOK(peer) {
				st.offPort = true
			}
		}
	}
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
	offPort      bool   // the request's peer is an own address off the relay ports (ACL.CheckPort)
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
