package sdk

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"time"

	"github.com/ferrynet/ferry/identity"
	"github.com/ferrynet/ferry/internal/backoff"
	"github.com/ferrynet/ferry/signal"
	"github.com/ferrynet/ferry/wire"
)

// Reconnect backoff for the dialing side: the n-th wait after a failed
// redial is drawn from [redialFloor, min(redialMaxBackoff,
// redialMinBackoff·2^n)), full jitter (internal/backoff).
const (
	redialMinBackoff = 20 * time.Millisecond
	redialMaxBackoff = 5 * time.Second
	redialFloor      = time.Millisecond
)

// peerGoneGrace is how long the rendezvous must keep reporting the peer not
// found (ErrPeerNotFound on every redial, at least two of them) before the
// dialer's reconnect gives up with that error. A peer that restarts, or
// whose signaling connection blips, is back well within it; a dead peer
// fails the conn within about this long instead of at the reconnect
// timeout.
const peerGoneGrace = 2 * time.Second

// startSupervisor hands the conn, now Connected, to its supervisor goroutine,
// which alone changes its state from here on (Close aside).
func (c *Conn) startSupervisor() {
	c.mu.Lock()
	c.started = true
	c.mu.Unlock()
	go c.supervise()
}

// fatal reports whether err ends the connection rather than one session.
func fatal(err error) bool {
	var ga *GoAwayError
	if errors.As(err, &ga) {
		return ga.fatal()
	}
	var mm *identity.MismatchError
	return errors.As(err, &mm) || errors.Is(err, ErrClosed)
}

func (c *Conn) supervise() {
	final := ErrClosed
	defer func() { c.finish(final) }()
	for {
		c.mu.Lock()
		s := c.sess
		c.mu.Unlock()
		cause := error(errReplaced)
		if s != nil {
			select {
			case <-c.closing:
				final = c.closeErr()
				return
			case ns := <-c.incoming:
				// The dialer replaced a session that still looks alive
				// from here (its end died first).
				c.setState(StateDisconnected, errReplaced)
				c.setState(StateReconnecting, errReplaced)
				if err := c.acceptHandshake(context.Background(), ns); err != nil {
					c.log.Debug("replacement session failed", "err", err)
					if fatal(err) {
						final = err
						return
					}
					continue
				}
				c.setState(StateConnected, nil)
				continue
			case <-s.stop:
			}
			s.wait()
			cause = s.err
			c.mu.Lock()
			if c.sess == s {
				c.sess = nil
			}
			c.mu.Unlock()
			if fatal(cause) {
				final = cause
				return
			}
			c.setState(StateDisconnected, cause)
		}
		// A session that ran on an ICE path was signaled through the
		// rendezvous, where the dialer is logged in: the acceptor can ask
		// whether it still is.
		signaled := s != nil && s.path != nil && s.path.ice != nil
		if err := c.reconnect(cause, signaled); err != nil {
			final = err
			return
		}
	}
}

// closeErr is the terminal error for a Close: ErrClosed, or the reason an
// endpoint gave when it closed the conn.
func (c *Conn) closeErr() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closeReason != nil {
		return c.closeReason
	}
	return ErrClosed
}

// reconnect restores a session: the dialer dials again with backoff, the
// acceptor waits for the dialer (and, when the session was signaled, gives
// up early once the rendezvous has reported the dialer gone for
// acceptorGoneGrace). It returns nil
// once Connected, or the error that ends the conn.
func (c *Conn) reconnect(cause error, signaled bool) error {
	c.setState(StateReconnecting, cause)
	ctx, cancel := context.WithCancel(c.ctx)
	defer cancel()
	var deadline <-chan time.Time
	if d := c.cfg.reconnectTimeout; d > 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		deadline = t.C
		ctx, cancel = context.WithTimeout(ctx, d)
		defer cancel()
	}
	timedOut := func(last error) error {
		return fmt.Errorf("%w: no session for %v: %w", ErrReconnectTimeout, c.cfg.reconnectTimeout, last)
	}

	if c.role == roleAcceptor {
		var gone <-chan error
		if signaled && c.cfg.presence != nil {
			gone = c.watchDialer(ctx)
		}
		for {
			select {
			case <-c.closing:
				return c.closeErr()
			case <-deadline:
				return timedOut(cause)
			case err := <-gone:
				return err
			case ns := <-c.incoming:
				if err := c.acceptHandshake(ctx, ns); err != nil {
					if fatal(err) {
						return err
					}
					cause = err
					continue
				}
				c.setState(StateConnected, nil)
				return nil
			}
		}
	}

	bo := backoff.Backoff{Base: redialMinBackoff, Cap: redialMaxBackoff, Floor: redialFloor}
	var goneSince time.Time // first of an unbroken run of ErrPeerNotFound
	for attempt := 1; ; attempt++ {
		err := c.redialOnce(ctx)
		if err == nil {
			c.setState(StateConnected, nil)
			return nil
		}
		select {
		case <-c.closing:
			return c.closeErr()
		default:
		}
		if fatal(err) {
			return err
		}
		cause = err
		if errors.Is(err, ErrPeerNotFound) {
			if goneSince.IsZero() {
				goneSince = time.Now()
			}
			if gone := time.Since(goneSince); attempt > 1 && gone >= peerGoneGrace {
				c.emitAttempt(attempt, err, 0)
				return fmt.Errorf("sdk: reconnect: the rendezvous has reported the peer gone for %v: %w", gone.Round(time.Millisecond), err)
			}
		} else {
			goneSince = time.Time{}
		}
		wait := bo.Next()
		if !goneSince.IsZero() {
			// Ask again when the grace ends, not a long backoff later.
			if rem := peerGoneGrace - time.Since(goneSince); rem > 0 && wait > rem {
				wait = rem
			}
		}
		c.log.Debug("redial failed", "attempt", attempt, "err", err, "next", wait)
		c.emitAttempt(attempt, err, wait)
		// Full jitter, so both ends of many conns do not retry in step.
		t := time.NewTimer(wait)
		select {
		case <-c.closing:
			t.Stop()
			return c.closeErr()
		case <-deadline:
			t.Stop()
			return timedOut(cause)
		case <-t.C:
		}
	}
}

// emitAttempt reports a failed redial as an Event: Reconnecting to
// Reconnecting, with the attempt number, its error and the wait before the
// next attempt (0 when there is none).
func (c *Conn) emitAttempt(attempt int, err error, next time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.state != StateReconnecting {
		return
	}
	c.emitLocked(Event{Time: time.Now(), From: c.state, State: c.state, Err: err, Attempt: attempt, NextAttempt: next})
}

func (c *Conn) redialOnce(ctx context.Context) error {
	c.mu.Lock()
	dial := c.dial
	c.mu.Unlock()
	s, err := dial(ctx)
	if err != nil {
		return err
	}
	if err := c.dialHandshake(ctx, s); err != nil {
		s.terminate(nil, err)
		s.wait()
		return err
	}
	return nil
}

// watchDialer asks the rendezvous, while the acceptor waits for the dialer
// to come back, whether the dialer is still logged in: at once, then every
// peerGoneGrace/2. Once it has been reported gone for acceptorGoneGrace
// (and at least two answers in a row), the channel yields an error
// wrapping ErrPeerNotFound. The goroutine ends with ctx.
func (c *Conn) watchDialer(ctx context.Context) <-chan error {
	out := make(chan error, 1)
	grace := c.acceptorGoneGrace()
	go func() {
		t := time.NewTicker(peerGoneGrace / 2)
		defer t.Stop()
		var goneSince time.Time
		for answers := 0; ; {
			qctx, cancel := context.WithTimeout(ctx, peerGoneGrace)
			err := c.cfg.presence(qctx, c.remote)
			cancel()
			switch {
			case ctx.Err() != nil:
				return
			case errors.Is(err, ErrPeerNotFound):
				answers++
				if goneSince.IsZero() {
					goneSince = time.Now()
				}
				if gone := time.Since(goneSince); answers >= 2 && gone >= grace {
					out <- fmt.Errorf("sdk: reconnect: the rendezvous has reported the dialer gone for %v: %w", gone.Round(time.Millisecond), err)
					return
				}
			default: // logged in, or no answer: keep waiting
				answers, goneSince = 0, time.Time{}
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	return out
}

// acceptorGoneGrace is how long the acceptor must hear "not logged in"
// before it gives up: the dialer's grace (a restart, a signaling blip) plus
// the heartbeat bound. A live dialer at another rendezvous server logs in
// here only to signal, and logs out when idle (rvforeign.go), so it is
// absent here while connected; when the session dies it notices within the
// heartbeat bound, as this side did, and logs in here again to redial.
func (c *Conn) acceptorGoneGrace() time.Duration {
	return peerGoneGrace + time.Duration(c.cfg.heartbeatMisses)*c.cfg.heartbeatInterval
}

// peerPresent asks the rendezvous whether peer is logged in there: nil if
// it is (or the node has no rendezvous, or no answer came), an error
// wrapping ErrPeerNotFound if not. The question is a Bye for a session that
// does not exist, which the rendezvous routes (or refuses: peer not found)
// and a peer ignores; it needs no new message type.
func (n *Node) peerPresent(ctx context.Context, peer PeerID) error {
	if n.rv == nil {
		return nil
	}
	sid := make([]byte, 16)
	_, _ = rand.Read(sid)
	err := n.rv.Send(ctx, peer, &wire.Bye{RouteHeader: wire.RouteHeader{SessionID: sid}, Reason: "presence check"})
	if errors.Is(err, signal.ErrPeerNotFound) {
		return fmt.Errorf("%w: %w", ErrPeerNotFound, err)
	}
	return nil
}
