package sdk

import (
	"context"
	"fmt"
	"net"
	"sync"
	"time"
)

// This file holds the Go-native surface of a Node: Listen and DialStream,
// which deal in net.Listener and net.Conn, so that code written for the net
// package (net/http, gRPC, anything with a DialContext) runs over Ferry.

// Addr is the net.Addr of a Ferry stream: a peer and a protocol. String
// returns the PeerID, so a stream's RemoteAddr().String() names the peer.
type Addr struct {
	Peer     PeerID
	Protocol string
}

// Network returns "ferry".
func (a Addr) Network() string { return "ferry" }

// String returns the PeerID's text form.
func (a Addr) String() string { return a.Peer.String() }

// streamErrorClosed is sent (as STOP_SENDING) by StreamConn.Close: the
// peer's writes then fail with ErrPeerClosed.
const streamErrorClosed = 5

// StreamConn is a Stream as a net.Conn, as Node.Listen and Node.DialStream
// return it. Close closes both directions and unblocks Read and Write
// (ErrClosed, also net.ErrClosed); CloseWrite closes only the sending one, so
// the peer reads io.EOF; Reset abandons the stream with a code the peer
// finds in its *StreamResetError. Deadlines fail Read and Write with a
// net.Error whose Timeout is true.
type StreamConn struct {
	s      *Stream
	local  Addr
	remote Addr

	mu      sync.Mutex
	closed  bool
	writing int // Writes in progress
}

var _ net.Conn = (*StreamConn)(nil)

func newStreamConn(s *Stream) *StreamConn {
	return &StreamConn{
		s:      s,
		local:  Addr{Peer: s.conn.local, Protocol: s.proto},
		remote: Addr{Peer: s.conn.remote, Protocol: s.proto},
	}
}

// Stream returns the stream under c.
func (c *StreamConn) Stream() *Stream { return c.s }

// Read reads from the stream.
func (c *StreamConn) Read(p []byte) (int, error) {
	n, err := c.s.Read(p)
	if err != nil && c.isClosed() {
		return n, ErrClosed
	}
	return n, err
}

// Write writes to the stream.
func (c *StreamConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return 0, ErrClosed
	}
	c.writing++
	c.mu.Unlock()
	n, err := c.s.Write(p)
	c.mu.Lock()
	c.writing--
	closed := c.closed
	c.mu.Unlock()
	if err != nil && closed {
		return n, ErrClosed
	}
	return n, err
}

func (c *StreamConn) isClosed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closed
}

// Close closes both directions: what was written is still delivered (the
// peer then reads io.EOF), unless a Write is in progress, which fails and
// resets the sending direction; pending and later Reads and Writes fail with
// ErrClosed. Only the first Close does anything; later ones return
// ErrClosed.
func (c *StreamConn) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return ErrClosed
	}
	c.closed = true
	writing := c.writing > 0
	c.mu.Unlock()
	c.s.st.CancelRead(streamErrorClosed)
	if writing {
		c.s.st.CancelWrite(streamErrorClosed)
	} else {
		// The stream may have been reset by the peer already: nothing
		// is left to close then.
		_ = c.s.st.Close()
	}
	return nil
}

// CloseWrite closes the sending direction only: the peer reads io.EOF once
// it has read everything, and c can still read.
func (c *StreamConn) CloseWrite() error {
	if c.isClosed() {
		return ErrClosed
	}
	return c.s.Close()
}

// Reset abandons the stream in both directions with code, which the peer
// finds in the *StreamResetError its reads and writes then fail with.
func (c *StreamConn) Reset(code uint32) {
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
	c.s.ResetWithCode(code)
}

// LocalAddr returns this node's Addr.
func (c *StreamConn) LocalAddr() net.Addr { return c.local }

// RemoteAddr returns the peer's Addr.
func (c *StreamConn) RemoteAddr() net.Addr { return c.remote }

// SetDeadline sets the read and write deadlines.
func (c *StreamConn) SetDeadline(t time.Time) error { return c.s.SetDeadline(t) }

// SetReadDeadline sets the read deadline.
func (c *StreamConn) SetReadDeadline(t time.Time) error { return c.s.SetReadDeadline(t) }

// SetWriteDeadline sets the write deadline.
func (c *StreamConn) SetWriteDeadline(t time.Time) error { return c.s.SetWriteDeadline(t) }

// streamListener is what Node.Listen returns.
type streamListener struct {
	n     *Node
	proto string
	ch    chan *Stream

	mu     sync.Mutex
	closed bool
	done   chan struct{}
}

// Listen returns a listener for every stream opened for protocol by any
// peer, on any connection, whichever side dialed it. Its Accept returns
// *StreamConn values. Once a node listens on some protocol, streams for a
// protocol that nothing listens on are refused, and their openers' reads
// and writes fail with ErrProtocolNotSupported; a node with no listener
// queues every stream for Conn.AcceptStream instead. At most one listener
// per protocol is open at a time.
func (n *Node) Listen(protocol string) (net.Listener, error) {
	if len(protocol) == 0 || len(protocol) > maxProtocolLen {
		return nil, fmt.Errorf("sdk: stream protocol name must be 1 to %d bytes, got %d", maxProtocolLen, len(protocol))
	}
	l := &streamListener{n: n, proto: protocol, ch: make(chan *Stream, n.cfg.streamBacklog), done: make(chan struct{})}
	n.lmu.Lock()
	defer n.lmu.Unlock()
	if n.ctx.Err() != nil {
		return nil, ErrClosed
	}
	if _, dup := n.listeners[protocol]; dup {
		return nil, fmt.Errorf("sdk: already listening on protocol %q", protocol)
	}
	n.listeners[protocol] = l
	return l, nil
}

// DialStream opens a stream for protocol to peer, on the node's connection
// to it (dialed now if there is none, as Dial does), and returns it as a
// *StreamConn. If nothing on the peer listens on protocol, its first Read
// or Write fails with ErrProtocolNotSupported.
func (n *Node) DialStream(ctx context.Context, peer PeerID, protocol string) (net.Conn, error) {
	c, err := n.Dial(ctx, peer)
	if err != nil {
		return nil, err
	}
	s, err := c.OpenStream(ctx, protocol)
	if err != nil {
		return nil, err
	}
	return newStreamConn(s), nil
}

// routeStream hands an incoming stream to its protocol's listener, or
// refuses it when the node listens on other protocols only. It reports
// whether it took the stream; if not, the stream goes to Conn.AcceptStream.
func (n *Node) routeStream(s *Stream) bool {
	if t := n.dht.Load(); t != nil && s.proto == DHTProtocol {
		t.serve(s)
		return true
	}
	if n.routeGossip(s) { // see gossip.go
		return true
	}
	n.lmu.Lock()
	l := n.listeners[s.proto]
	listening := len(n.listeners) > 0
	n.lmu.Unlock()
	switch {
	case l != nil:
		l.deliver(s)
		return true
	case listening:
		s.refuse(streamErrorUnsupported)
		return true
	}
	return false
}

func (s *Stream) refuse(code streamCode) {
	s.st.CancelRead(code)
	s.st.CancelWrite(code)
}

func (l *streamListener) deliver(s *Stream) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		s.refuse(streamErrorUnsupported)
		return
	}
	select {
	case l.ch <- s:
	default:
		s.refuse(streamErrorBusy)
	}
}

// Accept returns the next stream for the listener's protocol, as a
// *StreamConn. It fails with ErrClosed (also net.ErrClosed) once the
// listener or the node is closed.
func (l *streamListener) Accept() (net.Conn, error) {
	select {
	case s := <-l.ch:
		return newStreamConn(s), nil
	case <-l.done:
	case <-l.n.ctx.Done():
	}
	return nil, ErrClosed
}

// Close stops the listener: streams it had queued are refused, and so are
// later ones for its protocol.
func (l *streamListener) Close() error {
	l.n.lmu.Lock()
	if l.n.listeners[l.proto] == l {
		delete(l.n.listeners, l.proto)
	}
	l.n.lmu.Unlock()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil
	}
	l.closed = true
	close(l.done)
	for {
		select {
		case s := <-l.ch:
			s.refuse(streamErrorUnsupported)
		default:
			return nil
		}
	}
}

// Addr returns the node's Addr for the listener's protocol.
func (l *streamListener) Addr() net.Addr { return Addr{Peer: l.n.PeerID(), Protocol: l.proto} }
