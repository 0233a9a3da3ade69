package relay

import (
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/ferrynet/ferry/internal/netaddr"
)

// udpSock is a UDP socket as the relay reads it: through the OS socket
// when it is one (batched on Linux), else through net.PacketConn. TURN
// sockets (udpListener) and relay sockets (relayConn) are both.
type udpSock struct {
	pc  net.PacketConn
	udp *net.UDPConn // pc when it is an OS socket, else nil
	sio *sockIO      // raw handle of udp for batched I/O (Linux), else nil
}

func newUDPSock(pc net.PacketConn) udpSock {
	udp, _ := pc.(*net.UDPConn)
	return udpSock{pc: pc, udp: udp, sio: newSockIO(udp)}
}

// readOne reads one datagram without batching. from is the unmapped source;
// addr is the source a PacketConn that is not an OS socket reported (nil
// for an OS socket); trunc reports a datagram larger than p (OS sockets
// only).
func (u *udpSock) readOne(p []byte) (n int, from netip.AddrPort, addr net.Addr, trunc bool, err error) {
	if u.udp != nil {
		var flags int
		n, _, flags, from, err = u.udp.ReadMsgUDPAddrPort(p, nil)
		return n, netaddr.Unmap(from), nil, err == nil && flags&syscall.MSG_TRUNC != 0, err
	}
	n, addr, err = u.pc.ReadFrom(p)
	return n, netaddr.AddrPort(addr), addr, false, err
}

// udpListener wraps one TURN UDP socket as pion/turn's PacketConn. pion runs
// one read loop per socket; ReadFrom relays ChannelData from clients with
// channel bindings itself (the fast path), drops garbage, runs the relay's own
// checks on STUN messages, and hands the rest to pion. WriteTo applies the
// per-IP cap on 401 replies.
type udpListener struct {
	s *Server
	udpSock

	// Used only by the read goroutine.
	rx     *rxBatch
	tx     *txBatch
	txDest *relayConn // the relay socket tx's datagrams go out on

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
	return &udpListener{s: s, udpSock: newUDPSock(pc), clients: map[netip.AddrPort]*relayConn{}, st: reqState{sharedTokens: true}}
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
	if l.sio != nil {
		return l.readBatched(p)
	}
	for {
		// Truncation is left to the parsers, as it always was here: a
		// TURN socket's buffer is pion's, larger than any request.
		n, from, addr, _, err := l.readOne(p)
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

// listenerBatch is how many datagrams a TURN socket reads per system call.
const listenerBatch = 32

// readBatched is ReadFrom on Linux: ChannelData for bound channels goes to
// the peers in sendmmsg batches per relay socket without leaving this
// function; everything else is inspected and handed to pion.
func (l *udpListener) readBatched(p []byte) (int, net.Addr, error) {
	if l.rx == nil {
		l.rx = newRxBatch(l.sio, listenerBatch, maxDatagram, 0)
		l.tx = newTxBatch(listenerBatch)
	}
	for {
		buf, n, from, trunc, err := l.rx.next()
		if err != nil {
			l.flushToPeers()
			if l.exited.CompareAndSwap(false, true) {
				l.s.live.Done()
			}
			return 0, nil, err
		}
		b := buf[:n]
		pass := false
		switch {
		case trunc:
			l.s.m.drop[DropMalformed].Inc()
		case isChannelData(b):
			pass = !l.toPeer(b, from)
		default:
			pass = l.s.inspect(b, from, &l.st)
		}
		if pass {
			l.flushToPeers()
			return copy(p, b), net.UDPAddrFromAddrPort(from), nil
		}
		if !l.rx.pending() {
			l.flushToPeers()
		}
	}
}

// toPeer queues a client's ChannelData for its peer; false means pion should
// handle it.
func (l *udpListener) toPeer(b []byte, from netip.AddrPort) bool {
	l.mu.RLock()
	rc := l.clients[from]
	l.mu.RUnlock()
	if rc == nil || rc.sio == nil {
		return false
	}
	payload, peer, ok, handled := rc.checkToPeer(b)
	if !ok {
		return handled
	}
	if l.txDest != rc {
		l.flushToPeers()
		l.txDest = rc
	}
	if !l.tx.add(rc.sio, payload, peer) {
		l.flushToPeers()
		l.txDest = rc
		if !l.tx.add(rc.sio, payload, peer) {
			l.s.m.drop[DropSendError].Inc()
		}
	}
	return true
}

func (l *udpListener) flushToPeers() {
	if l.tx.len() == 0 {
		return
	}
	if failed, _ := l.tx.flush(l.txDest.sio); failed > 0 {
		l.s.m.drop[DropSendError].Add(float64(failed))
	}
	l.txDest = nil
}

// WriteTo implements net.PacketConn: pion's replies and relayed data.
func (l *udpListener) WriteTo(p []byte, addr net.Addr) (int, error) {
	if len(p) > stunHeaderSize && p[0] == 0x01 && p[1] == 0x03 { // Allocate success
		l.s.noteReservation(p)
	}
	if isErrorResponse(p) {
		if m, ok := parseSTUN(p); ok {
			if c := m.errorCode(); (c == 401 || c == 438) && !l.s.unauth.allow(netaddr.AddrPort(addr).Addr()) {
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
