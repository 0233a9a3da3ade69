package sdk

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/ferrynet/ferry/sdk/internal/secure"
	"github.com/ferrynet/ferry/wire"
)

// maxPendingHandshakes bounds incoming sessions between the QUIC handshake
// and HELLO; more are refused at once.
const maxPendingHandshakes = 128

// An Endpoint speaks Ferry's session protocol over one net.PacketConn: it
// dials peers at known addresses and accepts their connections. The caller
// owns the packet conn and closes it after the endpoint.
type Endpoint struct {
	id    *Identity
	cfg   config
	tr    *quic.Transport
	ln    *quic.Listener
	qconf *quic.Config

	ctx    context.Context
	cancel context.CancelFunc
	sem    chan struct{}

	mu       sync.Mutex
	conns    map[*Conn]struct{}
	byID     map[[connIDLen]byte]*Conn // acceptor-side conns, for resumes
	closed   bool
	accepted chan *Conn

	wg        sync.WaitGroup
	closeOnce sync.Once
	closeErr  error
}

// NewEndpoint starts an endpoint for identity id on pc.
func NewEndpoint(pc net.PacketConn, id *Identity, opts ...Option) (_ *Endpoint, err error) {
	if pc == nil || id == nil {
		return nil, errors.New("sdk: NewEndpoint needs a packet conn and an identity")
	}
	cfg := defaultConfig()
	if err = cfg.apply(opts); err != nil {
		return nil, err
	}
	serverTLS, err := secure.ServerConfig(id, cfg.allowPeer)
	if err != nil {
		return nil, err
	}
	e := &Endpoint{
		id:       id,
		cfg:      cfg,
		tr:       &quic.Transport{Conn: pc},
		qconf:    quicConfig(&cfg),
		sem:      make(chan struct{}, maxPendingHandshakes),
		conns:    map[*Conn]struct{}{},
		byID:     map[[connIDLen]byte]*Conn{},
		accepted: make(chan *Conn, cfg.acceptBacklog),
	}
	e.ctx, e.cancel = context.WithCancel(context.Background())
	defer func() {
		if err != nil {
			e.cancel()
			_ = e.tr.Close()
		}
	}()
	e.ln, err = e.tr.Listen(serverTLS, e.qconf)
	if err != nil {
		return nil, fmt.Errorf("sdk: listen: %w", err)
	}
	e.wg.Add(1)
	go e.acceptLoop()
	return e, nil
}

// quicConfig derives QUIC settings from the heartbeat: QUIC's idle timeout
// sits beyond the heartbeat's verdict, so the heartbeat decides.
func quicConfig(cfg *config) *quic.Config {
	return &quic.Config{
		HandshakeIdleTimeout:  cfg.handshakeTimeout,
		MaxIdleTimeout:        time.Duration(cfg.heartbeatMisses+2) * cfg.heartbeatInterval,
		MaxIncomingStreams:    int64(cfg.streamBacklog) + 64,
		MaxIncomingUniStreams: -1,
	}
}

// LocalAddr returns the address the endpoint's packet conn is bound to.
func (e *Endpoint) LocalAddr() net.Addr { return e.tr.Conn.LocalAddr() }

// PeerID returns the endpoint's own PeerID.
func (e *Endpoint) PeerID() PeerID { return e.id.PeerID() }

// Dial connects to the peer at addr, which must prove it holds the key of
// peer. opts override the endpoint's options for this connection.
func (e *Endpoint) Dial(ctx context.Context, addr net.Addr, peer PeerID, opts ...Option) (*Conn, error) {
	cfg := e.cfg
	if err := cfg.apply(opts); err != nil {
		return nil, err
	}
	var connID [connIDLen]byte
	if _, err := rand.Read(connID[:]); err != nil {
		return nil, err
	}
	c := newConn(cfg, roleDialer, e.id.PeerID(), peer, connID)
	c.dial = func(ctx context.Context) (*session, error) {
		if cfg.redial != nil && c.isEstablished() {
			path, err := cfg.redial(ctx)
			if err != nil {
				return nil, fmt.Errorf("sdk: redial: %w", err)
			}
			tr := &quic.Transport{Conn: path.Conn}
			release := func() {
				_ = tr.Close()
				_ = path.Conn.Close()
			}
			s, err := e.dialSession(ctx, &cfg, tr, path.Addr, peer, release)
			if err != nil {
				release()
				return nil, err
			}
			s.c = c
			return s, nil
		}
		s, err := e.dialSession(ctx, &cfg, e.tr, addr, peer, nil)
		if err != nil {
			return nil, err
		}
		s.c = c
		return s, nil
	}
	if err := e.track(c, false); err != nil {
		return nil, err
	}
	c.setState(StateConnecting, nil)
	if err := c.redialOnce(ctx); err != nil {
		c.finish(err)
		return nil, fmt.Errorf("sdk: dial %s at %v: %w", peer.Short(), addr, err)
	}
	c.setState(StateConnected, nil)
	c.startSupervisor() //nolint:contextcheck // the supervisor lives as long as the conn, not Dial's ctx
	return c, nil
}

// dialSession runs the QUIC handshake to peer at addr over tr and opens the
// control stream.
func (e *Endpoint) dialSession(ctx context.Context, cfg *config, tr *quic.Transport, addr net.Addr, peer PeerID, release func()) (*session, error) {
	tlsConf, v, err := secure.ClientConfig(e.id, peer)
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
	return newSession(cfg, qc, ctrl, release), nil
}

// Accept returns the next connection a peer dialed.
func (e *Endpoint) Accept(ctx context.Context) (*Conn, error) {
	select {
	case c := <-e.accepted:
		return c, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-e.ctx.Done():
		return nil, ErrClosed
	}
}

// Close closes every connection of the endpoint (with GOAWAY), stops
// accepting and waits for the endpoint's goroutines. It does not close the
// packet conn. Close is idempotent.
func (e *Endpoint) Close() error {
	e.closeOnce.Do(func() {
		e.mu.Lock()
		e.closed = true
		conns := make([]*Conn, 0, len(e.conns))
		for c := range e.conns {
			conns = append(conns, c)
		}
		e.mu.Unlock()
		e.cancel()
		var errs []error
		errs = append(errs, e.ln.Close())
		var wg sync.WaitGroup
		for _, c := range conns {
			wg.Go(func() { _ = c.Close() })
		}
		wg.Wait()
		e.wg.Wait()
		// Conns accepted but never taken by Accept.
		for {
			select {
			case c := <-e.accepted:
				_ = c.Close()
				continue
			default:
			}
			break
		}
		errs = append(errs, e.tr.Close())
		e.closeErr = errors.Join(errs...)
	})
	return e.closeErr
}

// track registers c; acceptor-side conns are also found by connection ID.
func (e *Endpoint) track(c *Conn, byID bool) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return ErrClosed
	}
	if byID {
		if _, dup := e.byID[c.connID]; dup {
			return errors.New("connection ID already in use")
		}
		e.byID[c.connID] = c
	}
	e.conns[c] = struct{}{}
	c.forget = func() {
		e.mu.Lock()
		defer e.mu.Unlock()
		delete(e.conns, c)
		if e.byID[c.connID] == c {
			delete(e.byID, c.connID)
		}
	}
	return nil
}

func (e *Endpoint) acceptLoop() {
	defer e.wg.Done()
	for {
		qc, err := e.ln.Accept(e.ctx)
		if err != nil {
			return
		}
		select {
		case e.sem <- struct{}{}:
		default:
			_ = qc.CloseWithError(quic.ApplicationErrorCode(wire.GoAwayPolicy), "too many pending handshakes")
			continue
		}
		e.wg.Go(func() {
			defer func() { <-e.sem }()
			e.handleIncoming(qc)
		})
	}
}

// handleIncoming reads a dialer's HELLO and either starts a new conn or
// hands the session to the conn it resumes.
func (e *Endpoint) handleIncoming(qc *quic.Conn) {
	cfg := e.cfg
	ctx, cancel := context.WithTimeout(e.ctx, cfg.handshakeTimeout)
	defer cancel()
	peer, err := secure.PeerFromState(qc.ConnectionState().TLS)
	if err != nil {
		_ = qc.CloseWithError(quic.ApplicationErrorCode(wire.GoAwayPolicy), err.Error())
		return
	}
	log := cfg.logger.With("peer", peer.Short())
	ctrl, err := qc.AcceptStream(ctx)
	if err != nil {
		_ = qc.CloseWithError(quic.ApplicationErrorCode(wire.GoAwayProtocolError), fmt.Sprintf("no control stream within %v", cfg.handshakeTimeout))
		log.Debug("incoming session without control stream", "err", err)
		return
	}
	s := newSession(&cfg, qc, ctrl, nil)
	// The endpoint closing ends the handshake at once; a dialer that says
	// nothing is refused when the handshake deadline passes.
	stop := context.AfterFunc(e.ctx, func() { s.terminate(nil, ErrClosed) })
	defer stop()
	deadline, _ := ctx.Deadline()
	f, err := s.readFrame(deadline)
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			s.refuse(wire.GoAwayProtocolError, fmt.Sprintf("no HELLO within %v", cfg.handshakeTimeout))
		} else {
			s.terminate(nil, err)
		}
		log.Debug("incoming session: no HELLO", "err", err)
		return
	}
	h, err := s.expectHello(f)
	if err != nil {
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
		e.mu.Lock()
		c := e.byID[connID]
		e.mu.Unlock()
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
		}
		return
	}

	if len(e.accepted) == cap(e.accepted) {
		s.refuse(wire.GoAwayPolicy, "accept backlog full")
		return
	}
	c := newConn(cfg, roleAcceptor, e.id.PeerID(), peer, connID)
	s.c = c
	if err := e.track(c, true); err != nil {
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
	select {
	case e.accepted <- c:
	default:
		_ = c.closeWith(&GoAwayError{Code: wire.GoAwayPolicy, Reason: "accept backlog full"})
	}
}

// refuse sends a GOAWAY during the handshake and closes the session.
func (s *session) refuse(code wire.GoAwayCode, reason string) {
	s.terminate(&wire.GoAway{Code: code, Reason: reason}, &GoAwayError{Code: code, Reason: reason})
	s.wait()
}
