package icepath

import (
	"net"
	"time"

	"github.com/pion/ice/v4"
)

// This file holds PacketConn, the selected path as a net.PacketConn.

// PacketConn is the selected ICE path as a net.PacketConn: every write goes
// to the current pair, every read comes from it. The peer appears at one
// fixed address, whatever the pair.
type PacketConn struct {
	c    *ice.Conn
	ag   *Agent
	peer net.Addr
}

func newPacketConn(c *ice.Conn, ag *Agent) *PacketConn {
	ag.fb.conn.Store(c) // fallback.go: replay
	peer := c.RemoteAddr()
	if peer == nil {
		peer = &net.UDPAddr{IP: net.IPv4zero}
	}
	return &PacketConn{c: c, ag: ag, peer: peer}
}

// Peer returns the address QUIC should dial or expect: the pair's remote
// address when the path was selected.
func (p *PacketConn) Peer() net.Addr { return p.peer }

// ReadFrom reads one packet from the path.
func (p *PacketConn) ReadFrom(b []byte) (int, net.Addr, error) {
	n, err := p.c.Read(b)
	return n, p.peer, err
}

// WriteTo writes one packet on the current pair; addr is ignored.
func (p *PacketConn) WriteTo(b []byte, _ net.Addr) (int, error) {
	p.ag.fb.remember(b) // fallback.go: replay
	return p.c.Write(b)
}

// Close closes the path and the agent under it.
func (p *PacketConn) Close() error {
	err := p.c.Close()
	if cerr := p.ag.Close(); err == nil {
		err = cerr
	}
	return err
}

// LocalAddr returns the local address of the selected pair.
func (p *PacketConn) LocalAddr() net.Addr { return p.c.LocalAddr() }

// SetDeadline sets the read and write deadlines.
func (p *PacketConn) SetDeadline(t time.Time) error { return p.c.SetDeadline(t) }

// SetReadDeadline sets the read deadline.
func (p *PacketConn) SetReadDeadline(t time.Time) error { return p.c.SetReadDeadline(t) }

// SetWriteDeadline sets the write deadline.
func (p *PacketConn) SetWriteDeadline(t time.Time) error { return p.c.SetWriteDeadline(t) }

// SetReadBuffer is accepted and ignored: the path has no socket of its own
// to size (quic-go asks, and would otherwise log a warning).
func (p *PacketConn) SetReadBuffer(int) error { return nil }

// SetWriteBuffer is accepted and ignored, like SetReadBuffer.
func (p *PacketConn) SetWriteBuffer(int) error { return nil }

var _ net.PacketConn = (*PacketConn)(nil)
