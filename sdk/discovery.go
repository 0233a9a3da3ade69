package sdk

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/ferrynet/ferry/dht"
	"github.com/ferrynet/ferry/dht/kbucket"
)

// This file carries the DHT (package dht) over a Node's connections: one
// request per stream of protocol DHTProtocol, the responder authenticated
// by the connection's TLS handshake with its key. See README.md,
// "Discovery".

// DHTProtocol is the stream protocol DHT requests travel on.
const DHTProtocol = "ferry/dht/1"

// DHT transport defaults.
const (
	// DefaultDHTMaxConns bounds the connections a DHTTransport dials and
	// keeps for the DHT alone.
	DefaultDHTMaxConns = 32
	// DefaultDHTIdleTimeout closes such a connection once it has carried
	// no DHT request for this long.
	DefaultDHTIdleTimeout = 2 * time.Minute
	// DefaultDHTMaxInflight bounds the requests a node answers at once;
	// more are refused.
	DefaultDHTMaxInflight = 64
	// DefaultDHTPeerInflight bounds the requests from one peer answered
	// at once, so that one peer cannot take every slot.
	DefaultDHTPeerInflight = 8
	// DefaultDHTPeerRate and DefaultDHTPeerBurst bound the requests a
	// second one peer may send on average, and at once; more are refused
	// (a flood of announcements, say).
	DefaultDHTPeerRate  = 8.0
	DefaultDHTPeerBurst = 32
	// dhtWarnEvery spaces the log lines about one flooding peer.
	dhtWarnEvery = 10 * time.Second
	// dhtServeTimeout bounds one incoming request: reading it, answering
	// it and writing the answer.
	dhtServeTimeout = 10 * time.Second
)

// ErrDHTBusy reports a request refused because every DHT connection slot
// is carrying a request.
var ErrDHTBusy = errors.New("sdk: every DHT connection is busy")

// DHTHandler answers a DHT request from an authenticated peer; a
// *dht.Node's Handle method is one.
type DHTHandler func(ctx context.Context, from kbucket.Contact, req dht.Request) (dht.Message, error)

// DHTTransportConfig configures a DHTTransport; zero fields take the
// defaults.
type DHTTransportConfig struct {
	MaxConns    int
	IdleTimeout time.Duration
	MaxInflight int
	// Per peer: requests answered at once, and the rate and burst of
	// requests accepted.
	PeerInflight int
	PeerRate     float64
	PeerBurst    int
}

// A DHTTransport is a dht.Transport over a Node: Request dials the
// contact's PeerID (through the node's rendezvous, as Dial does) and sends
// the request on a new DHTProtocol stream. Connections it had to dial are
// its own: at most MaxConns are kept, the least recently used idle one is
// closed to make room, and each is closed after IdleTimeout without a
// request. A connection the node already had (the app's) is used and never
// closed. Incoming DHTProtocol streams go to the handler set with Serve,
// never to Conn.AcceptStream or a listener.
type DHTTransport struct {
	n   *Node
	cfg DHTTransportConfig
	sem chan struct{}

	mu      sync.Mutex
	handler DHTHandler
	limit   *offerLimiter        // requests per peer
	busy    map[PeerID]int       // requests being answered, per peer
	warned  map[PeerID]time.Time // when a flooding peer was last logged
	rvNode  PeerID               // the rendezvous server's DHT node; see discovery_rendezvous.go
	conns   map[PeerID]*dhtConn  // the connections dialed for the DHT
	closed  bool
	done    chan struct{}
	wg      sync.WaitGroup
}

type dhtConn struct {
	c        *Conn
	last     time.Time
	inflight int
}

var _ dht.Transport = (*DHTTransport)(nil)

// NewDHTTransport returns the node's DHT transport. A node has at most
// one; Close it before making another.
func NewDHTTransport(n *Node, cfg DHTTransportConfig) (*DHTTransport, error) {
	if n == nil {
		return nil, errors.New("sdk: NewDHTTransport needs a node")
	}
	if cfg.MaxConns < 0 || cfg.IdleTimeout < 0 || cfg.MaxInflight < 0 || cfg.PeerInflight < 0 || cfg.PeerRate < 0 || cfg.PeerBurst < 0 {
		return nil, fmt.Errorf("sdk: negative DHT transport limit: %+v", cfg)
	}
	if cfg.MaxConns == 0 {
		cfg.MaxConns = DefaultDHTMaxConns
	}
	if cfg.IdleTimeout == 0 {
		cfg.IdleTimeout = DefaultDHTIdleTimeout
	}
	if cfg.MaxInflight == 0 {
		cfg.MaxInflight = DefaultDHTMaxInflight
	}
	if cfg.PeerInflight == 0 {
		cfg.PeerInflight = DefaultDHTPeerInflight
	}
	if cfg.PeerRate == 0 {
		cfg.PeerRate = DefaultDHTPeerRate
	}
	if cfg.PeerBurst == 0 {
		cfg.PeerBurst = DefaultDHTPeerBurst
	}
	t := &DHTTransport{
		n: n, cfg: cfg, sem: make(chan struct{}, cfg.MaxInflight),
		conns: map[PeerID]*dhtConn{}, done: make(chan struct{}),
		limit: newOfferLimiter(cfg.PeerRate, cfg.PeerBurst),
		busy:  map[PeerID]int{}, warned: map[PeerID]time.Time{},
	}
	if !n.dht.CompareAndSwap(nil, t) {
		return nil, errors.New("sdk: the node already has a DHT transport")
	}
	t.wg.Go(t.reap)
	return t, nil
}

// Serve sets the handler for incoming requests; until it is set they are
// refused.
func (t *DHTTransport) Serve(h DHTHandler) {
	t.mu.Lock()
	t.handler = h
	t.mu.Unlock()
}

// Conns returns how many connections the transport keeps for the DHT.
func (t *DHTTransport) Conns() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.conns)
}

// Close closes the connections the transport dialed and refuses later
// requests, incoming and outgoing.
func (t *DHTTransport) Close() error {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return nil
	}
	t.closed = true
	close(t.done)
	conns := t.conns
	t.conns = map[PeerID]*dhtConn{}
	t.mu.Unlock()
	t.n.dht.CompareAndSwap(t, nil)
	for _, dc := range conns {
		_ = dc.c.Close()
	}
	t.wg.Wait()
	return nil
}

// Request sends req to to.ID and returns its answer. The answering peer is
// the one Ferry's handshake authenticated as to.ID.
func (t *DHTTransport) Request(ctx context.Context, to kbucket.Contact, req dht.Request) (dht.Message, error) {
	if to.ID == t.n.PeerID() {
		return nil, errors.New("sdk: DHT request to this node itself")
	}
	t.mu.Lock()
	rv := !t.rvNode.IsZero() && to.ID == t.rvNode
	t.mu.Unlock()
	if rv {
		return t.viaRendezvous(ctx, to.ID, req)
	}
	c, release, err := t.conn(ctx, to.ID)
	if err != nil {
		return nil, err
	}
	defer release()
	return dhtRoundTrip(ctx, c, req)
}

// dhtRoundTrip sends req on a new stream of c and reads the answer.
func dhtRoundTrip(ctx context.Context, c *Conn, req dht.Request) (dht.Message, error) {
	s, err := c.OpenStream(ctx, DHTProtocol)
	if err != nil {
		return nil, err
	}
	defer s.Close()
	stop := context.AfterFunc(ctx, func() { s.Reset() })
	defer stop()
	if err = writeDHTMessage(s, req); err != nil {
		return nil, ctxOr(ctx, err)
	}
	m, err := readDHTMessage(s)
	if err != nil {
		return nil, ctxOr(ctx, err)
	}
	return m, nil
}

func ctxOr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return err
}

// conn returns a connection to peer and a func to call when the request on
// it is done.
func (t *DHTTransport) conn(ctx context.Context, peer PeerID) (*Conn, func(), error) {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return nil, nil, ErrClosed
	}
	if dc := t.conns[peer]; dc != nil && dc.c.State() != StateClosed {
		dc.inflight++
		t.mu.Unlock()
		return dc.c, t.releaser(peer, dc), nil
	}
	t.mu.Unlock()
	if c := t.n.existingConn(peer); c != nil {
		return c, func() {}, nil
	}
	if err := t.makeRoom(); err != nil {
		return nil, nil, err
	}
	c, err := t.n.Dial(ctx, peer)
	if err != nil {
		return nil, nil, err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		_ = c.Close()
		return nil, nil, ErrClosed
	}
	dc := t.conns[peer]
	if dc == nil || dc.c != c {
		dc = &dhtConn{c: c}
		t.conns[peer] = dc
	}
	dc.inflight++
	return c, t.releaser(peer, dc), nil
}

func (t *DHTTransport) releaser(peer PeerID, dc *dhtConn) func() {
	return func() {
		t.mu.Lock()
		dc.inflight--
		dc.last = time.Now()
		t.mu.Unlock()
	}
}

// makeRoom closes the least recently used idle connection if the
// transport holds MaxConns.
func (t *DHTTransport) makeRoom() error {
	t.mu.Lock()
	if len(t.conns) < t.cfg.MaxConns {
		t.mu.Unlock()
		return nil
	}
	var (
		oldest PeerID
		odc    *dhtConn
	)
	for p, dc := range t.conns {
		if dc.inflight == 0 && (odc == nil || dc.last.Before(odc.last)) {
			oldest, odc = p, dc
		}
	}
	if odc == nil {
		t.mu.Unlock()
		return ErrDHTBusy
	}
	delete(t.conns, oldest)
	t.mu.Unlock()
	t.n.log.Debug("closing the least recently used DHT connection", "peer", oldest.Short())
	return odc.c.Close()
}

// reap closes connections idle for IdleTimeout.
func (t *DHTTransport) reap() {
	tick := time.NewTicker(max(t.cfg.IdleTimeout/4, 10*time.Millisecond))
	defer tick.Stop()
	for {
		select {
		case <-t.done:
			return
		case <-t.n.ctx.Done():
			return
		case now := <-tick.C:
			var idle []*dhtConn
			t.mu.Lock()
			for p, dc := range t.conns {
				if dc.c.State() == StateClosed || (dc.inflight == 0 && now.Sub(dc.last) >= t.cfg.IdleTimeout) {
					delete(t.conns, p)
					idle = append(idle, dc)
				}
			}
			t.mu.Unlock()
			for _, dc := range idle {
				_ = dc.c.Close()
			}
		}
	}
}

// serve answers one incoming DHTProtocol stream.
func (t *DHTTransport) serve(s *Stream) {
	t.mu.Lock()
	h, closed := t.handler, t.closed
	t.mu.Unlock()
	if h == nil || closed {
		s.refuse(streamErrorUnsupported)
		return
	}
	from := s.conn.remote
	if !t.limit.allow(from, time.Now()) {
		t.warnFlood(from, fmt.Sprintf("over %v requests a second (burst %d)", t.cfg.PeerRate, t.cfg.PeerBurst))
		s.refuse(streamErrorBusy)
		return
	}
	t.mu.Lock()
	over := t.busy[from] >= t.cfg.PeerInflight
	if !over {
		t.busy[from]++
	}
	t.mu.Unlock()
	if over {
		t.warnFlood(from, fmt.Sprintf("%d requests in flight already", t.cfg.PeerInflight))
		s.refuse(streamErrorBusy)
		return
	}
	select {
	case t.sem <- struct{}{}:
	default:
		t.unbusy(from)
		t.n.log.Warn("refusing a DHT request: too many in flight", "peer", from.Short(), "limit", t.cfg.MaxInflight)
		s.refuse(streamErrorBusy)
		return
	}
	go func() {
		defer func() { <-t.sem }()
		defer t.unbusy(from)
		ctx, cancel := context.WithTimeout(t.n.ctx, dhtServeTimeout)
		defer cancel()
		_ = s.SetDeadline(time.Now().Add(dhtServeTimeout))
		m, err := readDHTMessage(s)
		if err != nil {
			t.n.log.Warn("refusing a DHT request", "peer", from.Short(), "err", err)
			s.refuse(streamErrorRefused)
			return
		}
		req, ok := m.(dht.Request)
		if !ok {
			t.n.log.Warn("refusing a DHT request: not a request", "peer", from.Short(), "type", m.Type())
			s.refuse(streamErrorRefused)
			return
		}
		resp, err := h(ctx, kbucket.Contact{ID: from}, req)
		if err != nil {
			t.n.log.Debug("DHT request not answered", "peer", from.Short(), "type", req.Type(), "err", err)
			s.refuse(streamErrorRefused)
			return
		}
		if err := writeDHTMessage(s, resp); err != nil {
			t.n.log.Debug("DHT answer not sent", "peer", from.Short(), "err", err)
			s.Reset()
			return
		}
		_ = s.Close()
	}()
}

func (t *DHTTransport) unbusy(p PeerID) {
	t.mu.Lock()
	if t.busy[p]--; t.busy[p] <= 0 {
		delete(t.busy, p)
	}
	t.mu.Unlock()
}

// warnFlood logs a refused request from a peer over its limits, at most
// once every dhtWarnEvery per peer.
func (t *DHTTransport) warnFlood(p PeerID, why string) {
	now := time.Now()
	t.mu.Lock()
	last, ok := t.warned[p]
	say := !ok || now.Sub(last) >= dhtWarnEvery
	if say {
		if len(t.warned) >= maxOfferSenders {
			clear(t.warned)
		}
		t.warned[p] = now
	}
	t.mu.Unlock()
	if say {
		t.n.log.Warn("refusing DHT requests from a peer: "+why, "peer", p.Short(), "quiet", dhtWarnEvery)
	}
}

// A DHT message on a stream is a 4-byte big-endian length and the message
// (dht.AppendMessage's encoding), at most dht.MaxMessageSize bytes.
func writeDHTMessage(w io.Writer, m dht.Message) error {
	b, err := dht.AppendMessage(make([]byte, 4, 512), m)
	if err != nil {
		return err
	}
	binary.BigEndian.PutUint32(b, uint32(len(b)-4))
	_, err = w.Write(b)
	return err
}

func readDHTMessage(r io.Reader) (dht.Message, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, fmt.Errorf("sdk: DHT message length: %w", err)
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n == 0 {
		return nil, fmt.Errorf("sdk: empty DHT message: %w", dht.ErrMalformed)
	}
	if n > dht.MaxMessageSize {
		return nil, fmt.Errorf("sdk: DHT message of %d bytes, maximum %d: %w", n, dht.MaxMessageSize, dht.ErrMessageTooLarge)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		return nil, fmt.Errorf("sdk: DHT message: %w", err)
	}
	return dht.ParseMessage(b)
}

// existingConn returns the node's live connection to peer, if it has one.
func (n *Node) existingConn(peer PeerID) *Conn {
	n.mu.Lock()
	defer n.mu.Unlock()
	sl := n.peers[peer]
	if sl == nil || !sl.resolved() || sl.conn == nil || sl.conn.State() == StateClosed {
		return nil
	}
	return sl.conn
}
