package sdk

import (
	"errors"
	"math/rand/v2"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// lossyConn wraps a packet conn and, on the way out, drops a share of the
// packets and reorders others (a held packet is sent after the next one).
type lossyConn struct {
	net.PacketConn
	lossPct, reorderPct int

	mu     sync.Mutex
	rng    *rand.Rand
	held   []byte
	heldTo net.Addr
	dead   atomic.Bool

	sent, dropped, reordered atomic.Int64
}

func newLossyConn(pc net.PacketConn, lossPct, reorderPct int, seed uint64) *lossyConn {
	return &lossyConn{PacketConn: pc, lossPct: lossPct, reorderPct: reorderPct, rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))}
}

func (l *lossyConn) WriteTo(p []byte, addr net.Addr) (int, error) {
	if l.dead.Load() {
		return 0, net.ErrClosed
	}
	l.mu.Lock()
	r := l.rng.IntN(100)
	if r < l.lossPct {
		l.mu.Unlock()
		l.dropped.Add(1)
		return len(p), nil
	}
	if l.held == nil && l.rng.IntN(100) < l.reorderPct {
		l.held = append([]byte(nil), p...)
		l.heldTo = addr
		l.mu.Unlock()
		l.reordered.Add(1)
		return len(p), nil
	}
	held, heldTo := l.held, l.heldTo
	l.held, l.heldTo = nil, nil
	l.mu.Unlock()
	n, err := l.PacketConn.WriteTo(p, addr)
	l.sent.Add(1)
	if held != nil {
		_, _ = l.PacketConn.WriteTo(held, heldTo)
	}
	return n, err
}

// kill makes the path die abruptly: nothing more goes out, and reads fail.
func (l *lossyConn) kill() {
	l.dead.Store(true)
	_ = l.Close()
}

// memNet is an in-memory packet network for tests under testing/synctest:
// every blocking operation is a channel operation or a timer, which synctest
// understands. Packets to unknown addresses, or to a full queue, are
// dropped, as UDP would.
type memNet struct {
	mu    sync.Mutex
	conns map[string]*memConn
	next  byte
	// blackhole, when set, drops every packet.
	blackhole atomic.Bool
	// latency delays every packet (one way).
	latency time.Duration
}

func newMemNet() *memNet { return &memNet{conns: map[string]*memConn{}} }

type memPacket struct {
	b    []byte
	from net.Addr
}

type memConn struct {
	n        *memNet
	addr     *net.UDPAddr
	in       chan memPacket
	closed   chan struct{}
	once     sync.Once
	mu       sync.Mutex
	deadline time.Time
	dlCh     chan struct{} // closed and replaced when the deadline changes
}

func (n *memNet) listen() *memConn {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.next++
	c := &memConn{
		n:      n,
		addr:   &net.UDPAddr{IP: net.IPv4(10, 99, 0, n.next), Port: 4000},
		in:     make(chan memPacket, 512),
		closed: make(chan struct{}),
		dlCh:   make(chan struct{}),
	}
	n.conns[c.addr.String()] = c
	return c
}

func (c *memConn) WriteTo(p []byte, addr net.Addr) (int, error) {
	select {
	case <-c.closed:
		return 0, net.ErrClosed
	default:
	}
	if c.n.blackhole.Load() {
		return len(p), nil
	}
	c.n.mu.Lock()
	dst := c.n.conns[addr.String()]
	c.n.mu.Unlock()
	if dst == nil {
		return len(p), nil
	}
	pkt := memPacket{b: append([]byte(nil), p...), from: c.addr}
	deliver := func() {
		select {
		case dst.in <- pkt:
		default:
		}
	}
	if c.n.latency > 0 {
		time.AfterFunc(c.n.latency, deliver)
	} else {
		deliver()
	}
	return len(p), nil
}

// SetReadBuffer pretends to size the socket buffer, as quic-go asks.
func (c *memConn) SetReadBuffer(int) error { return nil }

// SetWriteBuffer pretends to size the socket buffer, as quic-go asks.
func (c *memConn) SetWriteBuffer(int) error { return nil }

func (c *memConn) ReadFrom(p []byte) (int, net.Addr, error) {
	for {
		c.mu.Lock()
		dl, dlCh := c.deadline, c.dlCh
		c.mu.Unlock()
		var (
			timeout <-chan time.Time
			timer   *time.Timer
		)
		if !dl.IsZero() {
			d := time.Until(dl)
			if d <= 0 {
				return 0, nil, os.ErrDeadlineExceeded
			}
			timer = time.NewTimer(d)
			timeout = timer.C
		}
		select {
		case pkt := <-c.in:
			stopTimer(timer)
			return copy(p, pkt.b), pkt.from, nil
		case <-c.closed:
			stopTimer(timer)
			return 0, nil, net.ErrClosed
		case <-timeout:
			return 0, nil, os.ErrDeadlineExceeded
		case <-dlCh:
			stopTimer(timer)
		}
	}
}

func (c *memConn) Close() error {
	c.once.Do(func() {
		close(c.closed)
		c.n.mu.Lock()
		delete(c.n.conns, c.addr.String())
		c.n.mu.Unlock()
	})
	return nil
}

func (c *memConn) LocalAddr() net.Addr { return c.addr }

func (c *memConn) SetDeadline(t time.Time) error { return c.SetReadDeadline(t) }

func (c *memConn) SetReadDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.deadline = t
	close(c.dlCh)
	c.dlCh = make(chan struct{})
	return nil
}

func (c *memConn) SetWriteDeadline(time.Time) error { return nil }

var errNoPath = errors.New("test: no path")

// SetReadBuffer and SetWriteBuffer forward to the wrapped socket, so quic-go
// sizes its buffers as it would on a plain UDP socket.
func (l *lossyConn) SetReadBuffer(n int) error {
	if s, ok := l.PacketConn.(interface{ SetReadBuffer(int) error }); ok {
		return s.SetReadBuffer(n)
	}
	return nil
}

func (l *lossyConn) SetWriteBuffer(n int) error {
	if s, ok := l.PacketConn.(interface{ SetWriteBuffer(int) error }); ok {
		return s.SetWriteBuffer(n)
	}
	return nil
}

func stopTimer(t *time.Timer) {
	if t != nil {
		t.Stop()
	}
}
