package signal

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"

	"github.com/ferrynet/ferry/identity"
	"github.com/ferrynet/ferry/wire"
)

// State is the state of a Client's connection.
type State int

// Connection states.
const (
	// StateConnecting: the first connection and login are under way.
	StateConnecting State = iota
	// StateConnected: logged in; messages flow.
	StateConnected
	// StateReconnecting: the connection was lost; the client reconnects
	// with backoff and logs in again.
	StateReconnecting
	// StateClosed: Close was called, or another login replaced this one
	// (ErrReplaced). Terminal.
	StateClosed
)

func (s State) String() string {
	switch s {
	case StateConnecting:
		return "connecting"
	case StateConnected:
		return "connected"
	case StateReconnecting:
		return "reconnecting"
	case StateClosed:
		return "closed"
	}
	return "State(" + strconv.Itoa(int(s)) + ")"
}

// Message is a routed message received from another peer, or (Err set) the
// server's refusal of a message this client posted without waiting.
type Message struct {
	// From is the sender, as authenticated by the server. For an Err, it
	// is the target of the refused message.
	From identity.PeerID
	// Type is the frame type: OFFER, ANSWER, CANDIDATE, END_OF_CANDIDATES,
	// BYE, or SIGNAL_ERROR for an Err.
	Type wire.Type
	// SessionID is Msg's session ID.
	SessionID []byte
	// Msg is a *wire.Offer, *wire.Answer, *wire.Candidate,
	// *wire.EndOfCandidates or *wire.Bye; nil for an Err.
	Msg wire.RoutedMessage
	// Err is the server's refusal of a posted message.
	Err *ServerError
}

// Credentials are short-lived TURN credentials and the ICE servers to use
// them with.
type Credentials struct {
	// Username and Password are for every URL in RelayURLs (coturn REST
	// format). Empty when the server has no relays.
	Username, Password string
	// Expires is when they stop working.
	Expires time.Time
	// RelayURLs are TURN URIs such as "turn:relay.example.com:3478?transport=udp".
	RelayURLs []string
	// STUNURLs are STUN URIs such as "stun:rendezvous.example.com:3478".
	STUNURLs []string
}

// Bootstrap is where a new DHT node can start.
type Bootstrap struct {
	// Seeds are signaling URLs of rendezvous servers that seed the DHT,
	// this one first.
	Seeds []string
	// Peers are DHT-capable peers online at this server (at any of its
	// replicas, with Redis).
	Peers []identity.PeerID
}

// writeTimeout bounds one write to the server.
const writeTimeout = 10 * time.Second

// Client is a signaling client: logged in to one rendezvous server, it
// sends and receives routed messages by PeerID and asks for credentials and
// bootstrap seeds. It reconnects and logs in again by itself. All methods
// are safe for concurrent use.
type Client struct {
	url        string
	serverName string
	id         *identity.Identity
	o          options
	http       *http.Client
	log        *slog.Logger

	inbox  chan Message
	nextID atomic.Uint64

	mu        sync.Mutex
	link      *link         // current connection, nil while disconnected
	connected chan struct{} // closed while link is set
	state     State
	err       error // why the client stopped

	ctx    context.Context // ended by Close
	cancel context.CancelFunc
	done   chan struct{}
	wg     sync.WaitGroup
}

// Dial connects to the rendezvous server at rawURL (wss://HOST[:PORT], the
// path defaulting to /v1/signal; ws:// for labs), logs in with id and
// returns once logged in. Transient failures (network, server restarting or
// full) are retried with backoff until ctx ends; a refused login, a
// certificate that does not verify or a bad URL fail at once.
//
// After Dial the client keeps the login: when the connection drops or the
// server restarts it reconnects with backoff and logs in again, until Close
// or ErrReplaced.
func Dial(ctx context.Context, rawURL string, id *identity.Identity, opts ...Option) (*Client, error) {
	if id == nil {
		return nil, errors.New("rendezvous: no identity")
	}
	u, err := parseURL(rawURL)
	if err != nil {
		return nil, err
	}
	o := defaultOptions()
	for _, opt := range opts {
		if oerr := opt(&o); oerr != nil {
			return nil, oerr
		}
	}
	tlsCfg, err := o.tlsConfig()
	if err != nil {
		return nil, err
	}
	dial := o.dial
	if dial == nil {
		d := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}
		dial = d.DialContext
	}
	tr := &http.Transport{
		DialContext:         dial,
		TLSClientConfig:     tlsCfg,
		TLSHandshakeTimeout: 10 * time.Second,
		ForceAttemptHTTP2:   false,
		TLSNextProto:        map[string]func(string, *tls.Conn) http.RoundTripper{},
		MaxIdleConns:        1,
		Proxy:               http.ProxyFromEnvironment,
	}
	c := &Client{
		url:        u.String(),
		serverName: o.serverName,
		id:         id,
		o:          o,
		http:       &http.Client{Transport: tr},
		log:        o.logger,
		inbox:      make(chan Message, o.inbox),
		connected:  make(chan struct{}),
		done:       make(chan struct{}),
	}
	if c.serverName == "" {
		c.serverName = strings.ToLower(u.Hostname())
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	c.log = c.log.With("rendezvous", u.Host)
	c.ctx, c.cancel = context.WithCancel(context.Background())
	l, err := c.connectRetry(ctx, 0, true)
	if err != nil {
		c.cancel()
		tr.CloseIdleConnections()
		return nil, err
	}
	c.attach(l)
	c.wg.Add(1)
	go c.run(l) //nolint:contextcheck // the client outlives Dial's ctx; Close ends it
	return c, nil
}

func parseURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("rendezvous: URL %q: %w", raw, err)
	}
	switch u.Scheme {
	case "wss", "ws", "https", "http":
	default:
		return nil, fmt.Errorf("rendezvous: URL %q: want wss://HOST[:PORT][/v1/signal]", raw)
	}
	if u.Host == "" {
		return nil, fmt.Errorf("rendezvous: URL %q has no host", raw)
	}
	if u.Path == "" || u.Path == "/" {
		u.Path = "/v1/signal"
	}
	return u, nil
}

// PeerID returns the client's identity.
func (c *Client) PeerID() identity.PeerID { return c.id.PeerID() }

// State returns the connection state.
func (c *Client) State() State {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.state
}

// ServerID returns the name of the server replica of the current login, or
// "" while disconnected.
func (c *Client) ServerID() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.link == nil {
		return ""
	}
	return c.link.loggedIn.ServerID
}

// Done is closed when the client has stopped (Close, or ErrReplaced), after
// State reports StateClosed and the state hook has been called for it.
func (c *Client) Done() <-chan struct{} { return c.done }

// Err returns why the client stopped: ErrClosed after Close, ErrReplaced
// when another login took over; nil while it runs.
func (c *Client) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// Messages returns the channel of received messages (unless WithHandler is
// set). It is closed when the client stops. Read it promptly: while it is
// full the client stops reading from the server, which then refuses
// messages for this peer as "busy".
func (c *Client) Messages() <-chan Message { return c.inbox }

// Recv returns the next received message.
func (c *Client) Recv(ctx context.Context) (Message, error) {
	select {
	case m, ok := <-c.inbox:
		if !ok {
			return Message{}, c.stopErr()
		}
		return m, nil
	case <-ctx.Done():
		return Message{}, ctx.Err()
	}
}

func (c *Client) stopErr() error {
	if err := c.Err(); err != nil {
		return err
	}
	return ErrClosed
}

// Send sends a routed message to the peer to and waits until the server has
// put it in the peer's queue. It sets m's peer and ID. It returns nil, or
// ErrPeerNotFound, ErrBusy, ErrRateLimited, ErrUnavailable (as a
// *ServerError), ErrDisconnected, ErrClosed, or ctx's error. While the
// client is reconnecting, Send waits for the connection (within ctx).
func (c *Client) Send(ctx context.Context, to identity.PeerID, m wire.RoutedMessage) error {
	h := m.Header()
	h.Peer, h.ID = to, c.nextID.Add(1)
	frame, err := wire.AppendMessage(nil, m)
	if err != nil {
		return err
	}
	_, err = c.request(ctx, h.ID, frame)
	return err
}

// Post sends a routed message to the peer to without waiting for the
// server's receipt (for trickled candidates). If the server refuses it,
// the refusal arrives as a Message with Err set. It waits for a connection
// within ctx.
func (c *Client) Post(ctx context.Context, to identity.PeerID, m wire.RoutedMessage) error {
	h := m.Header()
	h.Peer, h.ID = to, 0
	frame, err := wire.AppendMessage(nil, m)
	if err != nil {
		return err
	}
	l, err := c.waitLink(ctx)
	if err != nil {
		return err
	}
	return c.write(l, frame)
}

// Offer sends an ICE offer to the peer to (see Send).
func (c *Client) Offer(ctx context.Context, to identity.PeerID, o *wire.Offer) error {
	return c.Send(ctx, to, o)
}

// Answer sends an ICE answer to the peer to (see Send).
func (c *Client) Answer(ctx context.Context, to identity.PeerID, a *wire.Answer) error {
	return c.Send(ctx, to, a)
}

// Candidate trickles one ICE candidate of the session to the peer to,
// without waiting for a receipt (see Post).
func (c *Client) Candidate(ctx context.Context, to identity.PeerID, sessionID []byte, ufrag, candidate string) error {
	return c.Post(ctx, to, &wire.Candidate{RouteHeader: wire.RouteHeader{SessionID: sessionID}, Ufrag: ufrag, Candidate: candidate})
}

// EndOfCandidates tells the peer to that no more candidates follow for
// ufrag (see Post).
func (c *Client) EndOfCandidates(ctx context.Context, to identity.PeerID, sessionID []byte, ufrag string) error {
	return c.Post(ctx, to, &wire.EndOfCandidates{RouteHeader: wire.RouteHeader{SessionID: sessionID}, Ufrag: ufrag})
}

// Bye ends the session with the peer to (see Send).
func (c *Client) Bye(ctx context.Context, to identity.PeerID, sessionID []byte, reason string) error {
	return c.Send(ctx, to, &wire.Bye{RouteHeader: wire.RouteHeader{SessionID: sessionID}, Reason: reason})
}

// Credentials asks the server for TURN credentials and the relay and STUN
// servers to use.
func (c *Client) Credentials(ctx context.Context) (*Credentials, error) {
	id := c.nextID.Add(1)
	frame, err := wire.AppendMessage(nil, &wire.CredentialsRequest{ID: id})
	if err != nil {
		return nil, err
	}
	r, err := c.request(ctx, id, frame)
	if err != nil {
		return nil, err
	}
	if r.creds == nil {
		return nil, fmt.Errorf("%w: answer to a credentials request is not CREDENTIALS", ErrProtocol)
	}
	return &Credentials{
		Username:  r.creds.Username,
		Password:  r.creds.Password,
		Expires:   time.Unix(r.creds.ExpiresUnix, 0),
		RelayURLs: r.creds.RelayURLs,
		STUNURLs:  r.creds.STUNURLs,
	}, nil
}

// Bootstrap asks the server for DHT seeds.
func (c *Client) Bootstrap(ctx context.Context) (*Bootstrap, error) {
	id := c.nextID.Add(1)
	frame, err := wire.AppendMessage(nil, &wire.BootstrapRequest{ID: id})
	if err != nil {
		return nil, err
	}
	r, err := c.request(ctx, id, frame)
	if err != nil {
		return nil, err
	}
	if r.boot == nil {
		return nil, fmt.Errorf("%w: answer to a bootstrap request is not BOOTSTRAP", ErrProtocol)
	}
	b := &Bootstrap{Seeds: r.boot.Seeds}
	for _, p := range r.boot.Peers {
		b.Peers = append(b.Peers, identity.PeerID(p))
	}
	return b, nil
}

// request writes frame and waits for the answer carrying id.
func (c *Client) request(ctx context.Context, id uint64, frame []byte) (result, error) {
	l, err := c.waitLink(ctx)
	if err != nil {
		return result{}, err
	}
	ch := make(chan result, 1)
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return result{}, ErrDisconnected
	}
	l.pending[id] = ch
	l.mu.Unlock()
	forget := func() {
		l.mu.Lock()
		delete(l.pending, id)
		l.mu.Unlock()
	}
	if err := c.write(l, frame); err != nil {
		forget()
		return result{}, err
	}
	select {
	case r := <-ch:
		return r, r.err
	case <-ctx.Done():
		forget()
		return result{}, ctx.Err()
	case <-c.done:
		return result{}, c.stopErr()
	}
}

// write sends one frame on l. The write is bounded by its own timeout, not
// by a caller's context: an expired context would close the connection.
//
//nolint:contextcheck // deliberately independent of the caller's context
func (c *Client) write(l *link, frame []byte) error {
	ctx, cancel := context.WithTimeout(c.ctx, writeTimeout)
	defer cancel()
	if err := l.conn.Write(ctx, websocket.MessageBinary, frame); err != nil {
		return fmt.Errorf("%w: %w", ErrDisconnected, err)
	}
	return nil
}

// waitLink returns the current connection, waiting for one within ctx.
func (c *Client) waitLink(ctx context.Context) (*link, error) {
	for {
		c.mu.Lock()
		l, ready, err := c.link, c.connected, c.err
		c.mu.Unlock()
		if err != nil {
			return nil, err
		}
		if l != nil {
			return l, nil
		}
		select {
		case <-ready:
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-c.done:
			return nil, c.stopErr()
		}
	}
}

// Close says goodbye to the server (GOAWAY), closes the connection and
// stops the client. It is idempotent.
func (c *Client) Close() error {
	c.mu.Lock()
	l := c.link
	first := c.err == nil
	if first {
		c.err = ErrClosed
	}
	c.mu.Unlock()
	if l != nil && first {
		if frame, err := wire.AppendMessage(nil, &wire.GoAway{Code: wire.GoAwayNormal, Reason: "client closing"}); err == nil {
			_ = c.write(l, frame)
		}
		_ = l.conn.Close(websocket.StatusNormalClosure, "goodbye")
	}
	c.cancel()
	c.wg.Wait()
	return nil
}
