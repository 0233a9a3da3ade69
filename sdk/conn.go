package sdk

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/ferrynet/ferry/wire"
)

type role uint8

const (
	roleDialer role = iota + 1
	roleAcceptor
)

func (r role) String() string {
	if r == roleDialer {
		return "dialer"
	}
	return "acceptor"
}

// A Conn is a connection to one peer. It outlives the QUIC sessions under it:
// when a session dies, the dialing side obtains a new one and both sides
// resume where they left off, so messages sent with Send arrive exactly once
// and in order. Application streams belong to the session they were opened
// on and fail when it dies.
//
// All methods are safe for concurrent use.
type Conn struct {
	cfg    config
	role   role
	local  PeerID
	remote PeerID
	connID [connIDLen]byte
	log    *slog.Logger

	// dial obtains a fresh session (dialer role only).
	dial func(ctx context.Context) (*session, error)
	// forget removes the conn from its endpoint's registry; set once.
	forget func()
	// notify passes events to the node's event hook; may be nil.
	notify func(PeerID, Event)
	// route offers an incoming stream to the node's listeners first; it
	// reports whether it took the stream. Nil for an Endpoint's conns.
	route func(*Stream) bool

	mu          sync.Mutex
	state       State
	stateCh     chan struct{} // closed and replaced on every state change
	sess        *session      // current session, nil while disconnected
	established bool          // a session has completed HELLO/RESUME
	err         error         // terminal error, once Closed
	maxSend     int           // largest payload the peer accepts
	sendLimit   int           // min(our send buffer, the peer's receive window)
	srtt        time.Duration

	// Send side. unacked holds every message from seq ackBase+1 to
	// nextSeq, each as its encoded DATA frame (seq and CRC included): the
	// frame is built once, by Send, and written as it is on every session.
	// unackedBytes counts their payload bytes.
	nextSeq      uint64 // last sequence number assigned
	ackBase      uint64 // highest sequence number the peer consumed
	maxWritten   uint64 // highest sequence number written on any session
	unacked      deque[*frameBuf]
	unackedBytes int
	flushWaiters int
	ackedCh      chan struct{} // closed and replaced on acks while Flush waits

	// Receive side.
	inbox        deque[[]byte]
	inboxBytes   int
	lastReceived uint64
	lastConsumed uint64
	lastAckSent  uint64
	unackedRecv  int // bytes consumed since the last ACK

	stats Stats

	sendReady chan struct{} // cap 1: buffer space was freed
	recvReady chan struct{} // cap 1: the inbox has messages
	events    chan Event
	streams   chan *Stream
	incoming  chan *session   // acceptor: replacement sessions from the endpoint
	ctx       context.Context // cancelled by Close
	cancel    context.CancelFunc
	closing   <-chan struct{} // ctx.Done()
	closeOnce sync.Once
	// closeReason replaces ErrClosed as the terminal error when the
	// endpoint closes the conn for a reason of its own.
	closeReason error
	done        chan struct{} // closed once the conn is Closed and its goroutines are gone
	started     bool          // the supervisor runs
	// eventsClosed: Events was closed after the Closed event; guarded by mu.
	eventsClosed bool
	// subs are the channels of Subscribe; guarded by mu.
	subs map[chan Event]struct{}
}

// Stats are a connection's counters.
type Stats struct {
	// MessagesSent counts messages accepted by Send.
	MessagesSent uint64
	// MessagesReceived counts messages delivered into the receive queue.
	MessagesReceived uint64
	// Unacked and UnackedBytes describe messages sent but not yet
	// consumed by the peer's application.
	Unacked      int
	UnackedBytes int
	// Resent counts DATA frames written again on a replacement session.
	Resent uint64
	// Duplicates counts DATA frames dropped because they had arrived before.
	Duplicates uint64
	// Sessions counts the sessions the connection has run on.
	Sessions uint64
}

const connIDLen = 16

func newConn(cfg config, r role, local, remote PeerID, connID [connIDLen]byte) *Conn {
	c := &Conn{
		cfg:       cfg,
		role:      r,
		local:     local,
		remote:    remote,
		connID:    connID,
		stateCh:   make(chan struct{}),
		ackedCh:   make(chan struct{}),
		sendReady: make(chan struct{}, 1),
		recvReady: make(chan struct{}, 1),
		events:    make(chan Event, eventBacklog),
		streams:   make(chan *Stream, cfg.streamBacklog),
		incoming:  make(chan *session),
		done:      make(chan struct{}),
	}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	c.closing = c.ctx.Done()
	c.log = cfg.logger.With("peer", remote.Short(), "role", r.String())
	return c
}

// eventBacklog bounds the events kept for a reader of Events; when it is
// full the oldest is dropped, so the latest state is always there.
const eventBacklog = 64

// LocalPeer returns this side's PeerID.
func (c *Conn) LocalPeer() PeerID { return c.local }

// RemotePeer returns the peer's PeerID, proven by its key.
func (c *Conn) RemotePeer() PeerID { return c.remote }

// State returns the current state.
func (c *Conn) State() State {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.state
}

// Events returns the stream of state changes. It is closed after the Closed
// event. Events are kept in a bounded queue (64); if nobody reads, the oldest
// are dropped. There is one stream per Conn: concurrent readers share it
// (each event goes to one of them); use Subscribe to give each reader
// every event.
func (c *Conn) Events() <-chan Event { return c.events }

// Subscribe returns a stream of every event from now on, of its own: each
// subscriber gets every event. A subscriber's queue holds the latest 64
// events; a slow reader loses the oldest, never the newest, and never holds
// the connection up. The channel is closed after the Closed event, or when
// cancel is called (then the events still queued are dropped). Subscribing
// to a closed Conn returns a closed channel.
func (c *Conn) Subscribe() (events <-chan Event, cancel func()) {
	ch := make(chan Event, eventBacklog)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.eventsClosed {
		close(ch)
		return ch, func() {}
	}
	if c.subs == nil {
		c.subs = map[chan Event]struct{}{}
	}
	c.subs[ch] = struct{}{}
	return ch, func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		if _, ok := c.subs[ch]; ok {
			delete(c.subs, ch)
			close(ch)
		}
	}
}

// RTT returns the smoothed round-trip time measured by heartbeats
// (exponentially weighted, 1/8 per sample), or 0 before the first sample.
func (c *Conn) RTT() time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.srtt
}

// Stats returns a snapshot of the connection's counters.
func (c *Conn) Stats() Stats {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.stats
	s.Unacked = c.unacked.len()
	s.UnackedBytes = c.unackedBytes
	return s
}

// Err returns why the connection is Closed, or nil while it is not.
func (c *Conn) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// Done is closed when the connection is Closed.
func (c *Conn) Done() <-chan struct{} { return c.done }

// setState records a state change and emits its event. Call with c.mu held.
func (c *Conn) setStateLocked(s State, err error) {
	if c.state == s || c.state == StateClosed {
		return
	}
	ev := Event{Time: time.Now(), From: c.state, State: s, Err: err}
	c.state = s
	close(c.stateCh)
	c.stateCh = make(chan struct{})
	if err != nil {
		c.log.Debug("state", "from", ev.From, "to", s, "err", err)
	} else {
		c.log.Debug("state", "from", ev.From, "to", s)
	}
	c.emitLocked(ev)
}

// emitLocked queues ev for Events, dropping the oldest when the queue is
// full. Call with c.mu held.
func (c *Conn) emitLocked(ev Event) {
	if c.eventsClosed {
		return
	}
	if c.notify != nil {
		c.notify(c.remote, ev)
	}
	last := ev.State == StateClosed && ev.Path == nil
	pushNewest(c.events, ev)
	for ch := range c.subs {
		pushNewest(ch, ev)
		if last {
			close(ch)
		}
	}
	if last {
		close(c.events)
		c.eventsClosed = true
		c.subs = nil
	}
}

// pushNewest queues ev on ch, dropping the oldest events while it is full,
// so the newest always gets in. Only the emitter sends on ch.
func pushNewest(ch chan Event, ev Event) {
	for {
		select {
		case ch <- ev:
			return
		default:
		}
		select {
		case <-ch:
		default:
		}
	}
}

// pathChanged reports that session s moved to another path.
func (c *Conn) pathChanged(s *session) {
	p := c.Path()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.sess != s || c.state == StateClosed {
		return
	}
	c.log.Debug("path changed", "kind", p.Kind(), "local", p.LocalCandidate, "remote", p.RemoteCandidate)
	c.emitLocked(Event{Time: time.Now(), From: c.state, State: c.state, Path: &p})
}

func (c *Conn) setState(s State, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.setStateLocked(s, err)
}

// poke does a non-blocking send on a capacity-1 channel.
func poke(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// Send queues msg for delivery and returns once it is buffered; it does not
// wait for the peer. The message is copied. Send blocks while the send
// buffer is full (backpressure) until space frees, ctx ends or the connection
// closes. While the connection is reconnecting, messages are buffered and
// sent on the next session.
func (c *Conn) Send(ctx context.Context, msg []byte) error {
	c.mu.Lock()
	for {
		if c.err != nil {
			err := c.err
			c.mu.Unlock()
			return err
		}
		if len(msg) > c.maxSend {
			max := c.maxSend
			c.mu.Unlock()
			return fmt.Errorf("%w: %d bytes, the peer accepts at most %d", ErrMessageTooLarge, len(msg), max)
		}
		if c.unacked.len() == 0 || c.unackedBytes+len(msg) <= c.sendLimit {
			break
		}
		c.mu.Unlock()
		select {
		case <-c.sendReady:
		case <-ctx.Done():
			return ctx.Err()
		case <-c.done:
		}
		c.mu.Lock()
	}
	c.nextSeq++
	f := getFrame(wire.Overhead + len(msg))
	f.b = wire.AppendFrame(f.b, wire.TypeData, c.nextSeq, msg)
	c.unacked.push(f)
	c.unackedBytes += len(msg)
	c.stats.MessagesSent++
	s := c.sess
	// Pass the baton: another sender may fit too.
	if c.unackedBytes < c.sendLimit {
		poke(c.sendReady)
	}
	c.mu.Unlock()
	if s != nil {
		poke(s.wake)
	}
	return nil
}

// Recv returns the next message, waiting until one arrives, ctx ends or the
// connection closes. Messages the peer sent before closing are delivered
// before the error that says it closed.
func (c *Conn) Recv(ctx context.Context) ([]byte, error) {
	c.mu.Lock()
	for c.inbox.len() == 0 {
		if c.err != nil {
			err := c.err
			c.mu.Unlock()
			return nil, err
		}
		c.mu.Unlock()
		select {
		case <-c.recvReady:
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-c.done:
		}
		c.mu.Lock()
	}
	msg := c.inbox.pop()
	c.inboxBytes -= len(msg)
	c.lastConsumed++
	c.unackedRecv += len(msg)
	// Acknowledge when the application has caught up, or when a quarter of
	// the window waits to be acknowledged, so the sender never stalls.
	var wake *session
	if c.inbox.len() == 0 || c.unackedRecv >= c.cfg.recvWindow/4 {
		if c.sess != nil {
			c.sess.wantAck = true
			wake = c.sess
		}
	}
	if c.inbox.len() > 0 {
		poke(c.recvReady)
	}
	c.mu.Unlock()
	if wake != nil {
		poke(wake.wake)
	}
	return msg, nil
}

// Flush waits until the peer's application has consumed every message sent
// so far, ctx ends or the connection closes.
func (c *Conn) Flush(ctx context.Context) error {
	c.mu.Lock()
	c.flushWaiters++
	defer func() {
		c.mu.Lock()
		c.flushWaiters--
		c.mu.Unlock()
	}()
	for {
		if c.unacked.len() == 0 {
			c.mu.Unlock()
			return nil
		}
		if c.err != nil {
			err := c.err
			n := c.unacked.len()
			c.mu.Unlock()
			return fmt.Errorf("%d messages not acknowledged: %w", n, err)
		}
		ch := c.ackedCh
		c.mu.Unlock()
		select {
		case <-ch:
		case <-c.done:
		case <-ctx.Done():
			return ctx.Err()
		}
		c.mu.Lock()
	}
}

// ackThrough drops messages the peer consumed. Call with c.mu held.
func (c *Conn) ackThroughLocked(seq uint64) {
	if seq <= c.ackBase {
		return
	}
	for c.ackBase < seq && c.unacked.len() > 0 {
		f := c.unacked.pop()
		c.unackedBytes -= len(f.b) - wire.Overhead
		putFrame(f)
		c.ackBase++
	}
	poke(c.sendReady)
	if c.flushWaiters > 0 {
		close(c.ackedCh)
		c.ackedCh = make(chan struct{})
	}
}

// waitSession returns the current session, waiting while there is none.
func (c *Conn) waitSession(ctx context.Context) (*session, error) {
	for {
		c.mu.Lock()
		if c.err != nil {
			err := c.err
			c.mu.Unlock()
			return nil, err
		}
		s, ch := c.sess, c.stateCh
		ready := s != nil && c.state == StateConnected
		c.mu.Unlock()
		if ready {
			return s, nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// Close ends the connection: it sends GOAWAY to the peer, closes the
// session and waits for the connection's goroutines. Messages not yet
// acknowledged are discarded (use Flush first to wait for them). Close is
// idempotent.
func (c *Conn) Close() error {
	return c.closeWith(nil)
}

// closeWith closes the conn with reason as its terminal error (ErrClosed
// when nil).
func (c *Conn) closeWith(reason error) error {
	c.closeOnce.Do(func() {
		c.mu.Lock()
		c.closeReason = reason
		c.mu.Unlock()
		c.cancel()
	})
	c.mu.Lock()
	started := c.started
	c.mu.Unlock()
	if !started {
		c.finish(c.closeErr())
	}
	<-c.done
	return nil
}

// finish moves the conn to Closed with err. It runs once, on the supervisor
// or, for a conn whose supervisor never started, on Close.
func (c *Conn) finish(err error) {
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		return
	}
	c.err = err
	s := c.sess
	c.sess = nil
	if s != nil && s.dataOn && c.lastConsumed > c.lastAckSent {
		// What the application consumed is acknowledged before the
		// GOAWAY, so the peer's Flush does not report a loss.
		s.finalAck = c.lastConsumed
		c.lastAckSent = c.lastConsumed
		c.unackedRecv = 0
	}
	if err == ErrClosed { //nolint:errorlint // identity check of our own sentinel
		c.setStateLocked(StateClosed, nil)
	} else {
		c.setStateLocked(StateClosed, err)
	}
	if n := c.unacked.len(); n > 0 {
		c.log.Debug("closing with unacknowledged messages", "count", n, "err", err)
	}
	if err == ErrClosed { //nolint:errorlint // identity check of our own sentinel
		// A local Close discards what the app did not read; after a
		// peer's GOAWAY, Recv still delivers it before the error.
		c.inbox.clear()
		c.inboxBytes = 0
	}
	c.mu.Unlock()
	if s != nil {
		s.terminate(goAwayFor(err), err)
		s.wait()
	}
	c.cancel()
	if c.forget != nil {
		c.forget()
	}
	// Streams accepted but never handed to the app would leak their QUIC
	// streams' memory until the session closes, which it now has.
	close(c.done)
}
