package sdk

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/ferrynet/ferry/sdk/internal/icepath"
	"github.com/ferrynet/ferry/wire"
)

// This file holds a session's handshake: HELLO and RESUME on the control
// stream, and adopt, which makes a handshaken session its conn's current
// one. session.go holds the running session.

// protocolVersion is the peer protocol version this implementation speaks.
const protocolVersion = 1

// readFrame reads one control frame during the handshake.
func (s *session) readFrame(deadline time.Time) (wire.Frame, error) {
	if err := s.ctrl.SetReadDeadline(deadline); err != nil {
		return wire.Frame{}, err
	}
	f, err := s.rd.ReadFrame()
	if err != nil {
		if isWireError(err) {
			return f, s.protocolError(wire.GoAwayProtocolError, "%v", err)
		}
		if errors.Is(err, io.EOF) {
			return f, s.protocolError(wire.GoAwayProtocolError, "control stream ended during the handshake")
		}
		return f, sessionError(err)
	}
	return f, s.ctrl.SetReadDeadline(time.Time{})
}

// writeNow writes one message on the control stream during the handshake,
// before the writer goroutine owns it.
func (s *session) writeNow(m wire.Message, deadline time.Time) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if err := s.ctrl.SetWriteDeadline(deadline); err != nil {
		return err
	}
	b, err := wire.AppendMessage(s.out[:0], m)
	if err != nil {
		return err
	}
	s.out = b
	if err := s.flushOut(); err != nil {
		return sessionError(err)
	}
	return s.ctrl.SetWriteDeadline(time.Time{})
}

// expectHello decodes a HELLO (or the GOAWAY that refuses us).
func (s *session) expectHello(f wire.Frame) (*wire.Hello, error) {
	switch f.Type {
	case wire.TypeHello:
		var h wire.Hello
		if err := h.Unmarshal(f.Payload); err != nil {
			return nil, s.protocolError(wire.GoAwayProtocolError, "malformed HELLO: %v", err)
		}
		return &h, nil
	case wire.TypeGoAway:
		return nil, s.goAwayReceived(f.Payload)
	default:
		return nil, s.protocolError(wire.GoAwayProtocolError, "expected HELLO, got %v", f.Type)
	}
}

func (s *session) goAwayReceived(payload []byte) error {
	var g wire.GoAway
	if err := g.Unmarshal(payload); err != nil {
		return s.protocolError(wire.GoAwayProtocolError, "malformed GOAWAY: %v", err)
	}
	err := &GoAwayError{Code: g.Code, Reason: g.Reason, Remote: true}
	s.terminate(nil, err)
	return err
}

// hello is this side's HELLO.
func (c *Conn) hello(versions []uint32) *wire.Hello {
	return &wire.Hello{
		Versions:   versions,
		MaxPayload: uint32(c.cfg.maxPayload),
		ConnID:     c.connID[:],
		RecvWindow: uint32(c.cfg.recvWindow),
		Resume:     c.isEstablished(),
	}
}

func (c *Conn) isEstablished() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.established
}

// checkPeerHello validates the peer's HELLO against what this conn agreed
// before, and returns the version to use.
func checkPeerHello(h *wire.Hello) (uint32, error) {
	if !slices.Contains(h.Versions, protocolVersion) {
		return 0, fmt.Errorf("no common protocol version: peer speaks %v, this node speaks [%d]", h.Versions, protocolVersion)
	}
	if h.MaxPayload < minMaxPayload {
		return 0, fmt.Errorf("peer's max payload %d is below the minimum %d", h.MaxPayload, minMaxPayload)
	}
	if h.RecvWindow == 0 {
		return 0, errors.New("peer's receive window is zero")
	}
	if len(h.ConnID) != connIDLen {
		return 0, fmt.Errorf("connection ID has %d bytes, want %d", len(h.ConnID), connIDLen)
	}
	return protocolVersion, nil
}

// handshakeDeadline bounds a handshake by the configured timeout and ctx, and
// makes ctx's cancellation end the session. Call stop when done.
func (c *Conn) handshakeDeadline(ctx context.Context, s *session) (deadline time.Time, stop func() bool) {
	deadline = time.Now().Add(c.cfg.handshakeTimeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	return deadline, context.AfterFunc(ctx, func() { s.terminate(nil, ctx.Err()) })
}

// ctxErr prefers ctx's error when ctx ended, since that is why err happened.
func ctxErr(ctx context.Context, err error) error {
	if err != nil && ctx.Err() != nil {
		return ctx.Err()
	}
	return err
}

// dialHandshake runs the dialer's half of HELLO on a fresh session, then
// adopts it.
func (c *Conn) dialHandshake(ctx context.Context, s *session) (err error) {
	deadline, stop := c.handshakeDeadline(ctx, s)
	defer stop()
	defer func() { err = ctxErr(ctx, err) }()
	if err = s.writeNow(c.hello([]uint32{protocolVersion}), deadline); err != nil {
		s.terminate(nil, err)
		return err
	}
	f, err := s.readFrame(deadline)
	if err != nil {
		s.terminate(nil, err)
		return err
	}
	h, err := s.expectHello(f)
	if err != nil {
		return err
	}
	if len(h.Versions) != 1 || h.Versions[0] != protocolVersion {
		return s.protocolError(wire.GoAwayUnsupportedVersion, "acceptor chose versions %v, we offered [%d]", h.Versions, protocolVersion)
	}
	if string(h.ConnID) != string(c.connID[:]) {
		return s.protocolError(wire.GoAwayProtocolError, "acceptor answered for another connection ID")
	}
	if _, err := checkPeerHello(h); err != nil {
		return s.protocolError(wire.GoAwayProtocolError, "%v", err)
	}
	s.peer = *h
	return c.adopt(s, deadline) //nolint:contextcheck // the session's goroutines live as long as the session
}

// acceptHandshake answers a dialer whose HELLO the endpoint already read and
// routed to this conn, then adopts the session.
func (c *Conn) acceptHandshake(ctx context.Context, s *session) (err error) {
	deadline, stop := c.handshakeDeadline(ctx, s)
	defer stop()
	defer func() { err = ctxErr(ctx, err) }()
	if err = s.writeNow(c.hello([]uint32{protocolVersion}), deadline); err != nil {
		s.terminate(nil, err)
		return err
	}
	return c.adopt(s, deadline) //nolint:contextcheck // the session's goroutines live as long as the session
}

// adopt makes s the conn's session: it fences the old one, exchanges RESUME
// and starts the session's goroutines.
func (c *Conn) adopt(s *session, deadline time.Time) error {
	c.mu.Lock()
	if c.err != nil {
		err := c.err
		c.mu.Unlock()
		s.terminate(goAwayFor(err), err)
		return err
	}
	if !c.established {
		c.maxSend = int(min(s.peer.MaxPayload, maxMaxPayload))
		c.sendLimit = min(c.cfg.sendBuffer, int(s.peer.RecvWindow))
	} else if int(s.peer.MaxPayload) < c.maxSend {
		c.mu.Unlock()
		return s.protocolError(wire.GoAwayProtocolError, "peer lowered its max payload from %d to %d on resume", c.maxSend, s.peer.MaxPayload)
	}
	old := c.sess
	// From here on, frames from the old session are not delivered: the
	// RESUME below states exactly what this side has.
	c.sess = s
	res := &wire.Resume{LastReceived: c.lastReceived, LastConsumed: c.lastConsumed}
	c.lastAckSent = c.lastConsumed
	c.unackedRecv = 0
	c.mu.Unlock()
	if old != nil {
		old.terminate(&wire.GoAway{Code: wire.GoAwayReplaced, Reason: "replaced by a new session"}, errReplaced)
		old.wait()
	}

	fail := func(err error) error {
		c.mu.Lock()
		if c.sess == s {
			c.sess = nil
		}
		c.mu.Unlock()
		return err
	}
	if err := s.writeNow(res, deadline); err != nil {
		s.terminate(nil, err)
		return fail(err)
	}
	f, err := s.readFrame(deadline)
	if err != nil {
		s.terminate(nil, err)
		return fail(err)
	}
	var pr wire.Resume
	switch f.Type {
	case wire.TypeResume:
		if err := pr.Unmarshal(f.Payload); err != nil {
			return fail(s.protocolError(wire.GoAwayProtocolError, "malformed RESUME: %v", err))
		}
	case wire.TypeGoAway:
		return fail(s.goAwayReceived(f.Payload))
	default:
		return fail(s.protocolError(wire.GoAwayProtocolError, "expected RESUME, got %v", f.Type))
	}

	c.mu.Lock()
	switch {
	case pr.LastConsumed > pr.LastReceived:
		c.mu.Unlock()
		return fail(s.protocolError(wire.GoAwayProtocolError, "RESUME: consumed %d beyond received %d", pr.LastConsumed, pr.LastReceived))
	case pr.LastReceived > c.maxWritten:
		c.mu.Unlock()
		return fail(s.protocolError(wire.GoAwayProtocolError, "RESUME: peer claims message %d, only %d were sent", pr.LastReceived, c.maxWritten))
	case pr.LastConsumed < c.ackBase:
		c.mu.Unlock()
		return fail(s.protocolError(wire.GoAwayProtocolError, "RESUME: consumed %d went back from acknowledged %d", pr.LastConsumed, c.ackBase))
	}
	c.ackThroughLocked(pr.LastConsumed)
	s.sendNext = pr.LastReceived + 1
	s.dataOn = true
	s.wantAck = c.lastConsumed > c.lastAckSent
	c.established = true
	c.stats.Sessions++
	c.mu.Unlock()

	if !s.start() {
		err := s.err // set before stop closed, which start saw under s.life
		if err == nil {
			err = ErrClosed
		}
		return fail(err)
	}
	if s.path != nil && s.path.ice != nil {
		_ = s.path.ice.OnPathChange(func(icepath.Info) { c.pathChanged(s) })
	}
	return nil
}
