package sdk

import (
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/ferrynet/ferry/wire"
)

// codeAbandoned is the QUIC application error code for a session closed
// without a GOAWAY because it is being given up (its path died); the
// connection above it continues on a new session. Codes below 0x100 carry
// a GOAWAY code.
const codeAbandoned quic.ApplicationErrorCode = 0x100

// maxPendingPongs bounds PONGs queued for a peer that pings faster than we
// write; extra PINGs are answered by the newest PONG only.
const maxPendingPongs = 8

// writeBatch bounds the DATA bytes taken from the send queue per round.
const writeBatch = 256 << 10

// writeDirect is the frame size from which a DATA frame is written on its
// own rather than copied into the output buffer.
const writeDirect = 16 << 10

// heartbeatChecks is how many silence checks run per heartbeat interval.
const heartbeatChecks = 4

// goAwayGrace bounds how long a closing session tries to write its GOAWAY.
const goAwayGrace = 250 * time.Millisecond

// A session is one QUIC connection under a Conn, with its control stream.
type session struct {
	c    *Conn
	qc   *quic.Conn
	ctrl *quic.Stream
	rd   *wire.Reader
	path *path // what the session runs on; nil for an endpoint's own socket
	peer wire.Hello

	// Guarded by c.mu.
	sendNext uint64 // next DATA sequence number to write
	dataOn   bool   // the peer's RESUME arrived; DATA may flow
	pongs    []wire.Pong
	wantAck  bool

	// lastHeard is when the peer was last heard from, in unix
	// nanoseconds: any control frame (DATA, ACK, PING, PONG) or bytes read
	// from an application stream of this session. The writer declares the
	// peer dead when it stays silent for heartbeatMisses intervals, so a
	// peer busy sending bulk data is alive even while its PONGs are stuck
	// or lost.
	lastHeard atomic.Int64
	// deafToHeartbeats makes the session drop the peer's PINGs and PONGs
	// unread, as a path that loses them would: fault injection for tests
	// of liveness from other traffic. Never set outside tests.
	deafToHeartbeats atomic.Bool
	pingID           uint64 // writer goroutine only

	wake     chan struct{} // cap 1: the writer has work
	stop     chan struct{} // closed by terminate
	termOnce sync.Once
	err      error // why the session ended; set before stop closes
	goaway   *wire.GoAway
	finalAck uint64      // an ACK to send before the GOAWAY; set before stop closes
	running  atomic.Bool // the writer goroutine owns closing qc
	// life orders start against terminate: a session terminated first
	// never starts its goroutines, so wait's WaitGroup.Wait cannot race
	// start's Add.
	life     sync.Mutex
	wmu      sync.Mutex // serialises handshake writes with terminate's GOAWAY
	dirty    bool       // a write failed midway: no more frames; guarded by wmu
	out      []byte     // frames to write; guarded by wmu
	batch    [][]byte   // writer goroutine only
	wg       sync.WaitGroup
	waitOnce sync.Once
}

// newSession wraps a QUIC connection and its control stream. The conn (s.c)
// is set by the caller: at once when dialing, after HELLO when accepting.
func newSession(cfg *config, qc *quic.Conn, ctrl *quic.Stream, p *path) *session {
	s := &session{
		qc:   qc,
		ctrl: ctrl,
		rd:   wire.NewReader(ctrl, cfg.maxPayload),
		path: p,
		wake: make(chan struct{}, 1),
		stop: make(chan struct{}),
	}
	s.lastHeard.Store(time.Now().UnixNano())
	return s
}

// terminate ends the session: ga, if not nil, is sent to the peer as a
// GOAWAY frame (best effort) and as the QUIC close reason; cause is what the
// Conn sees. Only the first call counts.
func (s *session) terminate(ga *wire.GoAway, cause error) {
	s.termOnce.Do(func() {
		s.life.Lock()
		s.err = cause
		s.goaway = ga
		close(s.stop)
		running := s.running.Load()
		s.life.Unlock()
		// Unblock a write stuck on flow control.
		_ = s.ctrl.SetWriteDeadline(time.Now().Add(goAwayGrace))
		if running {
			// The writer goroutine says GOAWAY and closes qc.
			return
		}
		s.sayGoAway()
		s.closeQUIC()
	})
}

// sayGoAway writes the session's GOAWAY frame, if it has one and the
// control stream holds only whole frames, and reports whether it did.
func (s *session) sayGoAway() bool {
	if s.goaway == nil {
		return false
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if s.dirty {
		return false
	}
	_ = s.ctrl.SetWriteDeadline(time.Now().Add(goAwayGrace))
	s.out = s.out[:0]
	if s.finalAck != 0 {
		s.appendMsg(&wire.Ack{Cumulative: s.finalAck})
	}
	s.appendMsg(s.goaway)
	return s.flushOut() == nil
}

func (s *session) closeQUIC() {
	code, reason := codeAbandoned, "session abandoned"
	if s.goaway != nil {
		code, reason = quic.ApplicationErrorCode(s.goaway.Code), s.goaway.Reason
	}
	_ = s.qc.CloseWithError(code, reason)
}

// cause returns why the session ended, or nil while it runs.
func (s *session) cause() error {
	select {
	case <-s.stop:
		return s.err
	default:
		return nil
	}
}

// wait blocks until the session's goroutines have exited, then releases its
// path. terminate must have been called.
func (s *session) wait() {
	s.waitOnce.Do(func() {
		s.wg.Wait()
		if s.path != nil {
			s.path.close()
		}
	})
}

// goAwayFor returns the GOAWAY that tells the peer about err.
func goAwayFor(err error) *wire.GoAway {
	var ga *GoAwayError
	switch {
	case errors.Is(err, ErrClosed):
		return &wire.GoAway{Code: wire.GoAwayNormal, Reason: "connection closed"}
	case errors.As(err, &ga) && !ga.Remote:
		return &wire.GoAway{Code: ga.Code, Reason: ga.Reason}
	case errors.Is(err, ErrReconnectTimeout):
		return &wire.GoAway{Code: wire.GoAwayNormal, Reason: "reconnect timeout"}
	}
	return nil
}

// protocolError ends the session because the peer broke the protocol.
func (s *session) protocolError(code wire.GoAwayCode, format string, args ...any) error {
	reason := fmt.Sprintf(format, args...)
	err := &GoAwayError{Code: code, Reason: reason}
	s.terminate(&wire.GoAway{Code: code, Reason: reason}, err)
	return err
}

// sessionError maps an error from the QUIC connection or control stream to
// what the Conn sees.
func sessionError(err error) error {
	var appErr *quic.ApplicationError
	if errors.As(err, &appErr) && appErr.Remote {
		if appErr.ErrorCode == codeAbandoned {
			return &SessionLostError{Cause: errors.New("the peer abandoned the session")}
		}
		if appErr.ErrorCode < 0x100 {
			return &GoAwayError{Code: wire.GoAwayCode(appErr.ErrorCode), Reason: appErr.ErrorMessage, Remote: true}
		}
	}
	return &SessionLostError{Cause: err}
}

// isWireError reports whether err is a framing error from the wire codec.
func isWireError(err error) bool {
	return errors.Is(err, wire.ErrBadMagic) || errors.Is(err, wire.ErrBadChecksum) ||
		errors.Is(err, wire.ErrFrameTooLarge) || errors.Is(err, wire.ErrTruncated)
}

// errReplaced ends a session superseded by a newer one.
var errReplaced = errors.New("sdk: session replaced by a newer one")

// start launches the session's goroutines. It returns false, starting
// nothing, when the session was terminated first (its conn closed while the
// handshake finished).
func (s *session) start() bool {
	s.life.Lock()
	defer s.life.Unlock()
	select {
	case <-s.stop:
		return false
	default:
	}
	s.running.Store(true)
	s.wg.Add(4)
	go s.readLoop()
	go s.writeLoop()
	go s.watchSilence()
	go s.acceptStreams()
	poke(s.wake)
	return true
}

func (s *session) readLoop() {
	defer s.wg.Done()
	for {
		// Owned payloads: DATA goes to the inbox as it is, and large
		// ones skip the reader's buffer.
		f, err := s.rd.ReadFrameOwned()
		if err != nil {
			select {
			case <-s.stop:
				return
			default:
			}
			switch {
			case isWireError(err):
				_ = s.protocolError(wire.GoAwayProtocolError, "%v", err)
			case errors.Is(err, io.EOF):
				_ = s.protocolError(wire.GoAwayProtocolError, "control stream ended")
			default:
				s.terminate(nil, sessionError(err))
			}
			return
		}
		if (f.Type == wire.TypePing || f.Type == wire.TypePong) && s.deafToHeartbeats.Load() {
			continue
		}
		s.heard()
		if err := s.handle(f); err != nil {
			return
		}
	}
}

// handle processes one frame from the control stream after the handshake.
func (s *session) handle(f wire.Frame) error {
	c := s.c
	switch f.Type {
	case wire.TypeData:
		return s.deliver(f.Seq, f.Payload)
	case wire.TypeAck:
		var a wire.Ack
		if err := a.Unmarshal(f.Payload); err != nil {
			return s.protocolError(wire.GoAwayProtocolError, "malformed ACK: %v", err)
		}
		c.mu.Lock()
		if a.Cumulative > c.maxWritten {
			c.mu.Unlock()
			return s.protocolError(wire.GoAwayProtocolError, "ACK of message %d, only %d were sent", a.Cumulative, c.maxWritten)
		}
		if c.sess == s {
			c.ackThroughLocked(a.Cumulative)
		}
		c.mu.Unlock()
	case wire.TypePing:
		var p wire.Ping
		if err := p.Unmarshal(f.Payload); err != nil {
			return s.protocolError(wire.GoAwayProtocolError, "malformed PING: %v", err)
		}
		c.mu.Lock()
		if len(s.pongs) >= maxPendingPongs {
			s.pongs = s.pongs[1:]
		}
		s.pongs = append(s.pongs, wire.Pong(p))
		c.mu.Unlock()
		poke(s.wake)
	case wire.TypePong:
		var p wire.Pong
		if err := p.Unmarshal(f.Payload); err != nil {
			return s.protocolError(wire.GoAwayProtocolError, "malformed PONG: %v", err)
		}
		rtt := time.Duration(time.Now().UnixNano() - p.SentUnixNano)
		// The timestamp is ours, echoed; ignore echoes that cannot be real.
		if rtt >= 0 && rtt <= time.Duration(c.cfg.heartbeatMisses+1)*c.cfg.heartbeatInterval && p.ID <= s.pingIDSent() {
			c.mu.Lock()
			if c.srtt == 0 {
				c.srtt = rtt
			} else {
				c.srtt += (rtt - c.srtt) / 8
			}
			c.mu.Unlock()
		}
	case wire.TypeGoAway:
		return s.goAwayReceived(f.Payload)
	case wire.TypeHello, wire.TypeResume:
		return s.protocolError(wire.GoAwayProtocolError, "unexpected %v after the handshake", f.Type)
	default:
		return s.protocolError(wire.GoAwayProtocolError, "unexpected frame type %v on the control stream", f.Type)
	}
	return nil
}

// heard records that the peer was just heard from.
func (s *session) heard() { s.lastHeard.Store(time.Now().UnixNano()) }

func (s *session) pingIDSent() uint64 { return atomic.LoadUint64(&s.pingID) }

// deliver puts a DATA message into the conn's inbox, dropping duplicates.
func (s *session) deliver(seq uint64, payload []byte) error {
	c := s.c
	c.mu.Lock()
	if c.sess != s {
		// A replaced session's late frame: the RESUME already told the
		// peer what we have, and it will send the rest again.
		c.mu.Unlock()
		return errReplaced
	}
	switch {
	case seq <= c.lastReceived:
		c.stats.Duplicates++
		c.mu.Unlock()
		return nil
	case seq != c.lastReceived+1:
		want := c.lastReceived + 1
		c.mu.Unlock()
		return s.protocolError(wire.GoAwayProtocolError, "DATA %d out of order, expected %d", seq, want)
	case c.inbox.len() > 0 && c.inboxBytes+len(payload) > c.cfg.recvWindow:
		c.mu.Unlock()
		return s.protocolError(wire.GoAwayFlowControl, "DATA %d overflows the %d-byte receive window", seq, c.cfg.recvWindow)
	}
	msg := payload // owned: see readLoop
	c.inbox.push(msg)
	c.inboxBytes += len(msg)
	c.lastReceived = seq
	c.stats.MessagesReceived++
	c.mu.Unlock()
	poke(c.recvReady)
	return nil
}

// watchSilence declares the peer dead once it has been silent for
// heartbeatMisses intervals, checked heartbeatChecks times an interval. It
// runs apart from the writer, which can block in a stream write for as
// long as the path is dead (QUIC's window full, nothing acknowledged): a
// check in the writer's loop then waited for QUIC's idle timeout instead.
func (s *session) watchSilence() {
	defer s.wg.Done()
	interval := s.c.cfg.heartbeatInterval
	ticker := time.NewTicker(interval / heartbeatChecks)
	defer ticker.Stop()
	for {
		select {
		case <-s.stop:
			return
		case now := <-ticker.C:
			silent := now.Sub(time.Unix(0, s.lastHeard.Load()))
			if silent >= time.Duration(s.c.cfg.heartbeatMisses)*interval {
				// terminate also sets a write deadline that frees a
				// blocked writer.
				s.terminate(nil, &SessionLostError{Cause: &timeoutError{msg: fmt.Sprintf("peer silent for %v (%d heartbeat intervals of %v)",
					silent.Round(time.Millisecond), s.c.cfg.heartbeatMisses, interval)}})
				return
			}
		}
	}
}

func (s *session) writeLoop() {
	defer s.wg.Done()
	// The ticker runs at a quarter of the heartbeat interval: every fourth
	// tick sends a PING (watchSilence checks for silence on its own).
	interval := s.c.cfg.heartbeatInterval
	ticker := time.NewTicker(interval / heartbeatChecks)
	defer ticker.Stop()
	ticks := 0
	pingDue := true // the first PING goes out at once, to measure the RTT
loop:
	for {
		err := s.flushPending(pingDue)
		pingDue = false
		if err != nil {
			s.terminate(nil, sessionError(err))
			break
		}
		select {
		case <-s.wake:
		case <-s.stop:
			break loop
		case <-ticker.C:
			ticks++
			pingDue = ticks%heartbeatChecks == 0
		}
	}
	// Stopping: say GOAWAY if there is one, then close the QUIC connection.
	if s.sayGoAway() {
		// A CONNECTION_CLOSE sent now could overtake the GOAWAY (and the
		// ACK before it), which the peer would then never read: give it
		// a moment to read them and close the connection itself.
		t := time.NewTimer(goAwayGrace)
		select {
		case <-s.qc.Context().Done():
		case <-t.C:
		}
		t.Stop()
	}
	s.closeQUIC()
}

// flushPending writes what is due: PONGs, an ACK, a PING, and DATA from the
// send queue, in batches of up to writeBatch bytes, each batch in one Write
// (quic-go's Write waits until the stream has taken the data, so fewer,
// larger writes go faster).
func (s *session) flushPending(ping bool) error {
	c := s.c
	var pongs [maxPendingPongs]wire.Pong
	for {
		c.mu.Lock()
		np := copy(pongs[:], s.pongs)
		s.pongs = s.pongs[:0]
		var ack uint64
		if s.wantAck && c.lastConsumed > c.lastAckSent {
			ack = c.lastConsumed
			c.lastAckSent = ack
			c.unackedRecv = 0
		}
		s.wantAck = false
		batch := s.batch[:0]
		first := s.sendNext
		if s.dataOn && c.sess == s {
			n := 0
			for i := int(s.sendNext - c.ackBase - 1); i < c.unacked.len() && n < writeBatch; i++ {
				f := c.unacked.at(i).b
				batch = append(batch, f)
				n += len(f)
			}
			s.sendNext += uint64(len(batch))
			if len(batch) > 0 {
				last := s.sendNext - 1
				if first <= c.maxWritten {
					c.stats.Resent += min(last, c.maxWritten) - first + 1
				}
				c.maxWritten = max(c.maxWritten, last)
			}
		}
		more := s.dataOn && c.sess == s && int(s.sendNext-c.ackBase-1) < c.unacked.len()
		c.mu.Unlock()

		s.wmu.Lock()
		for _, p := range pongs[:np] {
			s.appendMsg(&p)
		}
		if ack != 0 {
			s.appendMsg(&wire.Ack{Cumulative: ack})
		}
		if ping {
			ping = false
			id := atomic.AddUint64(&s.pingID, 1)
			s.appendMsg(&wire.Ping{ID: id, SentUnixNano: time.Now().UnixNano()})
		}
		err := s.writeData(batch)
		if err == nil {
			err = s.flushOut()
		}
		s.wmu.Unlock()
		clear(batch)
		s.batch = batch[:0]
		if err != nil || !more {
			return err
		}
	}
}

// writeData writes encoded DATA frames: small ones through the output
// buffer, large ones (which would cost a copy there) directly. Call with
// s.wmu held.
func (s *session) writeData(frames [][]byte) error {
	for _, f := range frames {
		if len(f) < writeDirect {
			s.out = append(s.out, f...)
			continue
		}
		if err := s.flushOut(); err != nil {
			return err
		}
		if _, err := s.ctrl.Write(f); err != nil {
			s.dirty = true
			return err
		}
	}
	return nil
}

// appendMsg encodes a control message into the output buffer. Call with
// s.wmu held. The messages the session sends always encode.
func (s *session) appendMsg(m wire.Message) {
	if b, err := wire.AppendMessage(s.out, m); err == nil {
		s.out = b
	}
}

// flushOut writes the output buffer in one Write. Call with s.wmu held.
func (s *session) flushOut() error {
	if len(s.out) == 0 {
		return nil
	}
	_, err := s.ctrl.Write(s.out)
	if err != nil {
		s.dirty = true
	}
	// Do not keep a huge buffer around for an idle session.
	if cap(s.out) > 2*writeBatch {
		s.out = nil
	} else {
		s.out = s.out[:0]
	}
	return err
}

// acceptStreams hands the peer's application streams to the conn.
func (s *session) acceptStreams() {
	defer s.wg.Done()
	ctx := s.qc.Context()
	for {
		st, err := s.qc.AcceptStream(ctx)
		if err != nil {
			return
		}
		s.wg.Go(func() { s.acceptStream(st) })
	}
}

func (s *session) acceptStream(st *quic.Stream) {
	_ = st.SetReadDeadline(time.Now().Add(s.c.cfg.handshakeTimeout))
	proto, err := readStreamHeader(st)
	if err != nil {
		s.c.log.Debug("refusing application stream", "err", err)
		st.CancelRead(streamErrorRefused)
		st.CancelWrite(streamErrorRefused)
		return
	}
	_ = st.SetReadDeadline(time.Time{})
	str := &Stream{st: st, proto: proto, conn: s.c, sess: s}
	if s.c.route != nil && s.c.route(str) {
		return
	}
	select {
	case s.c.streams <- str:
	default:
		s.c.log.Debug("stream backlog full, refusing stream", "protocol", proto)
		st.CancelRead(streamErrorBusy)
		st.CancelWrite(streamErrorBusy)
	}
}
