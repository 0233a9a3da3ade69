package sdk

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/ferrynet/ferry/identity"
	"github.com/ferrynet/ferry/internal/backoff"
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
		if err := c.reconnect(cause); err != nil {
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
// acceptor waits for the dialer. It returns nil once Connected, or the
// error that ends the conn.
func (c *Conn) reconnect(cause error) error {
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
		for {
			select {
			case <-c.closing:
				return c.closeErr()
			case <-deadline:
				return timedOut(cause)
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
