package rendezvous

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"

	"github.com/ferrynet/ferry/identity"
	"github.com/ferrynet/ferry/internal/turnrest"
	"github.com/ferrynet/ferry/wire"
)

// A session is one signaling WebSocket connection. Its reader runs on the
// HTTP handler's goroutine and owns the login state and the rate limiter;
// writes go through a bounded queue drained by a flusher goroutine that
// runs only while there is something to write, so an idle peer costs one
// blocked goroutine.
type session struct {
	srv    *Server
	conn   *websocket.Conn
	ip     netip.Addr
	remote string
	host   string // the HTTP Host header: for URLs handed back, never for checks
	secure bool   // over TLS
	nonce  [wire.NonceLen]byte
	ekm    [wire.LoginExporterLen]byte // the TLS exporter a login signs (secure only)

	// Set by the reader during login; read-only once loggedIn is set.
	peer       identity.PeerID
	token      string
	dht        bool
	serverName string
	loggedIn   atomic.Bool

	lastRead atomic.Int64 // srv.mono() at the last message received
	timer    *time.Timer  // login timeout, then idle timeout

	// Reader-only state.
	limiter   bucket
	overLimit int

	mu       sync.Mutex
	queue    [][]byte
	queued   int // bytes of the frames queued or being written
	flushing bool
	closing  bool // a final frame is queued: close once the queue drains
	status   websocket.StatusCode
	reason   string
	hold     bool          // queue without flushing (during login)
	dead     bool          // closed, or closing in the flusher
	done     chan struct{} // closed once the connection is closed (after the close handshake, if any)
	doneSet  bool          // done is closed
}

// controlReserve is how many frames beyond QueueSize a queue accepts for
// the server's own frames (errors, receipts, PONG, GOAWAY), so that a peer
// whose queue is full of routed messages still learns what happened.
const controlReserve = 32

// maxWriteMessage bounds the WebSocket messages the server writes: frames
// queued together go out in messages of at most this size.
const maxWriteMessage = 64 << 10

func (s *session) log() *slog.Logger {
	l := s.srv.log.With("remote", s.remote)
	if s.loggedIn.Load() {
		l = l.With("peer", s.peer.Short())
	}
	return l
}

// run serves the connection until it ends, then calls end. The login runs
// on the calling goroutine; once the peer is logged in, the session moves
// to a new goroutine whose stack is sized for reading frames rather than
// for the login's cryptography, since an idle peer keeps that goroutine,
// and its stack, for as long as it stays.
func (s *session) run(ctx context.Context, end func()) {
	s.srv.m.connections.Inc()
	s.touch()
	s.timer = time.AfterFunc(s.srv.cfg.LoginTimeout, s.onTimer)
	if _, err := rand.Read(s.nonce[:]); err != nil {
		s.fail(wire.SignalErrInternal, "no randomness for a nonce", websocket.StatusInternalError)
	} else {
		s.sendMessage(&wire.Challenge{
			Version:              wire.SignalVersion,
			Nonce:                s.nonce,
			ServerTimeUnixMillis: s.srv.cfg.now().UnixMilli(),
			MaxPayload:           uint32(s.srv.cfg.maxPayload),
			LoginTimeoutMillis:   uint32(s.srv.cfg.LoginTimeout.Milliseconds()),
			ChannelBinding:       s.binding(),
		}, true)
	}
	if s.readLoop(ctx, true) {
		go func() {
			s.readLoop(ctx, false)
			s.finish(ctx)
			end()
		}()
		return
	}
	s.finish(ctx)
	end()
}

// readLoop reads and handles messages until the connection ends or, with
// untilLogin, the peer has logged in (it then returns true).
func (s *session) readLoop(ctx context.Context, untilLogin bool) bool {
	// Reads are not bound to ctx: the server closes the connection when
	// it stops, and a cancellable context would cost a registration per
	// read.
	rctx := context.WithoutCancel(ctx)
	for !s.isClosing() {
		typ, r, err := s.conn.Reader(rctx)
		if err != nil {
			return false
		}
		s.touch()
		if !s.readMessage(ctx, typ, r) {
			return false
		}
		if untilLogin && s.loggedIn.Load() {
			return true
		}
	}
	return false
}

// finish ends the session: it waits for a final frame to go out, or drops
// the connection, and unregisters the peer.
func (s *session) finish(ctx context.Context) {
	s.timer.Stop()
	if s.isClosing() {
		// A final frame is on its way: the flusher closes the
		// connection, reading the peer's close frame itself.
		<-s.done
	} else {
		s.kill()
	}
	if s.loggedIn.Load() {
		s.srv.hub.unregister(ctx, s)
		s.log().Debug("peer left")
	}
	s.srv.m.connections.Dec()
}

func (s *session) touch() { s.lastRead.Store(s.srv.mono()) }

// readMessage reads and handles one WebSocket message. It returns false
// when the session must stop reading.
func (s *session) readMessage(ctx context.Context, typ websocket.MessageType, r io.Reader) bool {
	bp := s.srv.readBufs.Get().(*[]byte)
	defer s.srv.readBufs.Put(bp)
	buf := *bp
	n := 0
	for n < len(buf) {
		k, err := r.Read(buf[n:])
		n += k
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return false
		}
	}
	limit := len(buf) - 1
	if n > limit {
		s.fail(wire.SignalErrTooLarge, fmt.Sprintf("WebSocket message over %d bytes (max payload %d plus the %d-byte frame overhead)",
			limit, s.srv.cfg.maxPayload, wire.Overhead), websocket.StatusMessageTooBig)
		return false
	}
	if typ != websocket.MessageBinary {
		s.protocolError("text WebSocket message: frames travel in binary messages")
		return false
	}
	b := buf[:n]
	if len(b) == 0 {
		s.protocolError("empty WebSocket message")
		return false
	}
	for len(b) > 0 {
		f, k, err := wire.ParseFrame(b, s.srv.cfg.maxPayload)
		if err != nil {
			if errors.Is(err, wire.ErrFrameTooLarge) {
				s.fail(wire.SignalErrTooLarge, err.Error(), websocket.StatusMessageTooBig)
			} else {
				s.protocolError(err.Error() + " (a WebSocket message holds whole frames)")
			}
			return false
		}
		b = b[k:]
		if !s.handleFrame(ctx, f) {
			return false
		}
	}
	return true
}

func (s *session) protocolError(reason string) {
	if !s.loggedIn.Load() {
		s.srv.m.logins.WithLabelValues(LoginMalformed).Inc()
	}
	s.fail(wire.SignalErrMalformed, reason, websocket.StatusProtocolError)
}

// handleFrame handles one frame. It returns false when the session must
// stop reading.
func (s *session) handleFrame(ctx context.Context, f wire.Frame) bool {
	if s.isClosing() {
		return false
	}
	if !s.loggedIn.Load() {
		if f.Type != wire.TypeLogin {
			s.srv.m.logins.WithLabelValues(LoginMalformed).Inc()
			s.fail(wire.SignalErrNotLoggedIn, fmt.Sprintf("%v before LOGIN", f.Type), websocket.StatusProtocolError)
			return false
		}
		return s.login(ctx, f.Payload)
	}
	if ok, wait := s.limiter.take(s.srv.mono(), s.srv.cfg.PeerRate, s.srv.cfg.PeerBurst); !ok {
		s.srv.m.rateLimited.WithLabelValues(LimitPeer).Inc()
		s.overLimit++
		if s.overLimit > s.srv.cfg.PeerBurst {
			s.fail(wire.SignalErrRateLimited, fmt.Sprintf("more than %d frames over the rate limit of %g/s in a row",
				s.srv.cfg.PeerBurst, s.srv.cfg.PeerRate), websocket.StatusPolicyViolation)
			return false
		}
		s.refuseRateLimited(f, wait)
		return true
	}
	s.overLimit = 0
	switch {
	case f.Type == wire.TypePing:
		var p wire.Ping
		if err := p.Unmarshal(f.Payload); err != nil {
			s.protocolError(err.Error())
			return false
		}
		s.sendMessage(&wire.Pong{ID: p.ID, SentUnixNano: p.SentUnixNano}, true)
	case f.Type.Routed():
		return s.routeFrame(ctx, f)
	case f.Type == wire.TypeCredentialsRequest:
		var m wire.CredentialsRequest
		if err := m.Unmarshal(f.Payload); err != nil {
			s.protocolError(err.Error())
			return false
		}
		s.sendCredentials(m.ID)
	case f.Type == wire.TypeBootstrapRequest:
		var m wire.BootstrapRequest
		if err := m.Unmarshal(f.Payload); err != nil {
			s.protocolError(err.Error())
			return false
		}
		s.sendBootstrap(ctx, m.ID)
	case f.Type == wire.TypeDHT:
		var m wire.DHT
		if err := m.Unmarshal(f.Payload); err != nil {
			s.protocolError(err.Error())
			return false
		}
		s.handleDHT(ctx, &m)
	case f.Type == wire.TypeGoAway:
		s.closeAfter(websocket.StatusNormalClosure, "goodbye")
		return false
	case f.Type == wire.TypeLogin:
		s.protocolError("LOGIN on a connection that is already logged in")
		return false
	default:
		s.fail(wire.SignalErrUnknownType, fmt.Sprintf("frame type %v is not accepted from peers", f.Type), websocket.StatusProtocolError)
		return false
	}
	return true
}

// refuseRateLimited answers a frame dropped by the rate limit.
func (s *session) refuseRateLimited(f wire.Frame, wait time.Duration) {
	e := &wire.SignalError{
		Code:             wire.SignalErrRateLimited,
		Reason:           fmt.Sprintf("over %g frames/s; dropped", s.srv.cfg.PeerRate),
		RetryAfterMillis: uint32(max(wait.Milliseconds(), 1)),
	}
	if m := wire.NewRoutedMessage(f.Type); m != nil && m.Unmarshal(f.Payload) == nil {
		e.ID, e.Peer = m.Header().ID, m.Header().Peer
	}
	s.srv.m.dropped.WithLabelValues(DropRateLimited).Inc()
	s.sendMessage(e, true)
}

func (s *session) routeFrame(ctx context.Context, f wire.Frame) bool {
	m := wire.NewRoutedMessage(f.Type)
	if err := m.Unmarshal(f.Payload); err != nil {
		s.protocolError(err.Error())
		return false
	}
	h := m.Header()
	target := identity.PeerID(h.Peer)
	if target.IsZero() {
		s.protocolError(fmt.Sprintf("%v without a target peer", f.Type))
		return false
	}
	id := h.ID
	h.Peer = s.peer
	frame, err := wire.AppendMessage(make([]byte, 0, wire.Overhead+m.Len()), m)
	if err != nil {
		s.protocolError(err.Error())
		return false
	}
	s.srv.hub.route(ctx, s, target, id, frame)
	return true
}

func (s *session) sendCredentials(id uint64) {
	if ok, wait := s.srv.limits.takeCredentials(s.ip, s.srv.mono()); !ok {
		// Each answer is a relay username: one address with many
		// identities gets no more of them than this.
		s.srv.m.rateLimited.WithLabelValues(LimitIPCredentials).Inc()
		s.sendMessage(&wire.SignalError{
			ID:               id,
			Code:             wire.SignalErrRateLimited,
			Reason:           fmt.Sprintf("too many credential requests from your address (over %g/s)", s.srv.cfg.IPCredentialRate),
			RetryAfterMillis: uint32(max(wait.Milliseconds(), 1)),
		}, true)
		return
	}
	c := &wire.Credentials{ID: id, STUNURLs: s.srv.stunURLs(s)}
	if cfg := &s.srv.cfg; cfg.RelaySecret != "" {
		// coturn REST credentials (its use-auth-secret): any coturn
		// relay, and Ferry's, configured with the same secret accepts
		// them until exp.
		exp := cfg.now().Add(cfg.CredentialTTL)
		c.Username, c.Password = turnrest.Credentials(cfg.RelaySecret, s.peer.String(), ":", exp)
		c.ExpiresUnix = exp.Unix()
		c.RelayURLs = cfg.RelayURLs
	}
	s.srv.m.credentials.Inc()
	s.sendMessage(c, true)
}

func (s *session) sendBootstrap(ctx context.Context, id uint64) {
	seeds := append([]string{s.srv.publicURL(s)}, s.srv.cfg.BootstrapSeeds...)
	s.srv.m.bootstrap.Inc()
	s.sendMessage(&wire.Bootstrap{
		ID:    id,
		Seeds: seeds,
		Peers: s.srv.hub.dhtPeers(ctx, s.peer, s.srv.cfg.bootPeers),
	}, true)
}

// login checks a LOGIN (SPEC.md section 7.4) and registers the peer.
func (s *session) login(ctx context.Context, p []byte) bool {
	if ok, wait := s.srv.limits.takeLogin(s.ip, s.srv.mono()); !ok {
		s.srv.m.rateLimited.WithLabelValues(LimitIPLogin).Inc()
		s.srv.m.logins.WithLabelValues(LoginRateLimited).Inc()
		s.sendMessage(&wire.SignalError{
			Code:             wire.SignalErrRateLimited,
			Reason:           fmt.Sprintf("too many logins from your address (over %g/s); retry later", s.srv.cfg.IPLoginRate),
			RetryAfterMillis: uint32(max(wait.Milliseconds(), 1)),
			Fatal:            true,
		}, true)
		s.closeAfter(websocket.StatusPolicyViolation, wire.SignalErrRateLimited.String())
		return false
	}
	var m wire.Login
	if err := m.Unmarshal(p); err != nil {
		s.srv.m.logins.WithLabelValues(LoginMalformed).Inc()
		s.fail(wire.SignalErrMalformed, err.Error(), websocket.StatusProtocolError)
		return false
	}
	id := identity.PeerID(m.PeerID)
	pub := ed25519.PublicKey(m.PublicKey[:])
	now := s.srv.cfg.now()
	skew := now.Sub(time.UnixMilli(m.TimeUnixMillis))
	switch {
	case m.Version != wire.SignalVersion:
		return s.loginFailed(LoginBadVersion, fmt.Sprintf("signaling version %d is not spoken here; this server speaks %d", m.Version, wire.SignalVersion))
	case m.Nonce != s.nonce:
		// Each nonce is good for one LOGIN on the connection it was sent
		// on, so a LOGIN recorded elsewhere fails here.
		return s.loginFailed(LoginBadNonce, "the nonce is not this connection's challenge (a replayed login?)")
	case identity.IDFromPublicKey(pub) != id:
		err := &identity.MismatchError{Expected: id, Presented: identity.IDFromPublicKey(pub)}
		return s.loginFailed(LoginWrongKey, "the public key does not hash to the claimed peer ID: "+err.Error())
	case !s.srv.nameOK(m.ServerName):
		return s.loginFailed(LoginWrongServer, fmt.Sprintf("the login is signed for server name %q, which is not this server (%s)",
			m.ServerName, s.srv.namesText()))
	case m.ChannelBinding != s.binding():
		if s.secure {
			return s.loginFailed(LoginUnbound, "this server is reached over TLS and accepts only logins bound to the TLS connection "+
				"(channel binding 1, the signature covering the TLS exporter; wire/SPEC.md section 7.4): update the client")
		}
		return s.loginFailed(LoginUnbound, fmt.Sprintf("channel binding %d, but this connection reaches the server without TLS of its own, "+
			"so only binding 0 (as the CHALLENGE said) can be checked", m.ChannelBinding))
	case skew > s.srv.cfg.ClockSkew || skew < -s.srv.cfg.ClockSkew:
		return s.loginFailed(LoginStale, fmt.Sprintf("the login time is %v away from the server's clock; at most %v is accepted (check the clock)",
			skew.Round(time.Second), s.srv.cfg.ClockSkew))
	}
	if err := identity.Verify(id, pub, m.SignedData(s.ekm[:]), m.Signature[:]); err != nil {
		reason := "the signature does not verify: " + err.Error()
		if s.secure {
			reason += " (it must cover this TLS connection's exporter: a login relayed from another connection fails here)"
		}
		return s.loginFailed(LoginBadSignature, reason)
	}
	if allow := s.srv.cfg.AllowPeer; allow != nil && !allow(id) {
		return s.loginFailed(LoginNotAllowed, "this server admits only the peers its operator lists, and "+id.String()+" is not one")
	}
	var tok [8]byte
	_, _ = rand.Read(tok[:])
	s.peer, s.token = id, hex.EncodeToString(tok[:])
	// "dht" is self-declared: the operator may restrict whom BOOTSTRAP
	// answers list (AllowDHT).
	s.dht = slices.Contains(m.Capabilities, "dht") && (s.srv.cfg.AllowDHT == nil || s.srv.cfg.AllowDHT(id))
	s.serverName = m.ServerName
	// LOGGED_IN is queued before the peer becomes reachable, so that it
	// reaches the peer ahead of any message routed to it, but held until
	// the registration is done, so that once the peer has it, others can
	// reach it.
	s.mu.Lock()
	s.hold = true
	s.mu.Unlock()
	s.sendMessage(&wire.LoggedIn{
		PeerID:            m.PeerID,
		ServerID:          s.srv.cfg.replicaID,
		IdleTimeoutMillis: uint32(s.srv.cfg.IdleTimeout.Milliseconds()),
		MaxPayload:        uint32(s.srv.cfg.maxPayload),
	}, true)
	s.loggedIn.Store(true)
	s.srv.hub.register(ctx, s)
	s.srv.m.logins.WithLabelValues(LoginOK).Inc()
	s.mu.Lock()
	s.hold = false
	s.startFlushLocked()
	s.mu.Unlock()
	s.timer.Reset(s.srv.cfg.IdleTimeout)
	s.log().Debug("peer logged in")
	return true
}

// binding is the channel binding a login on this connection must have.
func (s *session) binding() uint32 {
	if s.secure {
		return wire.ChannelBindingTLSExporter
	}
	return wire.ChannelBindingNone
}

func (s *session) loginFailed(result, reason string) bool {
	s.srv.m.logins.WithLabelValues(result).Inc()
	s.log().Info("login refused", "result", result, "reason", reason)
	s.fail(wire.SignalErrLoginFailed, reason, websocket.StatusPolicyViolation)
	return false
}

// onTimer enforces the login timeout, then the idle timeout.
func (s *session) onTimer() {
	if !s.loggedIn.Load() {
		s.srv.m.logins.WithLabelValues(LoginTimeout).Inc()
		s.fail(wire.SignalErrLoginTimeout, fmt.Sprintf("no LOGIN within %v", s.srv.cfg.LoginTimeout), websocket.StatusPolicyViolation)
		return
	}
	idle := time.Duration(s.srv.mono() - s.lastRead.Load())
	if idle >= s.srv.cfg.IdleTimeout {
		s.fail(wire.SignalErrIdleTimeout, fmt.Sprintf("nothing received for %v (send PING)", s.srv.cfg.IdleTimeout), websocket.StatusPolicyViolation)
		return
	}
	s.timer.Reset(s.srv.cfg.IdleTimeout - idle)
}

// replaced closes the session because another login of its PeerID took
// over.
func (s *session) replaced() {
	s.sendMessage(&wire.GoAway{Code: wire.GoAwayReplaced, Reason: "another login of this peer ID replaced this connection"}, true)
	s.closeAfter(websocket.StatusGoingAway, "replaced")
}

// goAway closes the session because the server shuts down.
func (s *session) goAway(retry time.Duration) {
	s.sendMessage(&wire.GoAway{
		Code:             wire.GoAwayShutdown,
		Reason:           "server shutting down",
		RetryAfterMillis: uint32(retry.Milliseconds()),
	}, true)
	s.closeAfter(websocket.StatusGoingAway, "shutting down")
}

// sendMessage queues m. control marks the server's own frames, which may
// use the reserve above QueueSize.
func (s *session) sendMessage(m wire.Message, control bool) {
	frame, err := wire.AppendMessage(make([]byte, 0, wire.Overhead+m.Len()), m)
	if err != nil {
		s.srv.log.Error("encoding a frame failed", "type", m.Type(), "err", err)
		return
	}
	s.enqueue(frame, control)
}

// enqueue queues one encoded frame. It returns false when the queue is
// full (a control frame that finds the reserve full too means the peer is
// stuck, and the connection is dropped) or the session is closing.
func (s *session) enqueue(frame []byte, control bool) bool {
	s.mu.Lock()
	if s.closing || s.dead {
		s.mu.Unlock()
		return false
	}
	limit := s.srv.cfg.QueueSize
	if control {
		limit += controlReserve
	}
	if len(s.queue) >= limit || !control && s.queued+len(frame) > s.srv.cfg.QueueBytes {
		s.mu.Unlock()
		if control {
			s.log().Info("peer does not read; dropping the connection", "queued", limit)
			s.kill()
		}
		return false
	}
	s.queue = append(s.queue, frame)
	s.queued += len(frame)
	s.startFlushLocked()
	s.mu.Unlock()
	return true
}

// fail queues a fatal SIGNAL_ERROR and closes the connection after it.
func (s *session) fail(code wire.SignalErrorCode, reason string, status websocket.StatusCode) {
	s.sendMessage(&wire.SignalError{Code: code, Reason: truncate(reason, wire.MaxReasonLen), Fatal: true}, true)
	s.closeAfter(status, code.String())
}

// closeAfter closes the connection with status once the queue drains.
func (s *session) closeAfter(status websocket.StatusCode, reason string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing || s.dead {
		return
	}
	s.closing, s.status, s.reason = true, status, reason
	s.startFlushLocked()
}

func (s *session) isClosing() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closing || s.dead
}

func (s *session) startFlushLocked() {
	if s.flushing || s.dead || s.hold || len(s.queue) == 0 && !s.closing {
		return
	}
	s.flushing = true
	s.srv.wg.Add(1)
	go s.flush()
}

// flush writes the queue out, then closes the connection if a close is
// pending. It runs while there is something to do, on its own goroutine,
// bounded by the server's lifetime rather than by whoever queued a frame.
//
//nolint:contextcheck // asynchronous by design; its writes use the server's context
func (s *session) flush() {
	defer s.srv.wg.Done()
	var msg []byte
	for {
		s.mu.Lock()
		if s.dead {
			s.flushing, s.queue, s.queued = false, nil, 0
			s.mu.Unlock()
			return
		}
		if s.hold && !s.closing {
			// A login is registering the peer: what it queued (LOGGED_IN)
			// waits, however this flush started, and the login's
			// startFlushLocked sends it once the peer is reachable.
			s.flushing = false
			s.mu.Unlock()
			return
		}
		if len(s.queue) == 0 {
			s.flushing, s.queue, s.queued = false, nil, 0
			if !s.closing {
				s.mu.Unlock()
				return
			}
			// No more frames; done waits for the close handshake, so
			// that a Shutdown waiting on it does not kill the
			// connection before the close frame is out.
			s.dead = true
			status, reason := s.status, s.reason
			s.mu.Unlock()
			_ = s.conn.Close(status, reason)
			s.mu.Lock()
			s.closeDoneLocked()
			s.mu.Unlock()
			return
		}
		batch := s.queue
		s.queue = nil
		s.mu.Unlock()
		for len(batch) > 0 {
			msg = msg[:0]
			for len(batch) > 0 && (len(msg) == 0 || len(msg)+len(batch[0]) <= maxWriteMessage) {
				msg = append(msg, batch[0]...)
				batch = batch[1:]
			}
			ctx, cancel := context.WithTimeout(s.srv.ctx, s.srv.cfg.WriteTimeout)
			err := s.conn.Write(ctx, websocket.MessageBinary, msg)
			cancel()
			if err != nil {
				s.kill()
				s.mu.Lock()
				s.flushing, s.queue, s.queued = false, nil, 0
				s.mu.Unlock()
				return
			}
			s.mu.Lock()
			s.queued -= len(msg)
			s.mu.Unlock()
		}
		if cap(msg) > maxWriteMessage {
			msg = nil
		}
	}
}

func (s *session) markDeadLocked() {
	s.dead = true
	s.closeDoneLocked()
}

func (s *session) closeDoneLocked() {
	if !s.doneSet {
		s.doneSet = true
		close(s.done)
	}
}

// kill drops the connection at once.
func (s *session) kill() {
	s.mu.Lock()
	s.markDeadLocked()
	s.mu.Unlock()
	_ = s.conn.CloseNow()
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && s[n]&0xc0 == 0x80 { // do not split a UTF-8 sequence
		n--
	}
	return s[:n]
}
