package sdk

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/ferrynet/ferry/gossip"
	"github.com/ferrynet/ferry/gossip/streams"
)

// This file wires package gossip into a Node: Topic.Publish and
// Topic.Subscribe. A node runs one gossip.Router, created on the first
// Publish or Subscribe of any topic, over streams of protocol
// GossipProtocol (gossip/streams); a topic's mesh is fed from Topic.Peers.
// See README.md, "Publish and subscribe on a topic", and
// ../gossip/README.md, "In the SDK".

// GossipProtocol is the stream protocol gossip frames travel on.
const GossipProtocol = streams.Protocol

// Gossip limits.
const (
	// GossipMaxConns bounds the connections a node dials for gossip and
	// keeps; a dial beyond fails and the mesh tries another candidate.
	GossipMaxConns = 32
	// gossipKnown bounds the peers a topic remembers from discovery.
	gossipKnown = 1024
	// A known peer given back to a short mesh waits this long, doubling,
	// before it is given back again.
	gossipRetryMin = 30 * time.Second
	gossipRetryMax = 10 * time.Minute
)

// Gossip timers; variables so that a test (with its *testing.T, see
// gossip_test.go) can shorten them.
var (
	// gossipIdle is how long a connection dialed for gossip stays open
	// once its peer is in no topic's mesh.
	gossipIdle = 30 * time.Second
	// gossipReap is how often such connections are looked at, and how
	// often a topic short of neighbours gets its known peers back as
	// candidates.
	gossipReap = 5 * time.Second
)

// ErrGossipBusy reports a gossip dial refused because the node keeps
// GossipMaxConns connections dialed for gossip already.
var ErrGossipBusy = errors.New("sdk: every gossip connection slot is taken")

// A Message is a message published on a topic, as delivered to
// subscribers: its origin's PeerID (the key that signed it), its sequence
// number (increasing per origin), and its data.
type Message = gossip.Message

// GossipMetrics are a node's gossip counters: the router's (drops by cause,
// deliveries, repair) and the frames the stream transport dropped because
// a peer's queue was full.
type GossipMetrics struct {
	gossip.Metrics
	SendDrops uint64 `json:"send_drops"`
}

// nodeGossip is a Node's gossip: one router and its stream transport.
type nodeGossip struct {
	n  *Node
	r  *gossip.Router
	tr *streams.Transport
	// gossipIdle and gossipReap when the gossip started.
	idle, reapEvery time.Duration

	mu     sync.Mutex
	topics map[*Topic]*gossip.Topic
	ours   map[PeerID]*gossipConn // connections dialed for gossip
	// sendConn is the connection each peer's outgoing stream is on.
	sendConn map[PeerID]*Conn
	done     chan struct{}
	wg       sync.WaitGroup
}

type gossipConn struct {
	c    *Conn
	idle time.Time // when its peer left the last mesh; zero while in one
}

// gossipSlot is the Node's field: its gossip, made on first use.
type gossipSlot struct {
	mu     sync.Mutex
	g      *nodeGossip
	opts   []gossip.Option // SetGossipOptions
	closed bool
}

// topicGossip is the Topic's field: its gossip topic, joined on first use.
type topicGossip struct {
	mu     sync.Mutex
	t      *gossip.Topic
	stop   chan struct{} // ends the feed
	closed bool
}

// GossipOptions tune a node's gossip; zero fields keep the defaults.
type GossipOptions struct {
	// GapWait is how long a message is held back waiting for an earlier
	// one of its origin before the gap is skipped (gossip.DefaultGapWait,
	// 3 s). Longer trades latency for fewer skipped messages when paths
	// stall; a skipped message that arrives later is dropped, never
	// delivered out of order.
	GapWait time.Duration
	// MaxHeld bounds the messages held per origin while a gap is open
	// (gossip.DefaultMaxHeld, 256): raise it with GapWait for fast
	// publishers.
	MaxHeld int
}

// ErrGossipStarted reports SetGossipOptions after the node's gossip started.
var ErrGossipStarted = errors.New("sdk: the node's gossip has started (first Publish or Subscribe)")

// SetGossipOptions sets the options of the node's gossip. Call it before
// the first Publish or Subscribe.
func (n *Node) SetGossipOptions(o GossipOptions) error {
	if o.GapWait < 0 || o.MaxHeld < 0 {
		return fmt.Errorf("sdk: negative gossip option: %+v", o)
	}
	var opts []gossip.Option
	if o.GapWait > 0 {
		opts = append(opts, gossip.WithGapWait(o.GapWait))
	}
	if o.MaxHeld > 0 {
		opts = append(opts, gossip.WithMaxHeld(o.MaxHeld))
	}
	// Check them now rather than at the first Publish.
	if _, err := gossip.New(n.id, discardTransport{}, opts...); err != nil {
		return err
	}
	s := &n.gsp
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.g != nil {
		return ErrGossipStarted
	}
	s.opts = opts
	return nil
}

type discardTransport struct{}

func (discardTransport) Send(PeerID, []byte) {}

// gossip returns the node's gossip, starting it on first use.
func (n *Node) gossip() (*nodeGossip, error) {
	s := &n.gsp
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || n.ctx.Err() != nil {
		return nil, ErrClosed
	}
	if s.g != nil {
		return s.g, nil
	}
	g := &nodeGossip{n: n, idle: gossipIdle, reapEvery: gossipReap, topics: map[*Topic]*gossip.Topic{}, ours: map[PeerID]*gossipConn{}, sendConn: map[PeerID]*Conn{}, done: make(chan struct{})}
	g.tr = streams.New(g.dial)
	r, err := gossip.New(n.id, g.tr, s.opts...)
	if err != nil {
		_ = g.tr.Close()
		return nil, err
	}
	g.r = r
	g.tr.Attach(r)
	g.wg.Go(g.reap)
	s.g = g
	return g, nil
}

// routeGossip takes an incoming GossipProtocol stream: to the node's
// gossip if it runs; to the app's listener for the protocol if it has one
// (an app running gossip/streams itself); refused otherwise, never queued
// for Conn.AcceptStream. It reports whether it took s.
func (n *Node) routeGossip(s *Stream) bool {
	if s.proto != GossipProtocol {
		return false
	}
	n.gsp.mu.Lock()
	g := n.gsp.g
	n.gsp.mu.Unlock()
	if g == nil {
		n.lmu.Lock()
		_, app := n.listeners[GossipProtocol]
		n.lmu.Unlock()
		if app {
			return false // the app runs gossip itself (gossip/streams)
		}
		s.refuse(streamErrorUnsupported)
		return true
	}
	p := s.conn.remote
	if err := g.tr.ServeConn(newStreamConn(s), p); err != nil {
		n.log.Debug("refusing a gossip stream", "peer", p.Short(), "err", err)
		s.refuse(streamErrorBusy)
		return true
	}
	// A stream on another connection than the one this node sends on: the
	// peer restarted (or the connections crossed). Send on the new one
	// too, rather than into the old one until it times out.
	g.mu.Lock()
	lc := g.sendConn[p]
	g.mu.Unlock()
	if lc != nil && lc != s.conn {
		g.tr.Redial(p)
	}
	return true
}

// closeGossip stops the node's gossip and waits for its goroutines; the
// node calls it first thing in Close.
func (n *Node) closeGossip() {
	s := &n.gsp
	s.mu.Lock()
	g := s.g
	s.closed = true
	s.mu.Unlock()
	if g == nil {
		return
	}
	close(g.done)
	_ = g.r.Close()
	_ = g.tr.Close()
	g.wg.Wait()
	g.mu.Lock()
	conns := g.ours
	g.ours = map[PeerID]*gossipConn{}
	g.mu.Unlock()
	for _, gc := range conns {
		_ = gc.c.Close()
	}
}

// GossipMetrics returns the node's gossip counters (zero before the first
// Publish or Subscribe).
func (n *Node) GossipMetrics() GossipMetrics {
	n.gsp.mu.Lock()
	g := n.gsp.g
	n.gsp.mu.Unlock()
	if g == nil {
		return GossipMetrics{}
	}
	return GossipMetrics{Metrics: g.r.Metrics(), SendDrops: g.tr.Drops()}
}

// dial opens the stream gossip sends on to peer. A connection it had to
// make is the gossip's: kept while peer is in a mesh, closed when it has
// been in none for gossipIdle.
func (g *nodeGossip) dial(ctx context.Context, peer PeerID) (net.Conn, error) {
	n := g.n
	if n.existingConn(peer) == nil {
		g.mu.Lock()
		full := len(g.ours) >= GossipMaxConns && g.ours[peer] == nil
		g.mu.Unlock()
		if full {
			return nil, ErrGossipBusy
		}
	}
	existed := n.existingConn(peer) != nil
	// Bound the dial: the transport's context lasts as long as it does.
	dctx, cancel := context.WithTimeout(ctx, n.cfg.handshakeTimeout+30*time.Second)
	defer cancel()
	c, err := n.Dial(dctx, peer)
	if err != nil {
		return nil, err
	}
	if !existed {
		g.mu.Lock()
		if gc := g.ours[peer]; gc == nil || gc.c != c {
			g.ours[peer] = &gossipConn{c: c}
		}
		g.mu.Unlock()
	}
	s, err := c.OpenStream(dctx, GossipProtocol)
	if err != nil {
		return nil, err
	}
	g.mu.Lock()
	g.sendConn[peer] = c
	g.mu.Unlock()
	return newStreamConn(s), nil
}

// inMesh reports whether p is a neighbour in any of the node's topics.
// Called with g.mu held.
func (g *nodeGossip) inMesh(p PeerID) bool {
	for _, gt := range g.topics {
		e, l := gt.Neighbours()
		if slices.Contains(e, p) || slices.Contains(l, p) {
			return true
		}
	}
	return false
}

// reap closes the connections dialed for gossip whose peer has been in no
// mesh for gossipIdle, and those that closed.
func (g *nodeGossip) reap() {
	tick := time.NewTicker(g.reapEvery)
	defer tick.Stop()
	for {
		select {
		case <-g.done:
			return
		case now := <-tick.C:
			var idle []*gossipConn
			g.mu.Lock()
			for p, gc := range g.ours {
				switch {
				case gc.c.State() == StateClosed:
					delete(g.ours, p)
				case g.inMesh(p):
					gc.idle = time.Time{}
				case gc.idle.IsZero():
					gc.idle = now
				case now.Sub(gc.idle) >= g.idle:
					delete(g.ours, p)
					idle = append(idle, gc)
				}
			}
			for p, c := range g.sendConn {
				if c.State() == StateClosed {
					delete(g.sendConn, p)
				}
			}
			g.mu.Unlock()
			for _, gc := range idle {
				g.n.log.Debug("closing an idle gossip connection", "peer", gc.c.RemotePeer().Short())
				_ = gc.c.Close()
			}
		}
	}
}

// gossipTopic returns the topic's gossip topic, joining it (and starting
// to feed it the peers discovery finds) on first use.
func (t *Topic) gossipTopic() (*gossip.Topic, error) {
	tg := &t.gsp
	tg.mu.Lock()
	defer tg.mu.Unlock()
	if tg.closed {
		return nil, ErrClosed
	}
	if tg.t != nil {
		return tg.t, nil
	}
	n := t.d.n
	g, err := n.gossip()
	if err != nil {
		return nil, err
	}
	gt, err := g.r.Join(t.name)
	if err != nil {
		return nil, fmt.Errorf("sdk: gossip on %q: %w", t.name, err)
	}
	g.mu.Lock()
	g.topics[t] = gt
	g.mu.Unlock()
	// The feed lasts until the topic or the node closes, not a caller's ctx.
	stop := make(chan struct{})
	tg.t, tg.stop = gt, stop
	g.wg.Go(func() { t.feed(stop, g, gt) })
	return gt, nil
}

// feed gives the gossip topic every peer discovery finds as a candidate,
// and when its mesh is short of the target and its candidates have run
// out (they leave on failure), the peers found before, again. It runs for
// the topic's life, not a caller's context.
//
//nolint:contextcheck // see above
func (t *Topic) feed(stop <-chan struct{}, g *nodeGossip, gt *gossip.Topic) {
	ctx, cancel := context.WithCancel(t.d.n.ctx)
	defer cancel()
	found := t.Peers(ctx)
	tick := time.NewTicker(g.reapEvery)
	defer tick.Stop()
	var known []PeerID
	type backoff struct {
		wait time.Duration
		next time.Time
	}
	retry := map[PeerID]backoff{}
	for {
		select {
		case <-g.done:
			return
		case <-stop:
			return
		case p, ok := <-found:
			if !ok {
				return
			}
			if len(known) >= gossipKnown {
				delete(retry, known[0])
				known = known[1:]
			}
			known = append(known, p.ID)
			gt.AddPeers(p.ID)
		case <-tick.C:
			e, l := gt.Neighbours()
			if len(e)+len(l) >= gossip.DefaultMeshTarget || gt.Candidates() > 0 {
				continue
			}
			// Each peer given back waits twice as long as the last time
			// before it is given back again (30 s to 10 min), so a
			// peer that is gone or left the topic is not dialed every
			// tick.
			now := time.Now()
			var again []PeerID
			for _, p := range known {
				if slices.Contains(e, p) || slices.Contains(l, p) {
					delete(retry, p)
					continue
				}
				r := retry[p]
				if now.Before(r.next) {
					continue
				}
				r.wait = min(max(2*r.wait, gossipRetryMin), gossipRetryMax)
				r.next = now.Add(r.wait)
				retry[p] = r
				again = append(again, p)
			}
			gt.AddPeers(again...)
		}
	}
}

// closeGossip leaves the topic's gossip; Topic.Close calls it.
func (t *Topic) closeGossip() {
	tg := &t.gsp
	tg.mu.Lock()
	gt, stop := tg.t, tg.stop
	tg.closed = true
	tg.t = nil
	tg.mu.Unlock()
	if gt == nil {
		return
	}
	close(stop)
	_ = gt.Close()
	n := t.d.n
	n.gsp.mu.Lock()
	g := n.gsp.g
	n.gsp.mu.Unlock()
	if g != nil {
		g.mu.Lock()
		delete(g.topics, t)
		g.mu.Unlock()
	}
}

// Publish signs data with the node's key and broadcasts it to the topic's
// subscribers: pushed along the topic's gossip mesh (up to 5 neighbours
// dialed, 12 accepted), each subscriber getting it once. data is at most
// 4096 bytes (gossip.ErrTooLarge). Publish does not wait for delivery and
// the node's own subscribers do not get its messages; one published while
// the mesh has no neighbour yet is offered to the first ones (the last 64
// messages are). The first Publish or Subscribe starts the topic's gossip.
func (t *Topic) Publish(ctx context.Context, data []byte) error {
	gt, err := t.gossipTopic()
	if err != nil {
		return err
	}
	if err := gt.Publish(ctx, data); err != nil {
		if errors.Is(err, gossip.ErrClosed) {
			return ErrClosed
		}
		return err
	}
	return nil
}

// A Subscription receives a topic's messages.
type Subscription struct {
	ch     <-chan gossip.Message
	cancel func()
}

// Subscribe returns a subscription to the topic's messages: each message
// delivered once, in increasing sequence order per origin (a message that
// stays missing for 3 s is skipped, never delivered out of order). Messages
// are those published after the node's gossip reached the mesh (plus the
// few the neighbours still cache). A subscriber that falls 1,024 messages
// behind loses messages (GossipMetrics.SubscriberDrops). The first Publish
// or Subscribe starts the topic's gossip.
func (t *Topic) Subscribe() (*Subscription, error) {
	gt, err := t.gossipTopic()
	if err != nil {
		return nil, err
	}
	ch, cancel := gt.Subscribe()
	return &Subscription{ch: ch, cancel: cancel}, nil
}

// Messages returns the subscription's channel. It closes when the
// subscription, its topic or the node closes.
func (s *Subscription) Messages() <-chan Message { return s.ch }

// Next returns the next message, or ErrClosed once the subscription ends,
// or ctx's error.
func (s *Subscription) Next(ctx context.Context) (Message, error) {
	select {
	case m, ok := <-s.ch:
		if !ok {
			return Message{}, ErrClosed
		}
		return m, nil
	case <-ctx.Done():
		return Message{}, ctx.Err()
	}
}

// Close ends the subscription; its channel closes. It is idempotent.
func (s *Subscription) Close() error {
	s.cancel()
	return nil
}

// GossipNeighbours returns the topic's gossip neighbours (none before the
// first Publish or Subscribe).
func (t *Topic) GossipNeighbours() []PeerID {
	t.gsp.mu.Lock()
	gt := t.gsp.t
	t.gsp.mu.Unlock()
	if gt == nil {
		return nil
	}
	e, l := gt.Neighbours()
	return append(e, l...)
}

// Flush waits until the node's gossip has written every frame it queued
// (the messages published so far included) to its neighbours' streams, or
// ctx ends. A program that publishes and exits calls it before closing
// the node, and lets the neighbours read for a moment (a neighbour that
// hears of a message lazily fetches it from this node's cache).
func (t *Topic) Flush(ctx context.Context) error {
	n := t.d.n
	n.gsp.mu.Lock()
	g := n.gsp.g
	n.gsp.mu.Unlock()
	if g == nil {
		return nil
	}
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for g.tr.Pending() > 0 {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
	return nil
}
