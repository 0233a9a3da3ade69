package relay

import (
	"container/list"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/ferrynet/ferry/internal/netaddr"
)

// tcpListener wraps a TURN TCP or TLS listener for pion/turn. Accept retries
// transient errors instead of ending the listener, caps the number of open
// connections, and wraps each connection so that it must complete its TLS
// handshake and first TURN message within FirstMessageTimeout.
type tcpListener struct {
	s    *Server
	ln   net.Listener
	tls  *tls.Config // nil for plain TCP
	done chan struct{}

	mu       sync.Mutex
	conns    map[*tcpConn]struct{}
	byClient map[netip.AddrPort]*tcpConn
	closed   bool

	closeOnce sync.Once
	closeErr  error
	exited    atomic.Bool
}

func newTCPListener(s *Server, ln net.Listener, tlsConf *tls.Config) *tcpListener {
	return &tcpListener{
		s: s, ln: ln, tls: tlsConf, done: make(chan struct{}),
		conns: map[*tcpConn]struct{}{}, byClient: map[netip.AddrPort]*tcpConn{},
	}
}

func isTransientAccept(err error) bool {
	var ne net.Error
	return errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) ||
		errors.Is(err, syscall.ENOBUFS) || errors.Is(err, syscall.ENOMEM) ||
		errors.Is(err, syscall.ECONNABORTED) || errors.Is(err, syscall.ECONNRESET) ||
		(errors.As(err, &ne) && ne.Timeout())
}

// Accept implements net.Listener for pion's accept loop.
func (l *tcpListener) Accept() (net.Conn, error) {
	backoff := 5 * time.Millisecond
	for {
		c, err := l.ln.Accept()
		if err != nil {
			if isTransientAccept(err) {
				select {
				case <-l.done:
				case <-time.After(backoff):
					backoff = min(2*backoff, time.Second)
					continue
				}
			}
			if l.exited.CompareAndSwap(false, true) {
				l.s.live.Done()
			}
			return nil, err
		}
		backoff = 5 * time.Millisecond
		client := netaddr.AddrPort(c.RemoteAddr())
		if !l.s.connIPs.acquire(client.Addr()) {
			l.s.m.tcpRejected.Inc()
			_ = c.Close()
			continue
		}
		if l.s.m.tcpActive.Load() >= int64(l.s.cfg.MaxConns) && !l.s.evictIdle() {
			l.s.connIPs.release(client.Addr())
			l.s.m.tcpRejected.Inc()
			_ = c.Close()
			continue
		}
		now := time.Now()
		_ = c.SetReadDeadline(now.Add(l.s.cfg.FirstMessageTimeout))
		inner := c
		if l.tls != nil {
			inner = tls.Server(c, l.tls)
		}
		tc := &tcpConn{Conn: inner, raw: c, l: l, client: client, accepted: now}
		if !l.track(tc) {
			l.s.connIPs.release(client.Addr())
			_ = c.Close()
			return nil, net.ErrClosed
		}
		return tc, nil
	}
}

func (l *tcpListener) track(tc *tcpConn) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return false
	}
	l.conns[tc] = struct{}{}
	l.byClient[tc.client] = tc
	l.s.unalloc.add(tc)
	l.s.m.tcpActive.Add(1)
	l.s.live.Add(1)
	return true
}

func (l *tcpListener) untrack(tc *tcpConn) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, ok := l.conns[tc]; !ok {
		return
	}
	delete(l.conns, tc)
	if l.byClient[tc.client] == tc {
		delete(l.byClient, tc.client)
	}
	l.s.connIPs.release(tc.client.Addr())
	l.s.unalloc.drop(tc)
	l.s.m.tcpActive.Add(-1)
	l.s.live.Done()
}

// conn returns the connection of client, or nil.
func (l *tcpListener) conn(client netip.AddrPort) *tcpConn {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.byClient[client]
}

// verbOf returns the ACL verb of the request the client's connection is
// handing to pion (the permission handler runs on that connection's goroutine).
func (l *tcpListener) stateOf(client netip.AddrPort) reqState {
	l.mu.Lock()
	defer l.mu.Unlock()
	if tc := l.byClient[client]; tc != nil {
		return tc.st
	}
	return reqState{}
}

// Close closes the listener and every connection it accepted.
func (l *tcpListener) Close() error {
	l.closeOnce.Do(func() {
		close(l.done)
		l.closeErr = l.ln.Close()
		l.mu.Lock()
		l.closed = true
		conns := make([]*tcpConn, 0, len(l.conns))
		for tc := range l.conns {
			conns = append(conns, tc)
		}
		l.mu.Unlock()
		for _, tc := range conns {
			_ = tc.Close()
		}
	})
	return l.closeErr
}

func (l *tcpListener) Addr() net.Addr { return l.ln.Addr() }

const maxTCPFrame = stunHeaderSize + maxStunBody

// tcpConn frames the TURN byte stream of one TCP or TLS connection, so the
// relay can check each STUN message before pion/turn reads it: it hands pion
// only whole, inspected frames, and ends the connection at the first bytes
// that are neither STUN nor ChannelData. After a successful ConnectionBind
// (RFC 6062) the connection carries raw peer data and is passed through
// untouched; the switch happens when pion writes its success response, never
// on the request alone, so a refused ConnectionBind leaves every check on.
type tcpConn struct {
	net.Conn          // TLS or plain
	raw      net.Conn // the TCP connection, for deadlines
	l        *tcpListener
	client   netip.AddrPort
	st       reqState

	buf      []byte
	start    int
	end      int
	ready    int // bytes at buf[start:] that are whole, inspected frames
	first    bool
	rawMode  atomic.Bool
	closeErr error
	once     sync.Once

	bindMu sync.Mutex
	bindTx [stunTxIDSize]byte // transaction of the ConnectionBind pion is handling
	bindOn bool

	// The unallocated timeout (Config.UnallocatedTimeout) is the raw
	// connection's read deadline while the connection holds no allocation
	// and is not a bound RFC 6062 data connection.
	accepted time.Time
	unalloc  *list.Element // in Server.unalloc while it holds no allocation
	gone     bool          // closed: never in Server.unalloc again (guarded by its mu)
	idleMu   sync.Mutex
	holds    bool // has a live allocation
	isBound  bool // a data connection after its ConnectionBind
}

// spoke is called after the first TURN message: the first-message deadline
// gives way to the unallocated timeout, counted from the accept.
func (c *tcpConn) spoke() {
	c.idleMu.Lock()
	defer c.idleMu.Unlock()
	if !c.holds && !c.isBound {
		_ = c.raw.SetReadDeadline(c.accepted.Add(c.l.s.cfg.UnallocatedTimeout))
	}
}

// allocated is called when an allocation is made on the connection.
func (c *tcpConn) allocated() {
	c.idleMu.Lock()
	defer c.idleMu.Unlock()
	c.holds = true
	c.l.s.unalloc.remove(c)
	_ = c.raw.SetReadDeadline(time.Time{})
}

// allocationEnded starts the unallocated timeout again.
func (c *tcpConn) allocationEnded() {
	c.idleMu.Lock()
	defer c.idleMu.Unlock()
	c.holds = false
	if !c.isBound {
		c.l.s.unalloc.add(c)
		_ = c.raw.SetReadDeadline(time.Now().Add(c.l.s.cfg.UnallocatedTimeout))
	}
}

// bound is called when pion accepts a ConnectionBind: the connection now
// carries a peer's data and lives as long as the peer connection.
func (c *tcpConn) bound() {
	c.idleMu.Lock()
	defer c.idleMu.Unlock()
	c.isBound = true
	c.l.s.unalloc.remove(c)
	_ = c.raw.SetReadDeadline(time.Time{})
}

const (
	stunTxIDSize = 12
	// typeConnectionBindSuccess is the message type of a ConnectionBind
	// success response (method 0x000B, class success).
	typeConnectionBindSuccess = 0x010B
)

// Read implements net.Conn for pion's STUN framing.
func (c *tcpConn) Read(p []byte) (int, error) {
	if c.rawMode.Load() && c.ready == 0 {
		if c.start < c.end { // peer data that arrived with the ConnectionBind
			n := copy(p, c.buf[c.start:c.end])
			c.start += n
			return n, nil
		}
		return c.Conn.Read(p)
	}
	for c.ready == 0 {
		if err := c.nextFrame(); err != nil {
			return 0, err
		}
	}
	n := copy(p, c.buf[c.start:c.start+c.ready])
	c.start += n
	c.ready -= n
	if c.start == c.end {
		c.start, c.end = 0, 0
	}
	return n, nil
}

// Write implements net.Conn. It watches for pion's success response to the
// ConnectionBind it was handed: from then on the connection is raw.
func (c *tcpConn) Write(p []byte) (int, error) {
	if len(p) >= stunHeaderSize && binary.BigEndian.Uint16(p[0:2]) == typeConnectionBindSuccess {
		c.bindMu.Lock()
		if c.bindOn && string(p[8:stunHeaderSize]) == string(c.bindTx[:]) {
			c.bindOn = false
			c.rawMode.Store(true)
			c.bound()
		}
		c.bindMu.Unlock()
	}
	return c.Conn.Write(p)
}

// nextFrame reads until one whole frame is buffered, inspects it, and marks
// it ready (or discards it).
func (c *tcpConn) nextFrame() error {
	for {
		b := c.buf[c.start:c.end]
		size, err := frameSize(b)
		if err == nil && !c.first && isChannelData(b) {
			err = ErrBadFrame // the first message must be STUN
		}
		if err != nil {
			c.l.s.m.drop[DropMalformed].Inc()
			return err
		}
		if size > 0 && len(b) >= size {
			frame := b[:size]
			keep := true
			if !isChannelData(frame) {
				keep = c.l.s.inspect(frame, c.client, &c.st)
				if keep && !c.first {
					c.first = true
					c.spoke()
				}
				if m, ok := parseSTUN(frame); keep && ok && m.class() == classRequest && m.method() == methodConnectionBind {
					// If pion accepts it, whatever follows is the peer
					// data stream (see Write).
					c.bindMu.Lock()
					copy(c.bindTx[:], frame[8:stunHeaderSize])
					c.bindOn = true
					c.bindMu.Unlock()
				}
			}
			if !keep {
				c.start += size
				continue
			}
			c.ready = size
			return nil
		}
		// Need more bytes.
		if c.start > 0 {
			copy(c.buf, c.buf[c.start:c.end])
			c.end -= c.start
			c.start = 0
		}
		want := max(size, c.end+1, 2048)
		if want > cap(c.buf) {
			nb := make([]byte, min(max(want, 2*cap(c.buf)), maxTCPFrame))
			copy(nb, c.buf[:c.end])
			c.buf = nb
		}
		c.buf = c.buf[:cap(c.buf)]
		n, err := c.Conn.Read(c.buf[c.end:])
		c.end += n
		if err != nil && n == 0 {
			return err
		}
	}
}

// frameSize returns the size of the frame at the start of b, 0 if more bytes
// are needed to tell, or an error for bytes that are not a TURN frame.
func frameSize(b []byte) (int, error) {
	if len(b) < chanHeaderSize {
		return 0, nil
	}
	switch b[0] & 0xC0 {
	case 0x40: // ChannelData; padded to 4 bytes over TCP
		return chanHeaderSize + pad4(int(binary.BigEndian.Uint16(b[2:4]))), nil
	case 0x00:
		if len(b) < 8 {
			return 0, nil
		}
		l := int(binary.BigEndian.Uint16(b[2:4]))
		if binary.BigEndian.Uint32(b[4:8]) != stunMagicCookie || l%4 != 0 {
			return 0, ErrBadFrame
		}
		return stunHeaderSize + l, nil
	}
	return 0, ErrBadFrame
}

// Close implements net.Conn.
func (c *tcpConn) Close() error {
	c.once.Do(func() {
		c.closeErr = c.Conn.Close()
		c.l.untrack(c)
	})
	return c.closeErr
}

// relayListener is an RFC 6062 TCP allocation's relay listener.
type relayListener struct {
	s     *Server
	ln    net.Listener
	local netip.AddrPort
	adv   netip.AddrPort
	user  string // the user ID (userIDOf)
	shard *trafficShard
	up    *byteLimiter
	down  *byteLimiter

	established bool
	ctrl        *tcpConn // the control connection
	readerDone  atomic.Bool
	closeOnce   sync.Once
	closeErr    error
}

// Accept implements net.Listener for pion's per-allocation accept loop.
func (rl *relayListener) Accept() (net.Conn, error) {
	c, err := rl.ln.Accept()
	if err != nil {
		if rl.readerDone.CompareAndSwap(false, true) && rl.established {
			rl.s.live.Done()
		}
		return nil, err
	}
	return rl.s.newPeerConn(rl, c), nil
}

// Close is called by pion when the allocation ends.
func (rl *relayListener) Close() error {
	rl.closeOnce.Do(func() {
		rl.closeErr = rl.ln.Close()
		rl.s.tcpRelayClosed(rl)
	})
	return rl.closeErr
}

func (rl *relayListener) Addr() net.Addr { return rl.ln.Addr() }

// peerConn is an RFC 6062 peer data connection: counted and rate-limited.
type peerConn struct {
	net.Conn
	rl   *relayListener
	once sync.Once
	err  error
}

func (s *Server) newPeerConn(rl *relayListener, c net.Conn) *peerConn {
	s.live.Add(1)
	s.m.tcpActive.Add(1)
	return &peerConn{Conn: c, rl: rl}
}

func (p *peerConn) Read(b []byte) (int, error) {
	n, err := p.Conn.Read(b)
	if n > 0 {
		if werr := p.rl.down.wait(p.rl.s.ctx, n); werr != nil {
			return 0, werr
		}
		if werr := p.rl.s.bwDown.wait(p.rl.s.ctx, n); werr != nil {
			return 0, werr
		}
		p.rl.shard.toClientBytes.Add(uint64(n)) //nolint:gosec // n > 0
		p.rl.shard.toClientPkts.Add(1)
	}
	return n, err
}

func (p *peerConn) Write(b []byte) (int, error) {
	if err := p.rl.up.wait(p.rl.s.ctx, len(b)); err != nil {
		return 0, err
	}
	if err := p.rl.s.bwUp.wait(p.rl.s.ctx, len(b)); err != nil {
		return 0, err
	}
	n, err := p.Conn.Write(b)
	if n > 0 {
		p.rl.shard.toPeerBytes.Add(uint64(n)) //nolint:gosec // n > 0
		p.rl.shard.toPeerPkts.Add(1)
	}
	return n, err
}

func (p *peerConn) Close() error {
	p.once.Do(func() {
		p.err = p.Conn.Close()
		p.rl.s.m.tcpActive.Add(-1)
		p.rl.s.live.Done()
	})
	return p.err
}

// dialContext bounds an RFC 6062 Connect's dial.
func (s *Server) dialContext() (context.Context, context.CancelFunc) {
	return context.WithTimeout(s.ctx, DefaultConnectTimeout)
}

// unallocList orders the TCP and TLS connections that hold no allocation
// (and are not bound data connections) by when they became so, oldest
// first. At MaxConns the oldest of them makes room for a new connection:
// a legitimate client allocates within round trips of its accept and leaves
// the list, so connections held idle on purpose cannot lock it out unless
// they are renewed faster than MaxConns per allocation round trip.
type unallocList struct {
	mu sync.Mutex
	l  list.List
}

func (u *unallocList) add(tc *tcpConn) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if tc.unalloc == nil && !tc.gone {
		tc.unalloc = u.l.PushBack(tc)
	}
}

// drop removes a closed connection for good.
func (u *unallocList) drop(tc *tcpConn) {
	u.mu.Lock()
	defer u.mu.Unlock()
	tc.gone = true
	if tc.unalloc != nil {
		u.l.Remove(tc.unalloc)
		tc.unalloc = nil
	}
}

func (u *unallocList) remove(tc *tcpConn) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if tc.unalloc != nil {
		u.l.Remove(tc.unalloc)
		tc.unalloc = nil
	}
}

// evictIdle closes the oldest connection without an allocation, and
// reports whether there was one.
func (s *Server) evictIdle() bool {
	s.unalloc.mu.Lock()
	e := s.unalloc.l.Front()
	var tc *tcpConn
	if e != nil {
		tc = e.Value.(*tcpConn) //nolint:forcetypeassert // the list holds only *tcpConn
		s.unalloc.l.Remove(e)
		tc.unalloc = nil
	}
	s.unalloc.mu.Unlock()
	if tc == nil {
		return false
	}
	s.m.tcpEvicted.Inc()
	s.log.Debug("closing the oldest connection without an allocation to make room", "client", tc.client)
	_ = tc.Close()
	return true
}
