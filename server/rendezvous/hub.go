package rendezvous

import (
	"context"
	"errors"
	"sync"

	"github.com/ferrynet/ferry/identity"
	"github.com/ferrynet/ferry/wire"
)

// hub is the registry of the peers logged in at this replica, and the
// router between them. With a directory (Redis) it also reaches peers at
// other replicas.
type hub struct {
	srv *Server

	mu    sync.RWMutex
	peers map[identity.PeerID]*session
	dht   map[identity.PeerID]*session // the peers with capability "dht"

	dir directory // nil: this replica is alone
}

// directory is the registry shared by replicas (see redis.go).
type directory interface {
	// claim records that this replica holds peer (with a token naming the
	// login, and whether it offers itself as a DHT node), and kicks the
	// peer's previous login at another replica.
	claim(ctx context.Context, peer identity.PeerID, token string, dht bool) error
	// release forgets peer if the token still holds it.
	release(ctx context.Context, peer identity.PeerID, token string, dht bool)
	// dhtPeers returns up to n DHT-capable peers other than self, from
	// all replicas, in random order.
	dhtPeers(ctx context.Context, self identity.PeerID, n int) ([]identity.PeerID, error)
	// forward sends a routed frame to the replica holding target. It
	// returns errPeerNotFound when no live replica does; the outcome comes
	// back later through hub.result.
	forward(ctx context.Context, from, target identity.PeerID, id uint64, frame []byte) error
	// ready reports whether the directory is reachable.
	ready(ctx context.Context) error
	close() error
}

var errPeerNotFound = errors.New("peer not found")

func newHub(srv *Server) *hub {
	return &hub{
		srv:   srv,
		peers: map[identity.PeerID]*session{},
		dht:   map[identity.PeerID]*session{},
	}
}

// register makes s the session of its PeerID, replacing (and closing) an
// older one.
func (h *hub) register(ctx context.Context, s *session) {
	h.mu.Lock()
	old := h.peers[s.peer]
	h.peers[s.peer] = s
	delete(h.dht, s.peer)
	if s.dht {
		h.dht[s.peer] = s
	}
	n := len(h.peers)
	h.mu.Unlock()
	h.srv.m.peersOnline.Set(float64(n))
	if old != nil {
		old.replaced()
	}
	if h.dir != nil {
		if err := h.dir.claim(ctx, s.peer, s.token, s.dht); err != nil {
			// The local login stands; the refresh loop claims it again.
			h.srv.log.Warn("registry: claim failed", "peer", s.peer.Short(), "err", err)
		}
	}
}

// unregister removes s if it is still its PeerID's session.
func (h *hub) unregister(ctx context.Context, s *session) {
	h.mu.Lock()
	cur := h.peers[s.peer] == s
	if cur {
		delete(h.peers, s.peer)
		delete(h.dht, s.peer)
	}
	n := len(h.peers)
	h.mu.Unlock()
	if !cur {
		return
	}
	h.srv.m.peersOnline.Set(float64(n))
	if h.dir != nil {
		h.dir.release(ctx, s.peer, s.token, s.dht)
	}
}

func (h *hub) local(p identity.PeerID) *session {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return h.peers[p]
}

// sessions returns a snapshot of the local sessions.
func (h *hub) sessions() []*session {
	h.mu.RLock()
	defer h.mu.RUnlock()
	out := make([]*session, 0, len(h.peers))
	for _, s := range h.peers {
		out = append(out, s)
	}
	return out
}

// count returns the number of local sessions.
func (h *hub) count() int {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return len(h.peers)
}

// dhtPeers returns up to n DHT-capable peers other than self: from every
// replica with a directory (this replica's alone if the directory fails).
func (h *hub) dhtPeers(ctx context.Context, self identity.PeerID, n int) [][wire.PeerIDLen]byte {
	if h.dir != nil && n > 0 {
		ps, err := h.dir.dhtPeers(ctx, self, n)
		if err == nil {
			out := make([][wire.PeerIDLen]byte, len(ps))
			for i, p := range ps {
				out[i] = p
			}
			return out
		}
		h.srv.log.Warn("registry: DHT peers from the directory failed; answering with this replica's", "err", err)
	}
	h.mu.RLock()
	defer h.mu.RUnlock()
	var out [][wire.PeerIDLen]byte
	for p := range h.dht { // map order is randomised
		if len(out) == n {
			break
		}
		if p != self {
			out = append(out, p)
		}
	}
	return out
}

// deliverLocal puts frame in the queue of target's local session.
func (h *hub) deliverLocal(target identity.PeerID, frame []byte) wire.SignalErrorCode {
	t := h.local(target)
	if t == nil {
		return wire.SignalErrPeerNotFound
	}
	if !t.enqueue(frame, false) {
		return wire.SignalErrBusy
	}
	return codeOK
}

// codeOK marks a delivered message in the results of deliverLocal and
// result; it is not a wire code.
const codeOK = wire.SignalErrorCode(^uint32(0))

// route delivers a routed frame from s to target, and answers s with a
// receipt (when id is not 0) or an error. For a target at another replica
// the answer comes later, through result.
func (h *hub) route(ctx context.Context, s *session, target identity.PeerID, id uint64, frame []byte) {
	code := h.deliverLocal(target, frame)
	if code == wire.SignalErrPeerNotFound && h.dir != nil {
		err := h.dir.forward(ctx, s.peer, target, id, frame)
		switch {
		case err == nil:
			return // the target's replica reports the outcome
		case errors.Is(err, errPeerNotFound):
		default:
			code = wire.SignalErrUnavailable
		}
	}
	if code == codeOK {
		h.srv.m.routed.WithLabelValues(PathLocal).Inc()
	}
	h.answer(s, target, id, code)
}

// result is the outcome of a message this replica forwarded, reported by
// the target's replica.
func (h *hub) result(from, target identity.PeerID, id uint64, code wire.SignalErrorCode) {
	if s := h.local(from); s != nil {
		h.answer(s, target, id, code)
	} else if code != codeOK {
		h.countDrop(code)
	}
}

// answer tells s what became of its message to target.
func (h *hub) answer(s *session, target identity.PeerID, id uint64, code wire.SignalErrorCode) {
	if code == codeOK {
		if id != 0 {
			s.sendMessage(&wire.Receipt{ID: id, Peer: target}, true)
		}
		return
	}
	h.countDrop(code)
	reason := map[wire.SignalErrorCode]string{
		wire.SignalErrPeerNotFound: "peer " + target.String() + " is not logged in",
		wire.SignalErrBusy:         "peer " + target.String() + " is not reading; its queue is full",
		wire.SignalErrUnavailable:  "the peer registry is unreachable; try again",
	}[code]
	e := &wire.SignalError{Code: code, Reason: reason, ID: id, Peer: target}
	if code == wire.SignalErrBusy || code == wire.SignalErrUnavailable {
		e.RetryAfterMillis = 1000
	}
	s.sendMessage(e, true)
}

func (h *hub) countDrop(code wire.SignalErrorCode) {
	switch code {
	case wire.SignalErrPeerNotFound:
		h.srv.m.dropped.WithLabelValues(DropPeerNotFound).Inc()
	case wire.SignalErrBusy:
		h.srv.m.dropped.WithLabelValues(DropBusy).Inc()
	default:
		h.srv.m.dropped.WithLabelValues(DropUnavailable).Inc()
	}
}

// kick closes the local session of peer if its token matches: another
// replica took the login over.
func (h *hub) kick(peer identity.PeerID, token string) {
	h.mu.Lock()
	s := h.peers[peer]
	if s == nil || s.token != token {
		h.mu.Unlock()
		return
	}
	delete(h.peers, peer)
	delete(h.dht, peer)
	n := len(h.peers)
	h.mu.Unlock()
	h.srv.m.peersOnline.Set(float64(n))
	s.replaced()
}
