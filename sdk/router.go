package sdk

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"slices"
	"sync"

	"github.com/quic-go/quic-go"

	"github.com/ferrynet/ferry/sdk/internal/secure"
	"github.com/ferrynet/ferry/wire"
)

// maxPendingHandshakes bounds incoming sessions between the QUIC handshake
// and HELLO; more are refused at once.
const maxPendingHandshakes = 128

// A router owns a node's connections and turns incoming QUIC sessions into
// them: it reads each dialer's HELLO and starts a new Conn (queued for
// Accept) or hands the session to the Conn it resumes. An Endpoint feeds it
// the sessions of one transport; a Node, those of every ICE path.
type router struct {
	id  *Identity
	cfg config
	// peers, for a Node, keeps one connection per peer; nil for an
	// Endpoint.
	peers peerRegistry

	ctx    context.Context
	cancel context.CancelFunc
	sem    chan struct{}

	mu       sync.Mutex
	conns    map[*Conn]struct{}
	byID     map[[connIDLen]byte]*Conn // acceptor-side conns, for resumes
	closed   bool
	accepted chan *Conn

	wg sync.WaitGroup

	hooks       chan hookEvent // to the event hook's goroutine; nil without a hook
	hookDone    chan struct{}
	hookMu      sync.Mutex
	hooksClosed bool
}

type hookEvent struct {
	peer PeerID
	ev   Event
}

// hookQueue bounds events waiting for the hook.
const hookQueue = 1024

func newRouter(id *Identity, cfg config) *router {
	r := &router{
		id:       id,
		cfg:      cfg,
		sem:      make(chan struct{}, maxPendingHandshakes),
		conns:    map[*Conn]struct{}{},
		byID:     map[[connIDLen]byte]*Conn{},
		accepted: make(chan *Conn, cfg.acceptBacklog),
	}
	r.ctx, r.cancel = context.WithCancel(context.Background())
	if hook := cfg.eventHook; hook != nil {
		r.hooks = make(chan hookEvent, hookQueue)
		r.hookDone = make(chan struct{})
		go func() {
			defer close(r.hookDone)
			for h := range r.hooks {
				hook(h.peer, h.ev)
			}
		}()
	}
	return r
}

// notify passes a conn's event to the hook, never blocking.
func (r *router) notify(peer PeerID, ev Event) {
	if r.hooks == nil {
		return
	}
	r.hookMu.Lock()
	defer r.hookMu.Unlock()
	if r.hooksClosed {
		return
	}
	select {
	case r.hooks <- hookEvent{peer, ev}:
	default:
	}
}

// peerID returns the node's own PeerID.
func (r *router) peerID() PeerID { return r.id.PeerID() }

// accept returns the next connection a peer dialed.
func (r *router) accept(ctx context.Context) (*Conn, error) {
	select {
	case c := <-r.accepted:
		return c, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-r.ctx.Done():
		return nil, ErrClosed
	}
}

// shutdown closes every conn (with GOAWAY), including those accepted but
// never taken by Accept, and waits for the router's goroutines.
func (r *router) shutdown() {
	r.mu.Lock()
	r.closed = true
	conns := make([]*Conn, 0, len(r.conns))
	for c := range r.conns {
		conns = append(conns, c)
	}
	r.mu.Unlock()
	r.cancel()
	var wg sync.WaitGroup
	for _, c := range conns {
		wg.Go(func() { _ = c.Close() })
	}
	wg.Wait()
	r.wg.Wait()
	if r.hooks != nil {
		r.hookMu.Lock()
		close(r.hooks)
		r.hooksClosed = true
		r.hookMu.Unlock()
		<-r.hookDone
	}
	for {
		select {
		case c := <-r.accepted:
			_ = c.Close()
			continue
		default:
		}
		break
	}
}

// newDialConn creates a dialer-side conn to peer whose sessions come from
// dial, and runs its first session. ctx bounds only that first session.
func (r *router) newDialConn(ctx context.Context, cfg config, peer PeerID, dial func(ctx context.Context, c *Conn) (*session, error)) (*Conn, error) {
	var connID [connIDLen]byte
	if _, err := rand.Read(connID[:]); err != nil {
		return nil, err
	}
	c := newConn(cfg, roleDialer, r.id.PeerID(), peer, connID)
	c.dial = func(ctx context.Context) (*session, error) {
		s, err := dial(ctx, c)
		if err != nil {
			return nil, err
		}
		s.c = c
		return s, nil
	}
	if err := r.track(c, false); err != nil {
		return nil, err
	}
	c.setState(StateConnecting, nil)
	if err := c.redialOnce(ctx); err != nil {
		c.finish(err)
		return nil, err
	}
	c.setState(StateConnected, nil)
	c.startSupervisor() //nolint:contextcheck // the supervisor lives as long as the conn, not Dial's ctx
	return c, nil
}

// dialSession runs the QUIC handshake to peer at addr over tr and opens the
// control stream.
func (r *router) dialSession(ctx context.Context, cfg *config, tr *quic.Transport, addr net.Addr, peer PeerID, p *path) (*session, error) {
	tlsConf, v, err := secure.ClientConfig(r.id, peer)
	if err != nil {
		return nil, err
	}
	qc, err := tr.Dial(ctx, addr, tlsConf, quicConfig(cfg))
	if err != nil {
		if verr := v.Err(); verr != nil {
			return nil, verr
		}
		return nil, fmt.Errorf("sdk: QUIC handshake: %w", err)
	}
	ctrl, err := qc.OpenStreamSync(ctx)
	if err != nil {
		_ = qc.CloseWithError(codeAbandoned, "no control stream")
		return nil, fmt.Errorf("sdk: open control stream: %w", err)
	}
	return newSession(cfg, qc, ctrl, p), nil
}

// track registers c; acceptor-side conns are also found by connection ID.
func (r *router) track(c *Conn, byID bool) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return ErrClosed
	}
	if byID {
		if _, dup := r.byID[c.connID]; dup {
			return errors.New("connection ID already in use")
		}
		r.byID[c.connID] = c
	}
	r.conns[c] = struct{}{}
	c.notify = r.notify
	if r.peers != nil {
		c.route = r.peers.routeStream
	}
	c.forget = func() {
		r.mu.Lock()
		delete(r.conns, c)
		if r.byID[c.connID] == c {
			delete(r.byID, c.connID)
		}
		r.mu.Unlock()
		if r.peers != nil {
			r.peers.forgetConn(c)
		}
	}
	return nil
}

// serve accepts sessions from ln until it closes or the router shuts down.
// Each session's path p (may be nil) is closed when the session ends.
func (r *router) serve(ln *quic.Listener, p *path) {
	for {
		qc, err := ln.Accept(r.ctx)
		if err != nil {
			return
		}
		select {
		case r.sem <- struct{}{}:
		default:
			_ = qc.CloseWithError(quic.ApplicationErrorCode(wire.GoAwayPolicy), "too many pending handshakes")
			continue
		}
		r.wg.Go(func() {
			defer func() { <-r.sem }()
			r.handleIncoming(qc, p)
		})
	}
}

// handleIncoming reads a dialer's HELLO and either starts a new conn or
// hands the session to the conn it resumes.
func (r *router) handleIncoming(qc *quic.Conn, p *path) {
	cfg := r.cfg
	ctx, cancel := context.WithTimeout(r.ctx, cfg.handshakeTimeout)
	defer cancel()
	peer, err := secure.PeerFromState(qc.ConnectionState().TLS)
	if err != nil {
		_ = qc.CloseWithError(quic.ApplicationErrorCode(wire.GoAwayPolicy), err.Error())
		p.close()
		return
	}
	log := cfg.logger.With("peer", peer.Short())
	ctrl, err := qc.AcceptStream(ctx)
	if err != nil {
		_ = qc.CloseWithError(quic.ApplicationErrorCode(wire.GoAwayProtocolError), fmt.Sprintf("no control stream within %v", cfg.handshakeTimeout))
		log.Debug("incoming session without control stream", "err", err)
		p.close()
		return
	}
	s := newSession(&cfg, qc, ctrl, p)
	// The endpoint closing ends the handshake at once; a dialer that says
	// nothing is refused when the handshake deadline passes.
	stop := context.AfterFunc(r.ctx, func() { s.terminate(nil, ErrClosed) })
	defer stop()
	deadline, _ := ctx.Deadline()
	f, err := s.readFrame(deadline)
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			s.refuse(wire.GoAwayProtocolError, fmt.Sprintf("no HELLO within %v", cfg.handshakeTimeout))
		} else {
			s.terminate(nil, err)
			s.wait()
		}
		log.Debug("incoming session: no HELLO", "err", err)
		return
	}
	h, err := s.expectHello(f)
	if err != nil {
		s.wait()
		log.Debug("incoming session: bad HELLO", "err", err)
		return
	}
	if _, err := checkPeerHello(h); err != nil {
		code := wire.GoAwayProtocolError
		if !slices.Contains(h.Versions, protocolVersion) {
			code = wire.GoAwayUnsupportedVersion
		}
		s.refuse(code, err.Error())
		log.Debug("refused incoming session", "err", err)
		return
	}
	s.peer = *h
	var connID [connIDLen]byte
	copy(connID[:], h.ConnID)

	if h.Resume {
		r.mu.Lock()
		c := r.byID[connID]
		r.mu.Unlock()
		switch {
		case c == nil:
			s.refuse(wire.GoAwayPolicy, "unknown connection: it was closed, or this node restarted")
			return
		case c.remote != peer:
			s.refuse(wire.GoAwayPolicy, "connection belongs to another peer")
			return
		}
		s.c = c
		stop() // the conn's handshake takes over the session's lifetime
		select {
		case c.incoming <- s:
		case <-c.done:
			s.refuse(wire.GoAwayNormal, "connection closed")
		case <-ctx.Done():
			s.terminate(nil, ctx.Err())
			s.wait()
		}
		return
	}

	if r.peers != nil {
		if err := r.peers.admitIncoming(peer); err != nil {
			s.refuse(wire.GoAwayPolicy, err.Error())
			return
		}
	}
	if len(r.accepted) == cap(r.accepted) {
		s.refuse(wire.GoAwayPolicy, "accept backlog full")
		return
	}
	c := newConn(cfg, roleAcceptor, r.id.PeerID(), peer, connID)
	s.c = c
	if err := r.track(c, true); err != nil {
		s.refuse(wire.GoAwayPolicy, err.Error())
		return
	}
	c.setState(StateConnecting, nil)
	if err := c.acceptHandshake(ctx, s); err != nil {
		s.wait()
		c.finish(err)
		log.Debug("incoming session: handshake failed", "err", err)
		return
	}
	c.setState(StateConnected, nil)
	c.startSupervisor() //nolint:contextcheck // the supervisor lives as long as the conn, not the handshake
	if r.peers != nil && r.peers.adoptIncoming(c) {
		return // a pending Dial returns it
	}
	select {
	case r.accepted <- c:
	default:
		_ = c.closeWith(&GoAwayError{Code: wire.GoAwayPolicy, Reason: "accept backlog full"})
	}
}

// refuse sends a GOAWAY during the handshake and closes the session.
func (s *session) refuse(code wire.GoAwayCode, reason string) {
	s.terminate(&wire.GoAway{Code: code, Reason: reason}, &GoAwayError{Code: code, Reason: reason})
	s.wait()
}
