package relay

import (
	"encoding/binary"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ferrynet/ferry/internal/netaddr"
)

// relayConn is an allocation's UDP relay socket, as handed to pion/turn. It
// counts and rate-limits what pion relays through it, and it carries the fast
// path: a copy of the allocation's channel bindings and permissions (kept in
// step by pion's event callbacks) lets the relay move ChannelData between
// client and peer without entering pion/turn, with no allocation, no lock and
// no log call per packet.
type relayConn struct {
	s *Server
	udpSock
	local netip.AddrPort
	adv   netip.AddrPort // the relayed address clients see
	user  string         // the user ID (userIDOf)
	lis   *udpListener   // the TURN socket that owns the allocation; nil for TCP control
	shard *trafficShard
	up    *byteLimiter // client -> peer
	down  *byteLimiter // peer -> client

	// Set once when pion reports the allocation, before pion starts the
	// reading goroutine and before the listener can find this conn.
	client      netip.AddrPort
	established bool
	ctrl        *tcpConn // the TCP or TLS control connection, if any

	tblMu sync.Mutex // serialises writers of the tables below
	chans atomic.Pointer[chanTable]
	perms atomic.Pointer[map[netip.Addr]struct{}]

	// Used only by pion's reading goroutine (ReadFrom).
	rx *rxBatch
	tx *txBatch

	readerDone atomic.Bool
	closeOnce  sync.Once
	closeErr   error
}

type chanTable struct {
	byNum  map[uint16]netip.AddrPort
	byPeer map[netip.AddrPort]uint16
}

var emptyChans = &chanTable{byNum: map[uint16]netip.AddrPort{}, byPeer: map[netip.AddrPort]uint16{}}

func newRelayConn(s *Server, pc net.PacketConn, local, adv netip.AddrPort, user string, lis *udpListener) *relayConn {
	rc := &relayConn{
		s: s, udpSock: newUDPSock(pc), local: local, adv: adv, user: user, lis: lis,
		shard: &s.m.traffic[int(local.Port())%counterShards],
		up:    newByteLimiter(s.cfg.AllocationBandwidth),
		down:  newByteLimiter(s.cfg.AllocationBandwidth),
	}
	rc.chans.Store(emptyChans)
	empty := map[netip.Addr]struct{}{}
	rc.perms.Store(&empty)
	return rc
}

// fast reports whether ChannelData can bypass pion for this allocation.
func (rc *relayConn) fast() bool { return rc.udp != nil && rc.lis != nil && rc.lis.udp != nil }

func (rc *relayConn) addChannel(num uint16, peer netip.AddrPort) {
	rc.tblMu.Lock()
	defer rc.tblMu.Unlock()
	old := rc.chans.Load()
	t := &chanTable{byNum: make(map[uint16]netip.AddrPort, len(old.byNum)+1), byPeer: make(map[netip.AddrPort]uint16, len(old.byPeer)+1)}
	for k, v := range old.byNum {
		t.byNum[k] = v
	}
	for k, v := range old.byPeer {
		t.byPeer[k] = v
	}
	t.byNum[num] = peer
	t.byPeer[peer] = num
	rc.chans.Store(t)
}

func (rc *relayConn) removeChannel(num uint16) {
	rc.tblMu.Lock()
	defer rc.tblMu.Unlock()
	old := rc.chans.Load()
	t := &chanTable{byNum: make(map[uint16]netip.AddrPort, len(old.byNum)), byPeer: make(map[netip.AddrPort]uint16, len(old.byPeer))}
	for k, v := range old.byNum {
		if k != num {
			t.byNum[k] = v
			t.byPeer[v] = k
		}
	}
	rc.chans.Store(t)
}

func (rc *relayConn) setPermission(ip netip.Addr, on bool) {
	rc.tblMu.Lock()
	defer rc.tblMu.Unlock()
	old := *rc.perms.Load()
	m := make(map[netip.Addr]struct{}, len(old)+1)
	for k := range old {
		m[k] = struct{}{}
	}
	if on {
		m[ip] = struct{}{}
	} else {
		delete(m, ip)
	}
	rc.perms.Store(&m)
}

func (rc *relayConn) permissions() int { return len(*rc.perms.Load()) }
func (rc *relayConn) channels() int    { return len(rc.chans.Load().byNum) }

func (rc *relayConn) permitted(ip netip.Addr) bool {
	_, ok := (*rc.perms.Load())[ip]
	return ok
}

func (rc *relayConn) allowUp(n int) bool {
	if rc.up == nil && rc.s.bwUp == nil {
		return true
	}
	now := time.Now()
	return rc.up.allow(now, n) && rc.s.bwUp.allow(now, n)
}

func (rc *relayConn) allowDown(n int) bool {
	if rc.down == nil && rc.s.bwDown == nil {
		return true
	}
	now := time.Now()
	return rc.down.allow(now, n) && rc.s.bwDown.allow(now, n)
}

// checkToPeer validates a ChannelData message from the client for the fast
// path and returns its payload and peer. handled reports that the message was
// consumed (dropped); ok=false, handled=false means pion should handle it.
func (rc *relayConn) checkToPeer(b []byte) (payload []byte, peer netip.AddrPort, ok, handled bool) {
	num := binary.BigEndian.Uint16(b[0:2])
	n := int(binary.BigEndian.Uint16(b[2:4]))
	if n > len(b)-chanHeaderSize {
		rc.s.m.drop[DropBadLength].Inc()
		return nil, peer, false, true
	}
	peer, found := rc.chans.Load().byNum[num]
	if !found {
		return nil, peer, false, false
	}
	if !rc.allowUp(n) {
		rc.s.m.drop[DropRateLimited].Inc()
		return nil, peer, false, true
	}
	rc.shard.toPeerBytes.Add(uint64(n))
	rc.shard.toPeerPkts.Add(1)
	return b[chanHeaderSize : chanHeaderSize+n], peer, true, true
}

// sendToPeer relays one ChannelData message from the client (the portable
// fast path). It reports false when pion should handle the message instead.
func (rc *relayConn) sendToPeer(b []byte) bool {
	payload, peer, ok, handled := rc.checkToPeer(b)
	if !ok {
		return handled
	}
	if _, err := rc.udp.WriteToUDPAddrPort(payload, peer); err != nil {
		rc.s.m.drop[DropSendError].Inc()
	}
	return true
}

// ReadFrom is called by pion's per-allocation goroutine. ChannelData for
// bound peers is relayed here and never returned; datagrams from peers with
// only a permission go back to pion, which wraps them in Data indications.
func (rc *relayConn) ReadFrom(p []byte) (int, net.Addr, error) {
	if rc.sio != nil {
		return rc.readBatched(p)
	}
	for {
		// Read past a ChannelData header's worth of room, so the fast path
		// can prepend the header in place.
		fast := rc.fast() && len(p) > 2*chanHeaderSize
		buf := p
		if fast {
			buf = p[chanHeaderSize:]
		}
		n, from, addr, trunc, err := rc.readOne(buf)
		if trunc {
			rc.s.m.drop[DropTruncated].Inc()
			continue
		}
		if err != nil {
			if rc.readerDone.CompareAndSwap(false, true) && rc.established {
				rc.s.live.Done()
			}
			return 0, nil, err
		}
		if fast {
			if num, ok := rc.chans.Load().byPeer[from]; ok {
				if !rc.allowDown(n) {
					rc.s.m.drop[DropRateLimited].Inc()
					continue
				}
				binary.BigEndian.PutUint16(p[0:2], num)
				binary.BigEndian.PutUint16(p[2:4], uint16(n)) //nolint:gosec // n < len(p) <= 64 KiB
				if _, err := rc.lis.udp.WriteToUDPAddrPort(p[:chanHeaderSize+n], rc.client); err != nil {
					rc.s.m.drop[DropSendError].Inc()
					continue
				}
				rc.shard.toClientBytes.Add(uint64(n))
				rc.shard.toClientPkts.Add(1)
				continue
			}
		}
		if !rc.permitted(from.Addr()) {
			if _, bound := rc.chans.Load().byPeer[from]; !bound {
				rc.s.m.drop[DropNoPermission].Inc()
				continue
			}
		}
		if !rc.allowDown(n) {
			rc.s.m.drop[DropRateLimited].Inc()
			continue
		}
		if fast {
			copy(p, buf[:n])
		}
		rc.shard.toClientBytes.Add(uint64(n))
		rc.shard.toClientPkts.Add(1)
		if addr == nil {
			addr = net.UDPAddrFromAddrPort(from)
		}
		return n, addr, nil
	}
}

// relayBatch is how many datagrams a relay socket reads per system call.
const relayBatch = 4

// maxDatagram is the largest datagram the relay reads whole, matching
// pion/turn's read buffers; larger ones are dropped as truncated.
const maxDatagram = 1600

// readBatched is ReadFrom on Linux: datagrams from bound peers go to the
// client in sendmmsg batches through the TURN socket, without leaving this
// function.
func (rc *relayConn) readBatched(p []byte) (int, net.Addr, error) {
	if rc.rx == nil {
		rc.rx = newRxBatch(rc.sio, relayBatch, maxDatagram, chanHeaderSize)
		rc.tx = newTxBatch(relayBatch)
	}
	fast := rc.lis != nil && rc.lis.sio != nil
	for {
		buf, n, from, trunc, err := rc.rx.next()
		if err != nil {
			rc.flushToClient()
			if rc.readerDone.CompareAndSwap(false, true) && rc.established {
				rc.s.live.Done()
			}
			return 0, nil, err
		}
		switch {
		case trunc:
			rc.s.m.drop[DropTruncated].Inc()
		case fast && rc.toClient(buf, n, from):
		default:
			rc.flushToClient()
			if _, bound := rc.chans.Load().byPeer[from]; !bound && !rc.permitted(from.Addr()) {
				// pion relays for a bound channel even after the
				// permission lapsed; otherwise it needs a permission.
				rc.s.m.drop[DropNoPermission].Inc()
				break
			}
			if !rc.allowDown(n) {
				rc.s.m.drop[DropRateLimited].Inc()
				break
			}
			rc.shard.toClientBytes.Add(uint64(n))
			rc.shard.toClientPkts.Add(1)
			return copy(p, buf[chanHeaderSize:chanHeaderSize+n]), net.UDPAddrFromAddrPort(from), nil
		}
		if !rc.rx.pending() {
			rc.flushToClient()
		}
	}
}

// toClient queues a datagram from a bound peer as ChannelData to the client;
// it reports false when the peer has no channel.
func (rc *relayConn) toClient(buf []byte, n int, from netip.AddrPort) bool {
	num, ok := rc.chans.Load().byPeer[from]
	if !ok {
		return false
	}
	if !rc.allowDown(n) {
		rc.s.m.drop[DropRateLimited].Inc()
		return true
	}
	binary.BigEndian.PutUint16(buf[0:2], num)
	binary.BigEndian.PutUint16(buf[2:4], uint16(n)) //nolint:gosec // n <= maxDatagram
	if !rc.tx.add(rc.lis.sio, buf[:chanHeaderSize+n], rc.client) {
		rc.flushToClient()
		if !rc.tx.add(rc.lis.sio, buf[:chanHeaderSize+n], rc.client) {
			rc.s.m.drop[DropSendError].Inc()
			return true
		}
	}
	rc.shard.toClientBytes.Add(uint64(n))
	rc.shard.toClientPkts.Add(1)
	return true
}

func (rc *relayConn) flushToClient() {
	if rc.tx.len() == 0 {
		return
	}
	if failed, _ := rc.tx.flush(rc.lis.sio); failed > 0 {
		rc.s.m.drop[DropSendError].Add(float64(failed))
	}
}

// WriteTo is pion relaying a Send indication or ChannelData to a peer.
func (rc *relayConn) WriteTo(p []byte, addr net.Addr) (int, error) {
	if !rc.s.acl.portOK(netaddr.AddrPort(addr)) {
		rc.s.m.drop[DropACL].Inc()
		return len(p), nil
	}
	if !rc.allowUp(len(p)) {
		rc.s.m.drop[DropRateLimited].Inc()
		return len(p), nil
	}
	n, err := rc.pc.WriteTo(p, addr)
	if err == nil {
		rc.shard.toPeerBytes.Add(uint64(n)) //nolint:gosec // n >= 0
		rc.shard.toPeerPkts.Add(1)
	}
	return n, err
}

// Close is called by pion when the allocation ends (or by the server).
func (rc *relayConn) Close() error {
	rc.closeOnce.Do(func() {
		rc.closeErr = rc.pc.Close()
		rc.s.relayClosed(rc)
	})
	return rc.closeErr
}

func (rc *relayConn) LocalAddr() net.Addr                { return rc.pc.LocalAddr() }
func (rc *relayConn) SetDeadline(t time.Time) error      { return rc.pc.SetDeadline(t) }
func (rc *relayConn) SetReadDeadline(t time.Time) error  { return rc.pc.SetReadDeadline(t) }
func (rc *relayConn) SetWriteDeadline(t time.Time) error { return rc.pc.SetWriteDeadline(t) }
