package signal

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"

	"github.com/ferrynet/ferry/identity"
	"github.com/ferrynet/ferry/wire"
)

// link is one logged-in connection and the requests waiting on it.
type link struct {
	conn        *websocket.Conn
	loggedIn    wire.LoggedIn
	mu          sync.Mutex
	pending     map[uint64]chan result
	closed      bool
	lastRecv    atomic.Int64
	retryAfter  time.Duration // from GOAWAY shutdown
	terminalErr error         // ErrReplaced
}

type result struct {
	err   error
	creds *wire.Credentials
	boot  *wire.Bootstrap
	dht   *wire.DHT
}

// maxRead bounds one WebSocket message from the server.
const maxRead = 1<<20 + wire.Overhead

func (c *Client) setState(s State, err error) {
	c.mu.Lock()
	changed := c.state != s
	c.state = s
	c.mu.Unlock()
	if changed {
		c.log.Debug("rendezvous connection", "state", s, "err", err)
		if c.o.stateHook != nil {
			c.o.stateHook(s, err)
		}
	}
}

// run serves connections until the client stops: it reads the current one,
// and when it ends, reconnects.
func (c *Client) run(l *link) {
	defer c.wg.Done()
	defer func() {
		c.mu.Lock()
		if c.err == nil {
			c.err = ErrClosed
		}
		err := c.err
		c.mu.Unlock()
		c.http.CloseIdleConnections()
		// The state hook sees StateClosed before Done closes, so whoever
		// waits on Done finds the client closed, hook included.
		c.setState(StateClosed, err)
		close(c.done)
		close(c.inbox)
	}()
	for {
		err := c.serve(l)
		c.detach(l)
		if l.terminalErr != nil {
			c.mu.Lock()
			if c.err == nil {
				c.err = l.terminalErr
			}
			c.mu.Unlock()
			return
		}
		if c.ctx.Err() != nil {
			return
		}
		c.setState(StateReconnecting, err)
		c.log.Info("rendezvous connection lost; reconnecting", "err", err)
		// Without a hint, jitter the first attempt so that the peers of a
		// restarted server do not all come back at the same instant.
		wait := l.retryAfter
		if wait == 0 {
			b := c.o.backoff()
			wait = b.Next()
		}
		l, err = c.connectRetry(c.ctx, wait, false)
		if err != nil {
			return // closed while reconnecting
		}
		c.attach(l)
	}
}

func (c *Client) attach(l *link) {
	c.mu.Lock()
	c.link = l
	close(c.connected)
	c.mu.Unlock()
	c.setState(StateConnected, nil)
}

func (c *Client) detach(l *link) {
	c.mu.Lock()
	c.link = nil
	c.connected = make(chan struct{})
	c.mu.Unlock()
	l.mu.Lock()
	l.closed = true
	pending := l.pending
	l.pending = nil
	l.mu.Unlock()
	for _, ch := range pending {
		ch <- result{err: ErrDisconnected}
	}
	_ = l.conn.CloseNow()
}

// connectRetry connects and logs in, retrying failures with backoff (the
// first attempt after wait) until ctx ends. For the first login (Dial),
// permanent failures return at once.
func (c *Client) connectRetry(ctx context.Context, wait time.Duration, first bool) (*link, error) {
	bo := c.o.backoff()
	var last error
	for attempt := 0; ; attempt++ {
		if wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				return nil, errors.Join(ctx.Err(), last)
			}
		}
		l, retry, err := c.connect(ctx)
		if err == nil {
			return l, nil
		}
		if ctx.Err() != nil {
			return nil, errors.Join(ctx.Err(), err)
		}
		last = err
		if permanent(err) {
			if first {
				return nil, err
			}
			c.log.Warn("rendezvous login refused; retrying", "err", err, "attempt", attempt+1)
		} else {
			c.log.Debug("rendezvous connect failed", "err", err, "attempt", attempt+1)
		}
		// Full jitter over the current step, but never below the
		// server's hint.
		wait = max(retry, bo.Next())
	}
}

// permanentError marks failures that retrying does not fix.
type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

func permanent(err error) bool {
	var p *permanentError
	return errors.As(err, &p)
}

// connect opens one connection and logs in. retry is the server's hint
// when it refused for now.
func (c *Client) connect(ctx context.Context) (l *link, retry time.Duration, err error) {
	conn, resp, err := websocket.Dial(ctx, c.url, &websocket.DialOptions{HTTPClient: c.http})
	var tlsState *tls.ConnectionState
	if resp != nil {
		tlsState = resp.TLS
		if resp.Body != nil {
			resp.Body.Close()
		}
	}
	if err != nil {
		if resp != nil {
			retry = retryAfter(resp.Header.Get("Retry-After"))
			if resp.StatusCode >= 400 && resp.StatusCode < 500 && resp.StatusCode != http.StatusTooManyRequests {
				return nil, 0, &permanentError{fmt.Errorf("rendezvous: %s answered %s", c.url, resp.Status)}
			}
		}
		var cv *tls.CertificateVerificationError
		if errors.As(err, &cv) {
			return nil, 0, &permanentError{fmt.Errorf("rendezvous: %w (trust the server's CA with WithCAFile)", err)}
		}
		return nil, retry, fmt.Errorf("rendezvous: connect %s: %w", c.url, err)
	}
	defer func() {
		if err != nil {
			_ = conn.CloseNow()
		}
	}()
	conn.SetReadLimit(maxRead)
	hctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	f, err := readOne(hctx, conn)
	if err != nil {
		return nil, 0, err
	}
	var ch wire.Challenge
	switch f.Type {
	case wire.TypeChallenge:
		if uerr := ch.Unmarshal(f.Payload); uerr != nil {
			return nil, 0, fmt.Errorf("%w: %w", ErrProtocol, uerr)
		}
	case wire.TypeGoAway:
		var g wire.GoAway
		_ = g.Unmarshal(f.Payload)
		return nil, time.Duration(g.RetryAfterMillis) * time.Millisecond, fmt.Errorf("rendezvous: server said %v", &g)
	case wire.TypeSignalError:
		var e wire.SignalError
		_ = e.Unmarshal(f.Payload)
		return nil, time.Duration(e.RetryAfterMillis) * time.Millisecond, serverError(&e)
	default:
		return nil, 0, fmt.Errorf("%w: first frame is %v, want CHALLENGE", ErrProtocol, f.Type)
	}
	if ch.Version != wire.SignalVersion {
		return nil, 0, &permanentError{fmt.Errorf("%w: server speaks signaling version %d, this client %d", ErrProtocol, ch.Version, wire.SignalVersion)}
	}
	ekm, err := channelBinding(ch.ChannelBinding, tlsState)
	if err != nil {
		return nil, 0, &permanentError{err}
	}
	login := &wire.Login{
		Version:        wire.SignalVersion,
		PeerID:         c.id.PeerID(),
		PublicKey:      [wire.PublicKeyLen]byte(c.id.PublicKey()),
		Nonce:          ch.Nonce,
		ServerName:     c.serverName,
		TimeUnixMillis: c.o.now().UnixMilli(),
		Capabilities:   c.o.capabilities,
		ChannelBinding: ch.ChannelBinding,
	}
	login.Signature = [wire.SignatureLen]byte(c.id.Sign(login.SignedData(ekm)))
	frame, err := wire.AppendMessage(nil, login)
	if err != nil {
		return nil, 0, &permanentError{err}
	}
	if err = conn.Write(hctx, websocket.MessageBinary, frame); err != nil {
		return nil, 0, fmt.Errorf("rendezvous: login: %w", err)
	}
	f, err = readOne(hctx, conn)
	if err != nil {
		return nil, 0, fmt.Errorf("rendezvous: login: %w", err)
	}
	l = &link{conn: conn, pending: map[uint64]chan result{}}
	switch f.Type {
	case wire.TypeLoggedIn:
		if err := l.loggedIn.Unmarshal(f.Payload); err != nil {
			return nil, 0, fmt.Errorf("%w: %w", ErrProtocol, err)
		}
		if l.loggedIn.PeerID != c.id.PeerID() {
			return nil, 0, fmt.Errorf("%w: logged in as another peer ID", ErrProtocol)
		}
	case wire.TypeSignalError:
		var e wire.SignalError
		_ = e.Unmarshal(f.Payload)
		se := serverError(&e)
		if e.Code == wire.SignalErrLoginFailed || e.Code == wire.SignalErrMalformed {
			return nil, 0, &permanentError{fmt.Errorf("%w: %w", ErrLoginRefused, se)}
		}
		return nil, se.RetryAfter, se
	default:
		return nil, 0, fmt.Errorf("%w: answer to LOGIN is %v", ErrProtocol, f.Type)
	}
	l.lastRecv.Store(time.Now().UnixNano())
	return l, 0, nil
}

// channelBinding returns the keying material a login signs for the binding
// the CHALLENGE asked for (wire/SPEC.md section 7.4): with the TLS
// exporter, the login is good on this TLS connection only, so a server the
// client logs in to cannot replay it at another.
func channelBinding(binding uint32, st *tls.ConnectionState) ([]byte, error) {
	switch binding {
	case wire.ChannelBindingNone:
		return nil, nil
	case wire.ChannelBindingTLSExporter:
		if st == nil {
			return nil, fmt.Errorf("%w: the server asks for a login bound to TLS, but this connection has no TLS (a ws:// URL to a wss server?)", ErrProtocol)
		}
		ekm, err := st.ExportKeyingMaterial(wire.LoginExporterLabel, nil, wire.LoginExporterLen)
		if err != nil {
			return nil, fmt.Errorf("%w: the server asks for a login bound to TLS: %w", ErrProtocol, err)
		}
		return ekm, nil
	}
	return nil, fmt.Errorf("%w: the server asks for channel binding %d, which this client does not know (update it)", ErrProtocol, binding)
}

func retryAfter(h string) time.Duration {
	if s, err := strconv.Atoi(strings.TrimSpace(h)); err == nil && s > 0 && s < 3600 {
		return time.Duration(s) * time.Second
	}
	return 0
}

// readOne reads one WebSocket message holding exactly one frame.
func readOne(ctx context.Context, conn *websocket.Conn) (wire.Frame, error) {
	typ, data, err := conn.Read(ctx)
	if err != nil {
		return wire.Frame{}, err
	}
	if typ != websocket.MessageBinary {
		return wire.Frame{}, fmt.Errorf("%w: text message from the server", ErrProtocol)
	}
	f, n, err := wire.ParseFrame(data, maxRead)
	if err != nil {
		return wire.Frame{}, fmt.Errorf("%w: %w", ErrProtocol, err)
	}
	if n != len(data) {
		return wire.Frame{}, fmt.Errorf("%w: more than one frame during login", ErrProtocol)
	}
	return f, nil
}

// serve reads l until it fails, pinging meanwhile.
func (c *Client) serve(l *link) error {
	ctx, cancel := context.WithCancel(c.ctx)
	defer cancel()
	interval := c.o.pingInterval
	if interval == 0 {
		interval = min(time.Duration(l.loggedIn.IdleTimeoutMillis)*time.Millisecond/3, 30*time.Second)
		if interval <= 0 {
			interval = 30 * time.Second
		}
	}
	c.wg.Add(1)
	go c.ping(ctx, l, interval)
	for {
		typ, data, err := l.conn.Read(ctx)
		if err != nil {
			return err
		}
		l.lastRecv.Store(time.Now().UnixNano())
		if typ != websocket.MessageBinary {
			return fmt.Errorf("%w: text message from the server", ErrProtocol)
		}
		for len(data) > 0 {
			f, n, err := wire.ParseFrame(data, maxRead)
			if err != nil {
				return fmt.Errorf("%w: %w", ErrProtocol, err)
			}
			data = data[n:]
			if err := c.dispatch(ctx, l, f); err != nil {
				return err
			}
		}
	}
}

// ping sends PING every interval, and drops the connection when nothing
// has been received for three intervals (a dead path).
func (c *Client) ping(ctx context.Context, l *link, interval time.Duration) {
	defer c.wg.Done()
	t := time.NewTicker(interval)
	defer t.Stop()
	var n uint64
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if since := time.Since(time.Unix(0, l.lastRecv.Load())); since > 3*interval {
			c.log.Info("rendezvous server silent; reconnecting", "silent", since.Round(time.Second))
			_ = l.conn.CloseNow()
			return
		}
		n++
		frame, _ := wire.AppendMessage(nil, &wire.Ping{ID: n, SentUnixNano: time.Now().UnixNano()})
		if err := c.write(l, frame); err != nil {
			return
		}
	}
}

// dispatch handles one frame from the server.
func (c *Client) dispatch(ctx context.Context, l *link, f wire.Frame) error {
	switch {
	case f.Type.Routed():
		m := wire.NewRoutedMessage(f.Type)
		if err := m.Unmarshal(f.Payload); err != nil {
			return fmt.Errorf("%w: %w", ErrProtocol, err)
		}
		h := m.Header()
		return c.deliver(ctx, Message{From: identity.PeerID(h.Peer), Type: f.Type, SessionID: h.SessionID, Msg: m})
	case f.Type == wire.TypeReceipt:
		var r wire.Receipt
		if err := r.Unmarshal(f.Payload); err != nil {
			return fmt.Errorf("%w: %w", ErrProtocol, err)
		}
		l.answer(r.ID, result{})
	case f.Type == wire.TypeSignalError:
		var e wire.SignalError
		if err := e.Unmarshal(f.Payload); err != nil {
			return fmt.Errorf("%w: %w", ErrProtocol, err)
		}
		se := serverError(&e)
		if e.ID != 0 && l.answer(e.ID, result{err: se}) {
			return nil
		}
		if e.Fatal {
			c.log.Warn("rendezvous server closes the connection", "err", se)
			return se
		}
		return c.deliver(ctx, Message{From: identity.PeerID(e.Peer), Type: f.Type, Err: se})
	case f.Type == wire.TypeCredentials:
		var m wire.Credentials
		if err := m.Unmarshal(f.Payload); err != nil {
			return fmt.Errorf("%w: %w", ErrProtocol, err)
		}
		l.answer(m.ID, result{creds: &m})
	case f.Type == wire.TypeBootstrap:
		var m wire.Bootstrap
		if err := m.Unmarshal(f.Payload); err != nil {
			return fmt.Errorf("%w: %w", ErrProtocol, err)
		}
		l.answer(m.ID, result{boot: &m})
	case f.Type == wire.TypeDHT:
		var m wire.DHT
		if err := m.Unmarshal(f.Payload); err != nil {
			return fmt.Errorf("%w: %w", ErrProtocol, err)
		}
		l.answer(m.ID, result{dht: &m})
	case f.Type == wire.TypePong:
	case f.Type == wire.TypeGoAway:
		var g wire.GoAway
		if err := g.Unmarshal(f.Payload); err != nil {
			return fmt.Errorf("%w: %w", ErrProtocol, err)
		}
		if g.Code == wire.GoAwayReplaced {
			l.terminalErr = ErrReplaced
			return ErrReplaced
		}
		l.retryAfter = time.Duration(g.RetryAfterMillis) * time.Millisecond
		return fmt.Errorf("rendezvous: server said %v", &g)
	default:
		return fmt.Errorf("%w: unexpected %v from the server", ErrProtocol, f.Type)
	}
	return nil
}

// deliver hands a message to the application, waiting while the inbox is
// full.
func (c *Client) deliver(ctx context.Context, m Message) error {
	if c.o.handler != nil {
		c.o.handler(m)
		return nil
	}
	select {
	case c.inbox <- m:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// answer completes the request waiting for id; false if none is.
func (l *link) answer(id uint64, r result) bool {
	l.mu.Lock()
	ch, ok := l.pending[id]
	delete(l.pending, id)
	l.mu.Unlock()
	if ok {
		ch <- r
	}
	return ok
}
