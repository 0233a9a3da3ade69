package sdk

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/ferrynet/ferry/sdk/internal/icepath"
	"github.com/ferrynet/ferry/sdk/internal/secure"
	"github.com/ferrynet/ferry/signal"
	"github.com/ferrynet/ferry/wire"
)

// A Node is a peer: logged in to a rendezvous server under its identity, it
// dials other peers by PeerID and accepts their connections, finding a path
// with ICE (direct when the NATs allow it, through a TURN relay otherwise)
// and running an authenticated QUIC session on it. When a path fails, the
// connection reconnects over a new one and resumes without losing messages.
type Node struct {
	*router
	cfg       config
	rv        *signal.Client  // nil for a node with no rendezvous server
	copts     []signal.Option // how it logs in; foreign logins too (rvforeign.go)
	foreign   foreignRVs      // logins at other peers' servers; see rvforeign.go
	lan       *lanState       // nil unless LAN discovery is on; see lan.go
	pmap      *portMapState   // nil unless port mapping is on; see portmap.go
	serverTLS *tls.Config
	log       *slog.Logger

	mu       sync.Mutex
	creds    *signal.Credentials
	udp      udpState
	dialing  map[string]*attempt  // by session ID: our offers awaiting answers
	incoming map[string]*incoming // by peer + session ID: offers being answered
	offers   *offerLimiter
	peers    map[PeerID]*peerSlot // one connection per peer; see peers.go

	lmu       sync.Mutex
	listeners map[string]*streamListener   // by protocol; see netconn.go
	handlers  handlerSet                   // see handle.go
	dht       atomic.Pointer[DHTTransport] // DHTProtocol streams go here; see discovery.go
	disc      atomic.Pointer[Discovery]    // see topic.go
	gsp       gossipSlot                   // see gossip.go

	loginErr error // why the last login in New failed

	closeOnce sync.Once
	closeErr  error
}

// attempt is one outgoing ICE negotiation.
type attempt struct {
	peer   PeerID
	answer chan *wire.Answer // cap 1
	remote chan string       // trickled candidates, bounded
	bye    chan string       // cap 1
}

// incoming is one offer being answered. It is registered as soon as the
// offer arrives, so candidates trickled right behind it are kept until its
// agent exists.
type incoming struct {
	remote chan string // trickled candidates, bounded
	mu     sync.Mutex
	ag     *icepath.Agent // nil until created; closed by Bye
	bye    bool
}

// New creates a node and logs it in to its rendezvous server: it returns
// once logged in, so the first Dial can start at once. A node with no
// rendezvous server runs LAN discovery (WithLAN) and meets only the peers
// on its local network. ctx bounds the
// whole of New; each rendezvous server is given at most the login timeout
// (WithLoginTimeout, default DefaultLoginTimeout), after which the next is
// tried, so New with context.Background fails rather than hangs when no
// server answers. Without WithIdentity or WithIdentityFile the node uses a
// fresh identity kept in memory only: its PeerID then changes on every
// start, so peers cannot find it again after a restart.
func New(ctx context.Context, opts ...NodeOption) (_ *Node, err error) {
	cfg := defaultConfig()
	if err = applyOpts(&cfg, opts, NodeOption.applyNode); err != nil {
		return nil, err
	}
	nc := &cfg.node
	id := nc.identity
	if id == nil && nc.identityFile != "" {
		if id, err = LoadIdentity(nc.identityFile); err != nil {
			return nil, err
		}
	}
	if id == nil {
		if id, err = GenerateIdentity(); err != nil {
			return nil, err
		}
	}
	if len(nc.rendezvous) == 0 && !nc.lanEnabled() {
		return nil, errors.New("sdk: New needs at least one rendezvous URL (WithRendezvous) or LAN discovery (WithLAN)")
	}
	serverTLS, err := secure.ServerConfig(id, cfg.allowPeer)
	if err != nil {
		return nil, err
	}
	n := &Node{
		router:    newRouter(id, cfg),
		cfg:       cfg,
		serverTLS: serverTLS,
		log:       cfg.logger.With("node", id.PeerID().Short()),
		dialing:   map[string]*attempt{},
		incoming:  map[string]*incoming{},
		offers:    newOfferLimiter(nc.offerRate, nc.offerBurst),
		peers:     map[PeerID]*peerSlot{},
		listeners: map[string]*streamListener{},
	}
	n.router.peers = n
	n.router.cfg.presence = n.peerPresent // supervise.go: an acceptor notices a dialer gone
	defer func() {
		if err != nil {
			n.cancel()
			n.stopLAN()
			n.stopPortMap()
		}
	}()
	if err = n.startPortMap(); err != nil { //nolint:contextcheck // the mapping lives as long as the node
		return nil, err
	}
	if nc.lanEnabled() {
		if err = n.startLAN(ctx); err != nil {
			return nil, err
		}
		if len(nc.rendezvous) == 0 {
			return n, nil
		}
	}
	copts := []signal.Option{signal.WithLogger(cfg.logger), signal.WithHandler(n.onSignal)}
	if nc.rendezvousCA != "" {
		copts = append(copts, signal.WithCAFile(nc.rendezvousCA))
	}
	if nc.rvTLS != nil {
		copts = append(copts, signal.WithTLSConfig(nc.rvTLS))
	}
	if nc.dialTCP != nil {
		copts = append(copts, signal.WithDialer(nc.dialTCP))
	}
	n.copts = copts
	var errs []error
	for _, u := range nc.rendezvous {
		if n.login(ctx, u, copts) == nil {
			return n, nil
		}
		errs = append(errs, fmt.Errorf("%s: %w", u, n.loginErr))
		if ctx.Err() != nil {
			break
		}
	}
	return nil, fmt.Errorf("sdk: no rendezvous server: %w", errors.Join(errs...))
}

// login logs in to the rendezvous server at u within the login timeout,
// and learns whether UDP gets out, so the first Dial knows how to reach the
// relays.
func (n *Node) login(parent context.Context, u string, copts []signal.Option) error {
	ctx, cancel := context.WithTimeout(parent, n.cfg.node.loginTimeout)
	defer cancel()
	rv, err := signal.Dial(ctx, u, n.id, copts...)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) && ctx.Err() != nil && parent.Err() == nil {
			err = fmt.Errorf("no login within %v: %w", n.cfg.node.loginTimeout, err)
		}
		n.loginErr = err
		return err
	}
	n.rv = rv
	if cr, cerr := n.credentials(ctx); cerr == nil {
		n.startUDPProbe(cr.STUNURLs)
		n.awaitUDPProbe(ctx, udpProbeGrace)
	}
	return nil
}

// PeerID returns the node's own PeerID, the one peers dial.
func (n *Node) PeerID() PeerID { return n.peerID() }

// Accept returns the next connection a peer dialed. It fails with
// ErrClosed once the node is closed, and with ctx's error when ctx ends.
func (n *Node) Accept(ctx context.Context) (*Conn, error) { return n.accept(ctx) }

// Close closes every connection (with GOAWAY), logs out of the rendezvous
// server and waits for the node's goroutines. Close is idempotent.
func (n *Node) Close() error {
	n.closeOnce.Do(func() {
		n.closeGossip() // see gossip.go
		// Stop signaling first, so no new negotiation starts, then end
		// the ones under way and the connections.
		n.cancel()
		if n.rv != nil {
			n.closeErr = n.rv.Close()
		}
		n.mu.Lock()
		for _, in := range n.incoming {
			in.mu.Lock()
			in.bye = true
			if in.ag != nil {
				_ = in.ag.Close()
			}
			in.mu.Unlock()
		}
		n.mu.Unlock()
		n.shutdown()
		n.stopLAN()
		n.stopPortMap()
		n.waitHandlers()
	})
	return n.closeErr
}

// Dial returns the connection to peer, making one through the rendezvous
// server unless the node has one already. A node keeps one connection per
// peer: Dial returns the one that exists (dialed or accepted), or joins a
// dial under way (which the first caller's ctx bounds), and when two peers
// dial each other at once both end up with the same connection (the one
// dialed by the lower PeerID). opts apply when a new connection is made.
//
// Dial fails fast with ErrPeerNotFound when the peer is offline, with
// ErrNoPath when ICE finds no way through, with ErrDialSelf for the node's
// own PeerID, and with an identity error when whoever answers cannot prove
// peer's key.
func (n *Node) Dial(ctx context.Context, peer PeerID, opts ...DialOption) (*Conn, error) {
	if peer == n.PeerID() {
		return nil, ErrDialSelf
	}
	cfg := n.cfg
	if err := applyOpts(&cfg, opts, DialOption.applyDial); err != nil {
		return nil, err
	}
	c, err := n.dialOnce(ctx, cfg, peer)
	if err != nil {
		if np := (*NoPathError)(nil); errors.As(err, &np) {
			return nil, err // names the peer already
		}
		return nil, fmt.Errorf("sdk: dial %s: %w", peer.Short(), err)
	}
	return c, nil
}

// credentials returns TURN credentials, fetching new ones when those held
// expire within a minute.
func (n *Node) credentials(ctx context.Context) (*signal.Credentials, error) {
	n.mu.Lock()
	cr := n.creds
	n.mu.Unlock()
	if cr != nil && time.Until(cr.Expires) > time.Minute {
		return cr, nil
	}
	cr, err := n.rv.Credentials(ctx)
	if err != nil {
		return nil, fmt.Errorf("sdk: relay credentials: %w", err)
	}
	n.mu.Lock()
	n.creds = cr
	n.mu.Unlock()
	return cr, nil
}

func (n *Node) iceConfig(cr *signal.Credentials) icepath.Config {
	ic := icepath.Config{
		STUN:            cr.STUNURLs,
		Policy:          n.cfg.node.policy.internal(),
		Net:             n.cfg.node.icenet,
		IncludeLoopback: n.cfg.node.loopback,
		IPFilter:        n.cfg.node.ipFilter,
		Timing:          n.cfg.node.timing.internal(),
		Logger:          n.log,
	}
	if n.pmap != nil && n.pmap.ice != nil {
		ic.PortMap = n.pmap.ice
	}
	// Relays are reached over UDP when UDP works and over TCP or TLS when
	// it does not: offering both would let ICE pick (or renominate to) a
	// TCP relay where UDP would do. Until the probe has answered, both.
	known, udpOK := n.udpVerdict()
	var fit, all []icepath.TURN
	for _, u := range cr.RelayURLs {
		t := icepath.TURN{URL: u, Username: cr.Username, Password: cr.Password}
		all = append(all, t)
		if relayOverUDP(u) == udpOK {
			fit = append(fit, t)
		}
	}
	ic.TURN = fit
	if !known || len(fit) == 0 {
		ic.TURN = all
	}
	return ic
}

func newSessionID() ([]byte, error) {
	id := make([]byte, 16)
	_, err := rand.Read(id)
	return id, err
}

// maxTrickle bounds candidates buffered for one negotiation.
const maxTrickle = 64

// dialPath negotiates a new ICE path to peer and runs a QUIC session on it.
// rv is the rendezvous server to signal through: the node's own, or a
// foreign one the peer is logged in at (rvforeign.go).
func (n *Node) dialPath(ctx context.Context, cfg *config, peer PeerID, rv *signal.Client) (*session, error) {
	start := time.Now()
	cr, err := n.credentialsAt(ctx, rv)
	if err != nil {
		return nil, err
	}
	ag, err := icepath.New(n.iceConfig(cr), true)
	if err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			_ = ag.Close()
		}
	}()
	sid, err := newSessionID()
	if err != nil {
		return nil, err
	}
	at := &attempt{peer: peer, answer: make(chan *wire.Answer, 1), remote: make(chan string, maxTrickle), bye: make(chan string, 1)}
	n.mu.Lock()
	n.dialing[string(sid)] = at
	n.mu.Unlock()
	defer func() {
		n.mu.Lock()
		delete(n.dialing, string(sid))
		n.mu.Unlock()
	}()

	ufrag, pwd, err := ag.Credentials()
	if err != nil {
		return nil, err
	}
	// Gathering runs while the offer travels (STUN and TURN take a round
	// trip or two each); the candidates go out once the offer is through.
	sendCands, err := n.trickle(rv, ag, peer, sid, ufrag)
	if err != nil {
		return nil, err
	}
	if err = rv.Offer(ctx, peer, &wire.Offer{RouteHeader: wire.RouteHeader{SessionID: sid}, Ufrag: ufrag, Pwd: pwd}); err != nil {
		if errors.Is(err, signal.ErrPeerNotFound) {
			return nil, fmt.Errorf("%w: %w", ErrPeerNotFound, err)
		}
		return nil, fmt.Errorf("sdk: offer: %w", err)
	}
	sendCands()
	var ans *wire.Answer
	select {
	case ans = <-at.answer:
	case reason := <-at.bye:
		return nil, fmt.Errorf("sdk: peer declined: %s", reason)
	case <-ctx.Done():
		n.sayBye(rv, peer, sid, "dial abandoned") //nolint:contextcheck // ctx has ended; the goodbye uses the node's
		return nil, ctx.Err()
	}
	for _, cand := range ans.Candidates {
		_ = ag.AddRemote(cand)
	}
	stopFeed := n.feed(ag, at.remote)
	pc, err := ag.Connect(ctx, ans.Ufrag, ans.Pwd)
	stopFeed()
	if err != nil {
		n.sayBye(rv, peer, sid, "no path") //nolint:contextcheck // ctx may have ended; the goodbye uses the node's
		return nil, iceError(ctx, peer, err)
	}
	tr := &quic.Transport{Conn: pc}
	p := &path{ice: ag, release: func() {
		_ = tr.Close()
		_ = pc.Close()
	}}
	s, err := n.dialSession(ctx, cfg, tr, pc.Peer(), peer, p)
	if err != nil {
		p.close()
		ok = true // p.close closed the agent
		return nil, err
	}
	p.took = time.Since(start)
	ok = true
	return s, nil
}

// iceError turns an ICE failure into the SDK's errors: a *NoPathError
// holding the dump, or ctx's error alone when ctx ended.
func iceError(ctx context.Context, peer PeerID, err error) error {
	var f *icepath.ConnectError
	if !errors.As(err, &f) {
		return err
	}
	switch {
	case errors.Is(f.Err, icepath.ErrNoPath):
		return &NoPathError{Peer: peer, Dump: f.Dump}
	case ctx.Err() != nil:
		return ctx.Err()
	}
	return fmt.Errorf("sdk: ICE: %w", f.Err)
}

// trickle starts gathering ag's candidates. Those found before send is
// called are held (the peer drops candidates that arrive before the offer
// or answer they belong to), and sent in order when it is; the rest go to
// peer as they come.
func (n *Node) trickle(rv *signal.Client, ag *icepath.Agent, peer PeerID, sid []byte, ufrag string) (send func(), err error) {
	var (
		mu   sync.Mutex
		open bool
		held []string // "" is the end of candidates
	)
	post := func(cand string) {
		if cand == "" {
			_ = rv.EndOfCandidates(n.ctx, peer, sid, ufrag)
			return
		}
		_ = rv.Candidate(n.ctx, peer, sid, ufrag, "candidate:"+cand)
	}
	err = ag.Gather(func(cand string) {
		// Runs on the agent's goroutine: never wait for the network.
		mu.Lock()
		defer mu.Unlock()
		if !open {
			if len(held) < maxTrickle || cand == "" {
				held = append(held, cand)
			}
			return
		}
		post(cand)
	})
	return func() {
		mu.Lock()
		defer mu.Unlock()
		open = true
		for _, c := range held {
			post(c)
		}
		held = nil
	}, err
}

// feed adds trickled remote candidates to ag until stop is called.
func (n *Node) feed(ag *icepath.Agent, remote <-chan string) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case c := <-remote:
				if err := ag.AddRemote(c); err != nil {
					n.log.Debug("bad remote candidate", "err", err)
				}
			case <-done:
				return
			}
		}
	})
	return func() { close(done); wg.Wait() }
}

func (n *Node) sayBye(rv *signal.Client, peer PeerID, sid []byte, reason string) {
	ctx, cancel := context.WithTimeout(n.ctx, time.Second)
	defer cancel()
	_ = rv.Post(ctx, peer, &wire.Bye{RouteHeader: wire.RouteHeader{SessionID: sid}, Reason: reason})
}

// maxIncomingOffers bounds offers being answered at once.
const maxIncomingOffers = 64

// onSignal handles a routed message from the node's rendezvous server (on
// the client's goroutine: it must not block).
func (n *Node) onSignal(m signal.Message) { n.onSignalVia(nil, m) }

// onSignalVia handles a routed message that came through rv (nil: the
// node's own server); offers are answered through the same server.
func (n *Node) onSignalVia(rv *signal.Client, m signal.Message) {
	if m.Err != nil {
		n.log.Debug("rendezvous refused a message", "peer", m.From.Short(), "err", m.Err)
		return
	}
	sid := string(m.SessionID)
	switch msg := m.Msg.(type) {
	case *wire.Offer:
		n.answer(rv, m.From, msg)
	case *wire.Answer:
		n.mu.Lock()
		at := n.dialing[sid]
		n.mu.Unlock()
		if at != nil && at.peer == m.From {
			select {
			case at.answer <- msg:
			default:
			}
		}
	case *wire.Candidate:
		n.mu.Lock()
		at, in := n.dialing[sid], n.incoming[m.From.String()+sid]
		n.mu.Unlock()
		switch {
		case at != nil && at.peer == m.From:
			select {
			case at.remote <- msg.Candidate:
			default: // more than anyone needs
			}
		case in != nil:
			select {
			case in.remote <- msg.Candidate:
			default:
			}
		}
	case *wire.Bye:
		n.mu.Lock()
		at, in := n.dialing[sid], n.incoming[m.From.String()+sid]
		n.mu.Unlock()
		if at != nil && at.peer == m.From {
			select {
			case at.bye <- msg.Reason:
			default:
			}
		}
		if in != nil {
			in.mu.Lock()
			in.bye = true
			if in.ag != nil {
				_ = in.ag.Close()
			}
			in.mu.Unlock()
		}
	}
}

// answer accepts an offer: it starts a controlled ICE agent, answers, and
// in the background waits for the path and the dialer's QUIC session, which
// it hands to the router. Offers beyond the sender's rate are ignored, and
// offers from peers the allow hook refuses are declined, both before any
// ICE or relay work.
func (n *Node) answer(rv *signal.Client, from PeerID, o *wire.Offer) {
	key := from.String() + string(o.SessionID)
	if n.ctx.Err() != nil {
		return
	}
	if !n.offers.allow(from, time.Now()) {
		n.log.Debug("offer over the sender's rate ignored", "peer", from.Short())
		return
	}
	if n.cfg.allowPeer != nil {
		if err := n.cfg.allowPeer(from); err != nil {
			n.log.Debug("offer refused by the allow hook", "peer", from.Short(), "err", err)
			n.wg.Go(func() { n.sayBye(n.via(rv), from, o.SessionID, "refused") })
			return
		}
	}
	in := &incoming{remote: make(chan string, maxTrickle)}
	n.mu.Lock()
	_, dup := n.incoming[key]
	full := len(n.incoming) >= maxIncomingOffers
	if !dup && !full {
		n.incoming[key] = in
	}
	n.mu.Unlock()
	switch {
	case dup:
		return
	case full:
		n.wg.Go(func() { n.sayBye(n.via(rv), from, o.SessionID, "busy") })
		return
	}
	start := time.Now()
	n.wg.Go(func() {
		defer func() {
			n.mu.Lock()
			delete(n.incoming, key)
			n.mu.Unlock()
		}()
		if err := n.acceptPath(n.via(rv), from, o, in, start); err != nil {
			n.log.Debug("incoming offer failed", "peer", from.Short(), "err", err)
		}
	})
}

func (n *Node) acceptPath(rv *signal.Client, from PeerID, o *wire.Offer, in *incoming, start time.Time) error {
	ctx, cancel := context.WithTimeout(n.ctx, n.cfg.handshakeTimeout+n.iceBudget())
	defer cancel()
	cr, err := n.credentialsAt(ctx, rv)
	if err != nil {
		n.sayBye(rv, from, o.SessionID, "no relay credentials")
		return err
	}
	ag, err := icepath.New(n.iceConfig(cr), false)
	if err != nil {
		return err
	}
	in.mu.Lock()
	in.ag = ag
	bye := in.bye
	in.mu.Unlock()
	if bye || n.ctx.Err() != nil {
		_ = ag.Close()
		return errors.New("offer withdrawn")
	}
	handedOver := false
	defer func() {
		if !handedOver {
			_ = ag.Close()
		}
	}()
	for _, c := range o.Candidates {
		_ = ag.AddRemote(c)
	}
	ufrag, pwd, err := ag.Credentials()
	if err != nil {
		return err
	}
	sendCands, err := n.trickle(rv, ag, from, o.SessionID, ufrag)
	if err != nil {
		return err
	}
	if err = rv.Answer(ctx, from, &wire.Answer{RouteHeader: wire.RouteHeader{SessionID: o.SessionID}, Ufrag: ufrag, Pwd: pwd}); err != nil {
		return fmt.Errorf("answer: %w", err)
	}
	sendCands()
	stopFeed := n.feed(ag, in.remote)
	pc, err := ag.Connect(ctx, o.Ufrag, o.Pwd)
	stopFeed()
	if err != nil {
		return iceError(ctx, from, err)
	}
	tr := &quic.Transport{Conn: pc}
	p := &path{ice: ag, release: func() {
		_ = tr.Close()
		_ = pc.Close()
	}}
	handedOver = true
	ln, err := tr.Listen(n.serverTLS, quicConfig(&n.cfg))
	if err != nil {
		p.close()
		return err
	}
	qc, err := ln.Accept(ctx)
	_ = ln.Close()
	if err != nil {
		p.close()
		return fmt.Errorf("no QUIC session on the path: %w", err)
	}
	if peer, perr := secure.PeerFromState(qc.ConnectionState().TLS); perr != nil || peer != from {
		// Whoever completed ICE must be the peer that signaled.
		_ = qc.CloseWithError(quic.ApplicationErrorCode(wire.GoAwayPolicy), "session key does not match the signaling peer")
		p.close()
		return fmt.Errorf("session from %s on a path negotiated with %s", peer.Short(), from.Short())
	}
	p.took = time.Since(start)
	n.handleIncoming(qc, p)
	return nil
}

// iceBudget bounds how long an incoming negotiation may take to find a path.
func (n *Node) iceBudget() time.Duration {
	t := n.cfg.node.timing
	if t.FailedTimeout > 0 {
		return t.FailedTimeout + 5*time.Second
	}
	return 15 * time.Second
}
