package relay

import (
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// udpListener wraps one TURN UDP socket as pion/turn's PacketConn. pion runs
// one read loop per socket; ReadFrom relays ChannelData from clients with
// channel bindings itself (the fast path), drops garbage, runs the relay's own
// checks on STUN messages, and hands the rest to pion. WriteTo applies the
// per-IP cap on 401 replies.
type udpListener struct {
	s   *Server
	pc  net.PacketConn
	udp *net.UDPConn // pc when it is an OS socket, else nil

	// st describes the request being handed to pion. Only the read
	// goroutine touches it: pion calls ReadFrom, then handles the request
	// (and calls the permission handler and the generator) on the same
	// goroutine.
	st reqState

	mu      sync.RWMutex
	clients map[netip.AddrPort]*relayConn

	exited atomic.Bool
}

func newUDPListener(s *Server, pc net.PacketConn) *udpListener {
	l := &udpListener{s: s, pc: pc, clients: map[netip.AddrPort]*relayConn{}, st: reqState{sharedTokens: true}}
	l.udp, _ = pc.(*net.UDPConn)
	return l
}

func (l *udpListener) addClient(client netip.AddrPort, rc *relayConn) {
	l.mu.Lock()
	l.clients[client] = rc
	l.mu.Unlock()
}

func (l *udpListener) removeClient(client netip.AddrPort, rc *relayConn) {
	l.mu.Lock()
	if l.clients[client] == rc {
		delete(l.clients, client)
	}
	l.mu.Unlock()
}

// ReadFrom implements net.PacketConn for pion's read loop.
func (l *udpListener) ReadFrom(p []byte) (int, net.Addr, error) {
	for {
		var (
			n    int
			from netip.AddrPort
			addr net.Addr
			err  error
		)
		if l.udp != nil {
			n, from, err = l.udp.ReadFromUDPAddrPort(p)
			from = unmapAP(from)
		} else {
			n, addr, err = l.pc.ReadFrom(p)
			from = addrPortOf(addr)
		}
		if err != nil {
			if l.exited.CompareAndSwap(false, true) {
				l.s.live.Done()
			}
			return 0, nil, err
		}
		b := p[:n]
		if isChannelData(b) {
			l.mu.RLock()
			rc := l.clients[from]
			l.mu.RUnlock()
			if rc != nil && rc.udp != nil && rc.sendToPeer(b) {
				continue
			}
		} else if !l.s.inspect(b, from, &l.st) {
			continue
		}
		if addr == nil {
			addr = net.UDPAddrFromAddrPort(from)
		}
		return n, addr, nil
	}
}

// WriteTo implements net.PacketConn: pion's replies and relayed data.
func (l *udpListener) WriteTo(p []byte, addr net.Addr) (int, error) {
	if len(p) > stunHeaderSize && p[0] == 0x01 && p[1] == 0x03 { // Allocate success
		l.s.noteReservation(p)
	}
	if isErrorResponse(p) {
		if m, ok := parseSTUN(p); ok {
			if c := m.errorCode(); (c == 401 || c == 438) && !l.s.unauth.allow(addrPortOf(addr).Addr()) {
				l.s.m.drop[DropUnauthLimit].Inc()
				return len(p), nil
			}
		}
	}
	return l.pc.WriteTo(p, addr)
}

func (l *udpListener) Close() error                       { return l.pc.Close() }
func (l *udpListener) LocalAddr() net.Addr                { return l.pc.LocalAddr() }
func (l *udpListener) SetDeadline(t time.Time) error      { return l.pc.SetDeadline(t) }
func (l *udpListener) SetReadDeadline(t time.Time) error  { return l.pc.SetReadDeadline(t) }
func (l *udpListener) SetWriteDeadline(t time.Time) error { return l.pc.SetWriteDeadline(t) }
