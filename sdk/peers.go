package sdk

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"
)

// A Node keeps one connection per peer. Dial returns the connection a peer
// already has (dialed or accepted), or joins a dial under way; an incoming
// connection from a peer being dialed completes that Dial. When two peers
// dial each other at once, the connection dialed by the lower PeerID (in
// byte order) wins: that side refuses the other's dial while its own is
// under way, and the refused side waits for the winner to arrive.

// reasonSimultaneous is the GOAWAY reason of a dial refused by that rule.
const reasonSimultaneous = "simultaneous dial: the connection dialed by the lower PeerID wins"

// peerSlot is the node's connection to one peer, or the dial making it.
type peerSlot struct {
	done chan struct{} // closed once conn or err is set
	conn *Conn
	err  error
	at   time.Time // when conn was set
}

func (sl *peerSlot) resolved() bool {
	select {
	case <-sl.done:
		return true
	default:
		return false
	}
}

// resolveLocked settles sl. Call with n.mu held.
func (n *Node) resolveLocked(peer PeerID, sl *peerSlot, c *Conn, err error) {
	sl.conn, sl.err, sl.at = c, err, time.Now()
	close(sl.done)
	if err != nil && n.peers[peer] == sl {
		delete(n.peers, peer)
	}
}

// dialOnce returns the connection to peer, dialing it unless one exists or
// is being dialed.
func (n *Node) dialOnce(ctx context.Context, cfg config, peer PeerID) (*Conn, error) {
	for {
		n.mu.Lock()
		sl := n.peers[peer]
		if sl == nil {
			if n.ctx.Err() != nil {
				n.mu.Unlock()
				return nil, ErrClosed
			}
			sl = &peerSlot{done: make(chan struct{})}
			n.peers[peer] = sl
			n.wg.Go(func() { n.runDial(ctx, cfg, peer, sl) })
		}
		n.mu.Unlock()
		select {
		case <-sl.done:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		if sl.err != nil {
			if ctx.Err() == nil && (errors.Is(sl.err, context.Canceled) || errors.Is(sl.err, context.DeadlineExceeded)) {
				continue // the ctx of the caller who started that dial ended, not ours
			}
			return nil, sl.err
		}
		if sl.conn.Err() == nil {
			return sl.conn, nil
		}
		// Closed since: forget it and dial afresh.
		n.mu.Lock()
		if n.peers[peer] == sl {
			delete(n.peers, peer)
		}
		n.mu.Unlock()
	}
}

// runDial makes the connection sl waits for, unless an incoming one from
// the peer settles sl first.
func (n *Node) runDial(ctx context.Context, cfg config, peer PeerID, sl *peerSlot) {
	// The dial ends with the caller's ctx or with the node.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(n.ctx, cancel)() //nolint:contextcheck // the node closing ends the dial too
	c, err := n.newDialConn(ctx, cfg, peer, func(ctx context.Context, _ *Conn) (*session, error) {
		return n.dialAny(ctx, &cfg, peer)
	})
	if err != nil && simultaneousRefusal(err) {
		// The peer keeps its own dial to us: wait for it, which has
		// completed or is about to.
		t := time.NewTimer(2 * cfg.handshakeTimeout)
		select {
		case <-sl.done:
		case <-t.C:
			err = fmt.Errorf("sdk: the peer refused this dial for its own, which did not arrive: %w", err)
		case <-ctx.Done():
			err = ctx.Err()
			if n.ctx.Err() != nil {
				err = ErrClosed
			}
		}
		t.Stop()
	}
	n.mu.Lock()
	if sl.resolved() {
		n.mu.Unlock()
		if c != nil {
			_ = c.Close() // the peer's connection won
		}
		return
	}
	n.resolveLocked(peer, sl, c, err)
	n.mu.Unlock()
}

func simultaneousRefusal(err error) bool {
	var ga *GoAwayError
	return errors.As(err, &ga) && ga.Remote && ga.Reason == reasonSimultaneous
}

// admitIncoming decides on a new incoming connection from peer, after its
// HELLO. If this node has the lower PeerID, it refuses the connection while
// it dials peer itself, and for a handshake timeout after its own dial
// succeeded (the peer's dial then crossed it). After that, a new connection
// from the peer is taken as the peer's after a restart, and admitted.
func (n *Node) admitIncoming(peer PeerID) error {
	self := n.PeerID()
	if bytes.Compare(self[:], peer[:]) >= 0 {
		return nil
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	sl := n.peers[peer]
	switch {
	case sl == nil:
		return nil
	case !sl.resolved():
		return errors.New(reasonSimultaneous)
	case sl.conn != nil && sl.conn.role == roleDialer && sl.conn.Err() == nil && time.Since(sl.at) < n.cfg.handshakeTimeout:
		return errors.New(reasonSimultaneous)
	}
	return nil
}

// adoptIncoming registers an accepted connection as the one to its peer.
// It reports true when the connection completed a pending Dial, which
// returns it: Accept does not return it as well.
func (n *Node) adoptIncoming(c *Conn) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	sl := n.peers[c.remote]
	if sl != nil && !sl.resolved() {
		n.resolveLocked(c.remote, sl, c, nil)
		return true
	}
	// The newest connection is the one a Dial returns: an older one is
	// most likely from before the peer restarted.
	done := make(chan struct{})
	close(done)
	n.peers[c.remote] = &peerSlot{done: done, conn: c, at: time.Now()}
	return false
}

// forgetConn drops a closed connection from the registry.
func (n *Node) forgetConn(c *Conn) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if sl := n.peers[c.remote]; sl != nil && sl.resolved() && sl.conn == c {
		delete(n.peers, c.remote)
	}
}

// peerRegistry is the router's view of a Node's registry of connections
// and stream listeners; an Endpoint has none.
type peerRegistry interface {
	admitIncoming(PeerID) error
	adoptIncoming(*Conn) bool
	forgetConn(*Conn)
	routeStream(*Stream) bool
}

var _ peerRegistry = (*Node)(nil)
