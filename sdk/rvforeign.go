package sdk

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ferrynet/ferry/signal"
)

// Dialing a peer logged in at another rendezvous server: when the node's
// own server does not know the peer (ErrPeerNotFound from signaling), Dial
// looks the peer's signed record up in the DHT (Node.StartDiscovery must
// have run) and logs in at a rendezvous server the record names, with the
// node's own key, for the signaling of that negotiation; ICE then runs as
// usual with that server's STUN and TURN credentials. These foreign logins
// are bounded (maxForeignRV) and closed when idle (foreignRVIdle). See
// DESIGN.md, "Dialing a peer at another rendezvous server".

// Bounds on foreign logins.
const (
	// maxForeignRV bounds the foreign servers a node is logged in at.
	maxForeignRV = 8
	// maxRecordRendezvous bounds the servers of one record a Dial tries.
	maxRecordRendezvous = 4
	// maxForeignPeers bounds the remembered "peer P was reached at URL U".
	maxForeignPeers = 256
)

// defaultForeignRVIdle is how long a foreign login is kept with no
// negotiation on it.
const defaultForeignRVIdle = 2 * time.Minute

// foreignRVIdle is defaultForeignRVIdle, in nanoseconds; tests change it.
var foreignRVIdle atomic.Int64

func init() { foreignRVIdle.Store(int64(defaultForeignRVIdle)) }

// foreignRV is one login at another peer's rendezvous server.
type foreignRV struct {
	url  string
	c    atomic.Pointer[signal.Client] // set once logged in
	busy int                           // negotiations using it; guarded by foreignRVs.mu
	last time.Time                     // guarded by foreignRVs.mu
}

// foreignRVs is a Node's foreign logins.
type foreignRVs struct {
	mu      sync.Mutex
	byURL   map[string]*foreignRV
	peerAt  map[PeerID]string // where a peer was last reached
	reaping bool
}

// errNoDiscoveryForDial is added to ErrPeerNotFound when the node could
// have looked in the DHT but discovery is not started.
var errNoDiscoveryForDial = errors.New("not known at this node's rendezvous server, and discovery is not started (Node.StartDiscovery) to look it up in the DHT")

// via returns rv, or the node's own signaling client for nil.
func (n *Node) via(rv *signal.Client) *signal.Client {
	if rv == nil {
		return n.rv
	}
	return rv
}

// credentialsAt returns TURN credentials of the server behind rv: the
// node's own (cached by credentials), or a foreign one (asked each time:
// a foreign login is short-lived).
func (n *Node) credentialsAt(ctx context.Context, rv *signal.Client) (*signal.Credentials, error) {
	if rv == n.rv {
		return n.credentials(ctx)
	}
	cr, err := rv.Credentials(ctx)
	if err != nil {
		return nil, fmt.Errorf("sdk: relay credentials at %s: %w", rv.URL(), err)
	}
	return cr, nil
}

// dialRendezvous negotiates a path to peer through the node's own server
// or, when that one does not know the peer, through a server named in the
// peer's DHT record.
func (n *Node) dialRendezvous(ctx context.Context, cfg *config, peer PeerID) (*session, error) {
	home := signal.NormalizeURL(n.rv.URL())
	// A peer reached at a foreign server before is tried there first (a
	// redial): no lookup, and no offer its home server would refuse.
	if u := n.foreign.lastAt(peer); u != "" {
		s, err := n.dialForeign(ctx, cfg, peer, u)
		if err == nil || !errors.Is(err, ErrPeerNotFound) {
			return s, err
		}
		n.foreign.forget(peer, u)
	}
	s, err := n.dialPath(ctx, cfg, peer, n.rv)
	if err == nil || !errors.Is(err, ErrPeerNotFound) {
		return s, err
	}
	d := n.disc.Load()
	if d == nil {
		return nil, fmt.Errorf("%w: %w", err, errNoDiscoveryForDial)
	}
	info, ferr := d.FindPeer(ctx, peer)
	if ferr != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("%w: not at this node's rendezvous server, and no record in the DHT: %v", ErrPeerNotFound, ferr) //nolint:errorlint // as for the login error
	}
	errs := []error{err}
	tried := 0
	for _, u := range info.Rendezvous {
		nu := signal.NormalizeURL(u)
		if nu == "" || nu == home {
			continue // the node's own server said no already (or the URL is bad)
		}
		if tried == maxRecordRendezvous {
			break
		}
		tried++
		s, ferr := n.dialForeign(ctx, cfg, peer, nu)
		if ferr == nil {
			return s, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		errs = append(errs, fmt.Errorf("at %s: %w", nu, ferr))
		if !errors.Is(ferr, ErrPeerNotFound) && !errors.Is(ferr, errForeignLogin) {
			// The server knows the peer: this is the dial's real outcome
			// (no path, declined, identity).
			return nil, ferr
		}
	}
	if tried == 0 {
		return nil, fmt.Errorf("%w: its record names no other rendezvous server (%q)", err, info.Rendezvous)
	}
	return nil, errors.Join(errs...)
}

// errForeignLogin marks a failed login at a foreign server.
var errForeignLogin = errors.New("sdk: login at the peer's rendezvous server failed")

// dialForeign negotiates a path to peer through the server at u, logging
// in there if the node is not yet.
func (n *Node) dialForeign(ctx context.Context, cfg *config, peer PeerID, u string) (*session, error) {
	f, err := n.acquireForeign(ctx, u)
	if err != nil {
		return nil, err
	}
	defer n.foreign.release(f)
	s, err := n.dialPath(ctx, cfg, peer, f.c.Load())
	if err == nil {
		n.foreign.reachedAt(peer, u)
		n.log.Debug("dialed a peer through its rendezvous server", "peer", peer.Short(), "rendezvous", u)
	}
	return s, err
}

// acquireForeign returns the login at u, making it if needed, marked busy
// until release.
func (n *Node) acquireForeign(ctx context.Context, u string) (*foreignRV, error) {
	fs := &n.foreign
	fs.mu.Lock()
	if fs.byURL == nil {
		fs.byURL = map[string]*foreignRV{}
		fs.peerAt = map[PeerID]string{}
	}
	if f := fs.byURL[u]; f != nil {
		if c := f.c.Load(); c != nil && c.Err() == nil {
			f.busy++
			fs.mu.Unlock()
			return f, nil
		}
		delete(fs.byURL, u) // stopped (replaced, or closed): log in again
	}
	var evict *signal.Client
	if len(fs.byURL) >= maxForeignRV {
		var old *foreignRV
		for _, f := range fs.byURL {
			if f.busy == 0 && (old == nil || f.last.Before(old.last)) {
				old = f
			}
		}
		if old == nil {
			fs.mu.Unlock()
			return nil, fmt.Errorf("%w: already logged in at %d other servers, all in use", errForeignLogin, maxForeignRV)
		}
		delete(fs.byURL, old.url)
		evict = old.c.Load()
	}
	startReaper := !fs.reaping
	fs.reaping = true
	fs.mu.Unlock()
	if evict != nil {
		_ = evict.Close()
	}
	if startReaper {
		n.wg.Go(n.reapForeign)
	}

	f := &foreignRV{url: u}
	// The handler runs on the client's goroutine, as onSignal does.
	opts := append(append([]signal.Option(nil), n.copts...), signal.WithHandler(func(m signal.Message) { //nolint:contextcheck // answers live as long as the node

		if c := f.c.Load(); c != nil {
			// Any message keeps the login for another idle period: an
			// offer answered on it needs far less (handshake and ICE
			// budgets).
			n.foreign.touch(f)
			n.onSignalVia(c, m)
		}
	}))
	lctx, cancel := context.WithTimeout(ctx, n.cfg.node.loginTimeout)
	defer cancel()
	c, err := signal.Dial(lctx, u, n.id, opts...)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		// %v: a login timeout must not read as the dial's ctx ending,
		// which Dial would take as a reason to try again.
		return nil, fmt.Errorf("%w: %s: %v", errForeignLogin, u, err) //nolint:errorlint // see above
	}
	f.c.Store(c)
	n.log.Info("logged in at a peer's rendezvous server", "rendezvous", u)
	fs.mu.Lock()
	closing := n.ctx.Err() != nil
	if other := fs.byURL[u]; other != nil && !closing {
		// Another dial logged in meanwhile: use that one.
		other.busy++
		fs.mu.Unlock()
		_ = c.Close()
		return other, nil
	}
	if closing {
		fs.mu.Unlock()
		_ = c.Close()
		return nil, ErrClosed
	}
	f.busy = 1
	fs.byURL[u] = f
	fs.mu.Unlock()
	return f, nil
}

func (fs *foreignRVs) release(f *foreignRV) {
	fs.mu.Lock()
	f.busy--
	f.last = time.Now()
	fs.mu.Unlock()
}

func (fs *foreignRVs) touch(f *foreignRV) {
	fs.mu.Lock()
	f.last = time.Now()
	fs.mu.Unlock()
}

func (fs *foreignRVs) lastAt(peer PeerID) string {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	return fs.peerAt[peer]
}

func (fs *foreignRVs) reachedAt(peer PeerID, u string) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if _, ok := fs.peerAt[peer]; !ok && len(fs.peerAt) >= maxForeignPeers {
		for p := range fs.peerAt { // any one: a forgotten peer costs one lookup
			delete(fs.peerAt, p)
			break
		}
	}
	fs.peerAt[peer] = u
}

func (fs *foreignRVs) forget(peer PeerID, u string) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if fs.peerAt[peer] == u {
		delete(fs.peerAt, peer)
	}
}

// ForeignRendezvous returns how many other peers' rendezvous servers the
// node is logged in at for dials (bounded, and closed when idle).
func (n *Node) ForeignRendezvous() int {
	n.foreign.mu.Lock()
	defer n.foreign.mu.Unlock()
	return len(n.foreign.byURL)
}

// reapForeign logs out of foreign servers idle for foreignRVIdle, and out
// of all of them when the node closes.
func (n *Node) reapForeign() {
	tick := time.NewTicker(max(time.Duration(foreignRVIdle.Load())/4, 10*time.Millisecond))
	defer tick.Stop()
	fs := &n.foreign
	for {
		var stop []*signal.Client
		select {
		case <-n.ctx.Done():
			fs.mu.Lock()
			for u, f := range fs.byURL {
				delete(fs.byURL, u)
				stop = append(stop, f.c.Load())
			}
			fs.mu.Unlock()
			for _, c := range stop {
				_ = c.Close()
			}
			return
		case now := <-tick.C:
			idle := time.Duration(foreignRVIdle.Load())
			fs.mu.Lock()
			for u, f := range fs.byURL {
				c := f.c.Load()
				if c.Err() != nil || (f.busy == 0 && now.Sub(f.last) >= idle) {
					delete(fs.byURL, u)
					stop = append(stop, c)
				}
			}
			fs.mu.Unlock()
			for _, c := range stop {
				n.log.Debug("logging out of an idle foreign rendezvous server", "rendezvous", c.URL())
				_ = c.Close()
			}
		}
	}
}
