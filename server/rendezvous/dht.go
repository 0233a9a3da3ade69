package rendezvous

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/ferrynet/ferry/dht"
	"github.com/ferrynet/ferry/dht/kbucket"
	"github.com/ferrynet/ferry/identity"
	"github.com/ferrynet/ferry/signal"
	"github.com/ferrynet/ferry/wire"
)

// The server's DHT node (README.md, "DHT server node"): peers reach it with
// DHT signaling messages on their logged-in connection; it reaches other
// rendezvous servers by logging in to them with its own key (Config.DHTBootstrap)
// and asking as a peer. It never sends requests down a peer's connection.

// dhtProxies bounds the lookups and stores the server runs at once on
// behalf of its peers; more are not proxied (the local answer stands).
const dhtProxies = 16

// dhtProxyTimeout bounds one of them.
const dhtProxyTimeout = 10 * time.Second

// dhtRetry is the wait between two attempts to join through one bootstrap
// URL.
const dhtRetry = 5 * time.Second

// errNoDHTRoute reports a contact the server has no signaling link to.
var errNoDHTRoute = errors.New("rendezvous: no signaling link to that DHT node")

type dhtServer struct {
	srv  *Server
	id   *identity.Identity
	node *dht.Node
	sem  chan struct{} // proxied lookups and stores in flight

	mu     sync.Mutex
	byNode map[identity.PeerID]*signal.Client // links to other servers, by their DHT node
	links  []*signal.Client
}

// startDHT runs the server's DHT node if Config.DHTIdentity is set.
func (srv *Server) startDHT() error {
	id := srv.cfg.DHTIdentity
	if id == nil {
		return nil
	}
	d := &dhtServer{srv: srv, id: id, byNode: map[identity.PeerID]*signal.Client{}, sem: make(chan struct{}, dhtProxies)}
	node, err := dht.New(id, d, dht.WithLogger(srv.log.With("component", "dht")))
	if err != nil {
		return err
	}
	d.node = node
	srv.dht = d
	srv.log.Info("DHT server node", "id", id.PeerID().String(), "bootstrap", srv.cfg.DHTBootstrap)
	for _, u := range srv.cfg.DHTBootstrap {
		srv.wg.Go(func() { d.join(u) })
	}
	srv.wg.Go(func() {
		<-srv.ctx.Done()
		_ = node.Close()
		d.mu.Lock()
		links := d.links
		d.links = nil
		d.mu.Unlock()
		for _, c := range links {
			_ = c.Close()
		}
	})
	return nil
}

// join logs in at the rendezvous server at u and bootstraps through its DHT
// node, retrying until it succeeds or the server closes.
func (d *dhtServer) join(u string) {
	ctx := d.srv.ctx
	log := d.srv.log.With("component", "dht", "bootstrap", u)
	for {
		err := d.joinOnce(ctx, u)
		if err == nil {
			log.Info("joined the DHT", "contacts", len(d.node.Contacts()))
			return
		}
		if ctx.Err() != nil {
			return
		}
		log.Warn("joining the DHT failed; retrying", "err", err, "retry", dhtRetry)
		select {
		case <-ctx.Done():
			return
		case <-time.After(dhtRetry):
		}
	}
}

func (d *dhtServer) joinOnce(ctx context.Context, u string) error {
	c, err := signal.Dial(ctx, u, d.id, append([]signal.Option{signal.WithLogger(d.srv.log)}, d.srv.cfg.DHTSignalOptions...)...)
	if err != nil {
		return err
	}
	node, err := d.ask(ctx, c)
	if err != nil {
		_ = c.Close()
		return err
	}
	d.mu.Lock()
	if old := d.byNode[node]; old != nil {
		d.mu.Unlock()
		_ = c.Close()
	} else {
		d.byNode[node] = c
		d.links = append(d.links, c)
		d.mu.Unlock()
	}
	rctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	return d.node.Bootstrap(rctx, []kbucket.Contact{{ID: node}})
}

// ask pings the DHT node behind c and returns its ID.
func (d *dhtServer) ask(ctx context.Context, c *signal.Client) (identity.PeerID, error) {
	b, err := dht.AppendMessage(nil, &dht.Ping{Server: true})
	if err != nil {
		return identity.PeerID{}, err
	}
	node, ans, err := c.DHT(ctx, b)
	if err != nil {
		return identity.PeerID{}, err
	}
	m, err := dht.ParseMessage(ans)
	if err != nil {
		return identity.PeerID{}, err
	}
	if m.Type() != dht.TypePong {
		return identity.PeerID{}, fmt.Errorf("rendezvous: DHT ping answered with %v", m.Type())
	}
	if node == d.id.PeerID() {
		return identity.PeerID{}, errors.New("rendezvous: the bootstrap URL is this server's own DHT node")
	}
	return node, nil
}

// Request implements dht.Transport over the links to other servers. The
// answering node is the one the link's server names; the link's TLS (wss)
// authenticates that server's host name, and its answers must carry the
// node ID asked for.
func (d *dhtServer) Request(ctx context.Context, to kbucket.Contact, req dht.Request) (dht.Message, error) {
	d.mu.Lock()
	c := d.byNode[to.ID]
	d.mu.Unlock()
	if c == nil {
		return nil, fmt.Errorf("%w: %s", errNoDHTRoute, to.ID.Short())
	}
	b, err := dht.AppendMessage(nil, req)
	if err != nil {
		return nil, err
	}
	node, ans, err := c.DHT(ctx, b)
	if err != nil {
		return nil, err
	}
	if node != to.ID {
		return nil, fmt.Errorf("rendezvous: DHT answer from %s, asked %s", node.Short(), to.ID.Short())
	}
	return dht.ParseMessage(ans)
}

// handleDHT answers a DHT request from the logged-in peer of s.
func (s *session) handleDHT(ctx context.Context, m *wire.DHT) {
	d := s.srv.dht
	if d == nil {
		s.sendMessage(&wire.SignalError{ID: m.ID, Code: wire.SignalErrUnavailable, Reason: "this server runs no DHT node"}, true)
		return
	}
	refuse := func(err error) {
		s.log().Info("refusing a DHT request", "err", err)
		s.sendMessage(&wire.SignalError{ID: m.ID, Code: wire.SignalErrMalformed, Reason: err.Error()}, true)
	}
	msg, err := dht.ParseMessage(m.Message)
	if err != nil {
		refuse(err)
		return
	}
	req, ok := msg.(dht.Request)
	if !ok {
		refuse(fmt.Errorf("DHT %v is not a request", msg.Type()))
		return
	}
	resp, err := d.node.Handle(ctx, kbucket.Contact{ID: s.peer}, req)
	if err != nil {
		refuse(err)
		return
	}
	if !req.FromServer() {
		forPeer(resp)
	}
	if req.FromServer() || !d.proxy(ctx, s, m.ID, req, resp) {
		s.sendDHT(m.ID, resp)
	}
}

func (s *session) sendDHT(id uint64, resp dht.Message) {
	b, err := dht.AppendMessage(nil, resp)
	if err != nil {
		s.srv.log.Error("encoding a DHT answer failed", "err", err)
		s.sendMessage(&wire.SignalError{ID: id, Code: wire.SignalErrInternal, Reason: "DHT answer too large"}, true)
		return
	}
	s.sendMessage(&wire.DHT{ID: id, Node: s.srv.dht.id.PeerID(), Message: b}, true)
}

// proxy acts for a peer that reaches no DHT node but this one (one behind
// NAT, logged in here): a GET this node cannot answer with records is
// looked up in the DHT, and a record stored here is also stored on the
// nodes closest to its key, both within the session's context sctx. It
// reports whether it took over the answer.
func (d *dhtServer) proxy(sctx context.Context, s *session, id uint64, req dht.Request, local dht.Message) bool {
	switch r := req.(type) {
	case *dht.Get:
		v, ok := local.(*dht.Values)
		if !ok || len(v.Records) > 0 || !d.acquire(s) {
			return false
		}
		d.srv.wg.Go(func() {
			defer func() { <-d.sem }()
			ctx, cancel := context.WithTimeout(sctx, dhtProxyTimeout)
			defer cancel()
			recs, err := d.node.Get(ctx, r.Key)
			if err != nil {
				s.log().Debug("proxied DHT lookup failed", "err", err)
			}
			v.Records = recs[:min(len(recs), dht.MaxValues)]
			s.sendDHT(id, v)
		})
		return true
	case *dht.Put:
		pr, ok := local.(*dht.PutResult)
		if !ok || pr.Code.Err() != nil || !d.acquire(s) {
			return false
		}
		d.srv.wg.Go(func() {
			defer func() { <-d.sem }()
			ctx, cancel := context.WithTimeout(sctx, dhtProxyTimeout)
			defer cancel()
			if _, err := d.node.Store(ctx, r.Record); err != nil {
				s.log().Debug("proxied DHT store failed", "err", err)
			}
		})
	}
	return false
}

func (d *dhtServer) acquire(s *session) bool {
	select {
	case d.sem <- struct{}{}:
		return true
	default:
		s.log().Info("not proxying a DHT request: too many in flight", "limit", dhtProxies)
		return false
	}
}

// forPeer drops the contacts from an answer to a peer: they are DHT nodes
// the peer cannot reach (a Contact names no signaling URL, and other
// servers speak no Ferry sessions), so it would spend its request timeout
// on each; this server looks up and stores on the peer's behalf instead.
func forPeer(resp dht.Message) {
	switch r := resp.(type) {
	case *dht.Nodes:
		r.Closer = nil
	case *dht.Values:
		r.Closer = nil
	}
}
