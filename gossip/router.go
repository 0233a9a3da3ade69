package gossip

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
	"time"

	"github.com/ferrynet/ferry/identity"
)

// Transport carries a router's frames to its peers.
//
// Send is best effort: it queues frame for the peer (dialling it if need
// be) and returns; it must not block for long nor call back into the
// Router. When a connection to a peer is lost, or a dial fails, the owner
// calls [Router.PeerDown].
type Transport interface {
	Send(to identity.PeerID, frame []byte)
}

// Router runs gossip for the topics a node joined. Its methods are safe
// for concurrent use.
type Router struct {
	cfg  config
	self *identity.Identity
	id   identity.PeerID
	tr   Transport

	mu     sync.Mutex
	topics map[string]*Topic
	peers  map[identity.PeerID]*peer
	out    []outFrame
	deliv  []delivery
	closed bool

	m metrics
}

type outFrame struct {
	to identity.PeerID
	b  []byte
}

type delivery struct {
	t *Topic
	m Message
}

type peer struct {
	score   float64
	tokens  float64
	last    time.Time
	blocked time.Time // ignored until then
}

// New returns a router that signs with self and sends through tr.
func New(self *identity.Identity, tr Transport, opts ...Option) (*Router, error) {
	if self == nil || tr == nil {
		return nil, errors.New("gossip: New needs an identity and a transport")
	}
	cfg := defaults()
	for _, o := range opts {
		if err := o(&cfg); err != nil {
			return nil, err
		}
	}
	return &Router{
		cfg:    cfg,
		self:   self,
		id:     self.PeerID(),
		tr:     tr,
		topics: make(map[string]*Topic),
		peers:  make(map[identity.PeerID]*peer),
	}, nil
}

// ID is the router's own peer ID.
func (r *Router) ID() identity.PeerID { return r.id }

// Topic is one joined topic: its mesh, its seen-cache and message cache,
// and its subscribers.
type Topic struct {
	r    *Router
	name string

	// The active view is eager ∪ lazy (disjoint); passive holds the
	// candidates discovery gave, in the order given.
	eager, lazy peerSet
	passive     []identity.PeerID

	origins map[identity.PeerID]*origin
	cache   map[MsgID]cached
	cacheQ  []MsgID
	cacheB  int
	missing map[MsgID]*miss

	subs   map[int]chan Message
	hooks  []func(Message)
	nextID int

	first, seq uint64
	closed     bool
}

type cached struct {
	frame []byte
	at    time.Time
}

type miss struct {
	from  []identity.PeerID
	tries int
}

const (
	maxMissing    = 10_000
	maxAnnouncers = 8
	maxGraftTries = 8
	minEager      = 2
)

// Join joins topic (or returns it if already joined).
func (r *Router) Join(name string) (*Topic, error) {
	if len(name) == 0 || len(name) > MaxTopicLen {
		return nil, fmt.Errorf("%w: %d bytes", ErrBadTopic, len(name))
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil, ErrClosed
	}
	if t := r.topics[name]; t != nil {
		return t, nil
	}
	start := uint64(r.cfg.clock.Now().UnixMicro())
	if start == 0 || start > math.MaxUint64/2 {
		start = 1
	}
	t := &Topic{
		r: r, name: name,
		origins: map[identity.PeerID]*origin{}, cache: map[MsgID]cached{},
		missing: map[MsgID]*miss{}, subs: map[int]chan Message{},
		first: start, seq: start - 1,
	}
	r.topics[name] = t
	return t, nil
}

// Name is the topic's name.
func (t *Topic) Name() string { return t.name }

// AddPeers gives the topic candidate neighbours (from discovery). The
// topic keeps up to 30 and dials some when its mesh is short.
func (t *Topic) AddPeers(ids ...identity.PeerID) {
	r := t.r
	r.mu.Lock()
	for _, id := range ids {
		if id == r.id || slices.Contains(t.passive, id) {
			continue
		}
		if len(t.passive) >= r.cfg.passiveMax {
			t.passive = t.passive[1:]
		}
		t.passive = append(t.passive, id)
	}
	t.refill()
	r.unlockAndFlush()
}

// Neighbours returns the topic's active view: eager and lazy peers.
func (t *Topic) Neighbours() (eager, lazy []identity.PeerID) {
	t.r.mu.Lock()
	defer t.r.mu.Unlock()
	for _, p := range t.eager {
		eager = append(eager, p)
	}
	for _, p := range t.lazy {
		lazy = append(lazy, p)
	}
	return eager, lazy
}

// Candidates is how many candidate neighbours the topic holds.
func (t *Topic) Candidates() int {
	t.r.mu.Lock()
	defer t.r.mu.Unlock()
	return len(t.passive)
}

// Subscribe returns a channel of the topic's messages, each delivered once,
// in order per origin (README.md, "Order"), and a function that ends the
// subscription. A subscriber that falls more than 1,024 messages behind
// loses messages (counted in Metrics.SubscriberDrops).
func (t *Topic) Subscribe() (<-chan Message, func()) {
	r := t.r
	r.mu.Lock()
	defer r.mu.Unlock()
	ch := make(chan Message, r.cfg.subBuffer)
	id := t.nextID
	t.nextID++
	t.subs[id] = ch
	if t.closed {
		delete(t.subs, id)
		close(ch)
	}
	return ch, func() {
		r.mu.Lock()
		defer r.mu.Unlock()
		if c, ok := t.subs[id]; ok {
			delete(t.subs, id)
			close(c)
		}
	}
}

// OnMessage calls fn for each message delivered, on the goroutine that
// delivered it; fn must not block. The simulator subscribes this way.
func (t *Topic) OnMessage(fn func(Message)) {
	t.r.mu.Lock()
	defer t.r.mu.Unlock()
	t.hooks = append(t.hooks, fn)
}

// Publish signs data and broadcasts it to the topic. It is not delivered
// to the publisher's own subscribers.
func (t *Topic) Publish(ctx context.Context, data []byte) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	r := t.r
	if len(data) > r.cfg.maxData {
		return fmt.Errorf("%w: %d bytes, at most %d", ErrTooLarge, len(data), r.cfg.maxData)
	}
	r.mu.Lock()
	if t.closed || r.closed {
		r.mu.Unlock()
		return ErrClosed
	}
	t.seq++
	f := Frame{Type: TypeMsg, Topic: t.name, Msg: Msg{
		PublicKey: r.self.PublicKey(), First: t.first, Seq: t.seq,
		Data: slices.Clone(data),
	}}
	f.Msg.Sig = r.self.Sign(signedBytes(t.name, t.first, t.seq, data))
	b, err := f.Append(make([]byte, 0, f.Len()))
	if err != nil {
		r.mu.Unlock()
		return err
	}
	id := MsgID{Origin: r.id, Seq: t.seq}
	o := t.origin(r.id)
	o.mark(t.seq)
	t.store(id, b)
	t.push(r.id, id, b, 0)
	r.m.published.Add(1)
	r.unlockAndFlush()
	return nil
}

// LastSeq is the sequence number of the last message published on the
// topic (one less than the first before any).
func (t *Topic) LastSeq() uint64 {
	t.r.mu.Lock()
	defer t.r.mu.Unlock()
	return t.seq
}

// Close leaves the topic: it tells its neighbours and ends its
// subscriptions.
func (t *Topic) Close() error {
	r := t.r
	r.mu.Lock()
	t.close()
	r.unlockAndFlush()
	return nil
}

func (t *Topic) close() {
	if t.closed {
		return
	}
	t.closed = true
	for _, p := range t.eager {
		t.r.send(p, Frame{Type: TypeLeave, Topic: t.name})
	}
	for _, p := range t.lazy {
		t.r.send(p, Frame{Type: TypeLeave, Topic: t.name})
	}
	t.eager = nil
	t.lazy = nil
	for id, c := range t.subs {
		delete(t.subs, id)
		close(c)
	}
	delete(t.r.topics, t.name)
}

// Close leaves every topic. It is idempotent.
func (r *Router) Close() error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil
	}
	r.closed = true
	for _, t := range r.topics {
		t.close()
	}
	r.unlockAndFlush()
	return nil
}

// PeerDown tells the router that the connection to p is gone (or could
// not be made): p leaves every mesh and the candidates, and meshes that
// fall short dial others.
func (r *Router) PeerDown(p identity.PeerID) {
	r.mu.Lock()
	for _, t := range r.topics {
		t.drop(p)
		t.refill()
	}
	if pe := r.peers[p]; pe != nil && pe.score >= 0 && pe.blocked.IsZero() {
		delete(r.peers, p)
	}
	r.unlockAndFlush()
}

// HandleFrame processes one frame from peer from. Bad frames are dropped
// and counted; they never return an error to the caller.
func (r *Router) HandleFrame(from identity.PeerID, b []byte) {
	r.mu.Lock()
	r.handle(from, b)
	r.unlockAndFlush()
}

func (r *Router) handle(from identity.PeerID, b []byte) {
	if r.closed {
		return
	}
	r.m.frames.Add(1)
	now := r.cfg.clock.Now()
	pe := r.peer(from, now)
	if now.Before(pe.blocked) {
		r.m.blocked.Add(1)
		return
	}
	if pe.tokens < 1 {
		r.m.flood.Add(1)
		r.penalize(from, pe, PenaltyFlood, now)
		return
	}
	pe.tokens--
	f, err := ParseFrame(b)
	if err != nil {
		r.m.malformed.Add(1)
		r.penalize(from, pe, PenaltyMalformed, now)
		return
	}
	t := r.topics[f.Topic]
	if t == nil {
		r.m.unknownTopic.Add(1)
		if f.Type == TypeJoin || f.Type == TypeMsg || f.Type == TypeGraft {
			r.send(from, Frame{Type: TypeLeave, Topic: f.Topic})
		}
		return
	}
	switch f.Type {
	case TypeMsg:
		t.onMsg(from, pe, &f, now)
	case TypeIHave:
		t.onIHave(from, f.IHave)
	case TypeGraft:
		t.onGraft(from, f.Graft)
	case TypePrune:
		if ok := t.eager.has(from); ok {
			t.eager.del(from)
			t.lazy.add(from)
		}
	case TypeJoin:
		t.onJoin(from)
	case TypeLeave:
		t.drop(from)
		t.refill()
	}
}

// peer returns from's state with its tokens and score brought up to now:
// tokens refill at the rate, and a negative score recovers one point a
// second.
func (r *Router) peer(from identity.PeerID, now time.Time) *peer {
	pe := r.peers[from]
	if pe == nil {
		pe = &peer{tokens: r.cfg.burst, last: now}
		r.peers[from] = pe
		return pe
	}
	if dt := now.Sub(pe.last).Seconds(); dt > 0 {
		pe.tokens = min(r.cfg.burst, pe.tokens+dt*r.cfg.rate)
		if pe.score < 0 {
			pe.score = min(0, pe.score+dt)
		}
		pe.last = now
	}
	return pe
}

func (r *Router) penalize(p identity.PeerID, pe *peer, by float64, now time.Time) {
	pe.score += by
	if pe.score > r.cfg.pruneScore || now.Before(pe.blocked) {
		return
	}
	pe.blocked = now.Add(r.cfg.blockFor)
	r.m.pruned.Add(1)
	for _, t := range r.topics {
		if t.active(p) {
			r.send(p, Frame{Type: TypeLeave, Topic: t.name})
		}
		t.drop(p)
		t.passive = slices.DeleteFunc(t.passive, func(q identity.PeerID) bool { return q == p })
		t.refill()
	}
}

func (t *Topic) active(p identity.PeerID) bool {
	e := t.eager.has(p)
	l := t.lazy.has(p)
	return e || l
}

func (t *Topic) drop(p identity.PeerID) {
	t.eager.del(p)
	t.lazy.del(p)
	t.passive = slices.DeleteFunc(t.passive, func(q identity.PeerID) bool { return q == p })
}

// refill dials candidates while the mesh is under its target.
func (t *Topic) refill() {
	if t.closed {
		return
	}
	r := t.r
	now := r.cfg.clock.Now()
	for _, p := range t.passive {
		if len(t.eager)+len(t.lazy) >= r.cfg.meshTarget {
			return
		}
		if t.active(p) {
			continue
		}
		if pe := r.peers[p]; pe != nil && now.Before(pe.blocked) {
			continue
		}
		t.eager.add(p)
		r.m.joinsSent.Add(1)
		r.send(p, Frame{Type: TypeJoin, Topic: t.name})
		t.announceRecent(p)
	}
}

// announceRecent sends a new neighbour the IDs of the latest cached
// messages, so that a node that was cut off, or a new node, fetches what it
// missed (the IHAVE path repairs it like any lost message).
func (t *Topic) announceRecent(p identity.PeerID) {
	var ann []Announce
	for i := len(t.cacheQ) - 1; i >= 0 && len(ann) < MaxIDs; i-- {
		if _, ok := t.cache[t.cacheQ[i]]; ok {
			ann = append(ann, Announce{ID: t.cacheQ[i]})
		}
	}
	if len(ann) > 0 {
		t.r.send(p, Frame{Type: TypeIHave, Topic: t.name, IHave: ann})
		t.r.m.ihavesSent.Add(1)
	}
}

func (t *Topic) onJoin(from identity.PeerID) {
	if t.active(from) {
		return
	}
	if len(t.eager)+len(t.lazy) >= t.r.cfg.meshMax {
		t.r.send(from, Frame{Type: TypeLeave, Topic: t.name})
		return
	}
	t.eager.add(from)
	t.announceRecent(from)
	if !slices.Contains(t.passive, from) && len(t.passive) < t.r.cfg.passiveMax {
		t.passive = append(t.passive, from)
	}
}

func (t *Topic) origin(id identity.PeerID) *origin {
	o := t.origins[id]
	now := t.r.cfg.clock.Now()
	if o == nil {
		if len(t.origins) >= t.r.cfg.maxOrigins {
			t.evictOrigin()
		}
		o = &origin{}
		t.origins[id] = o
	}
	o.last = now
	return o
}

// evictOrigin forgets the origin heard from least recently, delivering
// what it held.
func (t *Topic) evictOrigin() {
	var oldest identity.PeerID
	var at time.Time
	for id, o := range t.origins {
		if at.IsZero() || o.last.Before(at) {
			oldest, at = id, o.last
		}
	}
	if o := t.origins[oldest]; o != nil {
		t.deliver(o.flushAll())
	}
	delete(t.origins, oldest)
}

func (t *Topic) onMsg(from identity.PeerID, pe *peer, f *Frame, now time.Time) {
	r := t.r
	m := &f.Msg
	r.m.msgsReceived.Add(1)
	if len(m.Data) > r.cfg.maxData {
		r.m.oversized.Add(1)
		r.penalize(from, pe, PenaltyOversized, now)
		return
	}
	oid := identity.IDFromPublicKey(m.PublicKey)
	id := MsgID{Origin: oid, Seq: m.Seq}
	o := t.origins[oid]
	if o != nil {
		switch o.check(m.Seq) {
		case seenDup:
			r.m.duplicates.Add(1)
			// PlumTree: a duplicate means two tree paths; ask the sender
			// to push lazily from now on.
			// Keep at least minEager eager peers, so that concurrent
			// prunes elsewhere do not cut this node off the tree.
			if ok := t.eager.has(from); ok && len(t.eager) > minEager {
				t.eager.del(from)
				t.lazy.add(from)
				r.send(from, Frame{Type: TypePrune, Topic: t.name})
			}
			return
		case seenStale:
			r.m.stale.Add(1)
			r.penalize(from, pe, PenaltyStale, now)
			return
		}
	}
	if m.Seq == 0 || m.First == 0 || m.First > m.Seq {
		r.m.malformed.Add(1)
		r.penalize(from, pe, PenaltyMalformed, now)
		return
	}
	if !ed25519.Verify(m.PublicKey, signedBytes(t.name, m.First, m.Seq, m.Data), m.Sig) {
		r.m.forged.Add(1)
		r.penalize(from, pe, PenaltyForged, now)
		return
	}
	if oid == r.id {
		// Our own message, from a previous run: not new to the app.
		return
	}
	if o == nil {
		o = t.origin(oid)
	}
	o.last = now
	if m.First < o.first {
		// A message of an earlier run than the one being delivered: the
		// origin restarted since.
		r.m.stale.Add(1)
		return
	}
	o.mark(m.Seq)
	delete(t.missing, id)
	if !t.active(from) && len(t.eager)+len(t.lazy) < r.cfg.meshMax {
		t.eager.add(from)
	} else if ok := t.lazy.has(from); ok {
		// It came from a lazy peer (after a GRAFT): that link is in the
		// tree now.
		t.lazy.del(from)
		t.eager.add(from)
	}
	hops := int(m.Hops) + 1
	// Forward with one more hop.
	fwd := *f
	fwd.Msg.Hops = uint8(min(hops, 255))
	b, err := fwd.Append(make([]byte, 0, fwd.Len()))
	if err != nil {
		r.m.malformed.Add(1)
		return
	}
	t.store(id, b)
	t.push(from, id, b, fwd.Msg.Hops)
	msg := Message{Topic: t.name, Origin: oid, Seq: m.Seq, Data: slices.Clone(m.Data), Hops: hops, From: from}
	out, late := o.accept(msg, m.First, r.cfg.maxHeld)
	if late {
		r.m.late.Add(1)
	}
	t.deliver(out)
	if len(o.held) > 0 && !o.gapArmed {
		o.gapArmed = true
		r.cfg.clock.AfterFunc(r.cfg.gapWait, func() { t.gapTimeout(oid) })
	}
}

func (t *Topic) gapTimeout(oid identity.PeerID) {
	r := t.r
	r.mu.Lock()
	if o := t.origins[oid]; o != nil && !t.closed {
		o.gapArmed = false
		if len(o.held) > 0 {
			r.m.gapsSkipped.Add(1)
		}
		t.deliver(o.skip())
		if len(o.held) > 0 {
			o.gapArmed = true
			r.cfg.clock.AfterFunc(r.cfg.gapWait, func() { t.gapTimeout(oid) })
		}
	}
	r.unlockAndFlush()
}

// push sends b eagerly to the eager peers and its ID lazily to the lazy
// ones, except the one it came from.
func (t *Topic) push(from identity.PeerID, id MsgID, b []byte, hops uint8) {
	r := t.r
	for _, p := range t.eager {
		if p != from {
			r.sendRaw(p, b)
			r.m.msgsSent.Add(1)
		}
	}
	for _, p := range t.lazy {
		if p != from {
			r.send(p, Frame{Type: TypeIHave, Topic: t.name, IHave: []Announce{{ID: id, Hops: hops}}})
			r.m.ihavesSent.Add(1)
		}
	}
}

func (t *Topic) store(id MsgID, b []byte) {
	now := t.r.cfg.clock.Now()
	for len(t.cacheQ) > 0 {
		c, ok := t.cache[t.cacheQ[0]]
		if ok && now.Sub(c.at) < t.r.cfg.cacheTTL && t.cacheB+len(b) <= t.r.cfg.cacheBytes {
			break
		}
		if ok {
			t.cacheB -= len(c.frame)
			delete(t.cache, t.cacheQ[0])
		}
		t.cacheQ = t.cacheQ[1:]
	}
	t.cache[id] = cached{frame: b, at: now}
	t.cacheQ = append(t.cacheQ, id)
	t.cacheB += len(b)
}

func (t *Topic) onIHave(from identity.PeerID, ann []Announce) {
	r := t.r
	for _, a := range ann {
		if o := t.origins[a.ID.Origin]; o != nil && o.check(a.ID.Seq) != seenNew {
			continue
		}
		if a.ID.Origin == r.id {
			continue
		}
		ms := t.missing[a.ID]
		if ms == nil {
			if len(t.missing) >= maxMissing {
				r.m.missingFull.Add(1)
				continue
			}
			ms = &miss{}
			t.missing[a.ID] = ms
			id := a.ID
			r.cfg.clock.AfterFunc(r.cfg.ihaveWait, func() { t.graftTimeout(id) })
		}
		if len(ms.from) < maxAnnouncers && !slices.Contains(ms.from, from) {
			ms.from = append(ms.from, from)
		}
	}
}

// graftTimeout fires when an announced message has not come: GRAFT it
// from the next announcer, and try again later.
func (t *Topic) graftTimeout(id MsgID) {
	r := t.r
	r.mu.Lock()
	defer r.unlockAndFlush()
	ms := t.missing[id]
	if ms == nil || t.closed {
		return
	}
	if o := t.origins[id.Origin]; o != nil && o.check(id.Seq) != seenNew {
		delete(t.missing, id)
		return
	}
	for len(ms.from) > 0 && ms.tries < maxGraftTries {
		p := ms.from[0]
		ms.from = append(ms.from[1:], p)
		ms.tries++
		if !t.active(p) {
			ms.from = ms.from[:len(ms.from)-1]
			continue
		}
		t.lazy.del(p)
		t.eager.add(p)
		r.m.graftsSent.Add(1)
		r.send(p, Frame{Type: TypeGraft, Topic: t.name, Graft: []MsgID{id}})
		r.cfg.clock.AfterFunc(r.cfg.graftRetry, func() { t.graftTimeout(id) })
		return
	}
	delete(t.missing, id)
	r.m.repairFailed.Add(1)
}

func (t *Topic) onGraft(from identity.PeerID, ids []MsgID) {
	r := t.r
	if !t.active(from) {
		if len(t.eager)+len(t.lazy) >= r.cfg.meshMax {
			r.send(from, Frame{Type: TypeLeave, Topic: t.name})
			return
		}
	}
	t.lazy.del(from)
	t.eager.add(from)
	for _, id := range ids {
		if c, ok := t.cache[id]; ok {
			r.sendRaw(from, c.frame)
			r.m.msgsSent.Add(1)
		}
	}
}

func (t *Topic) deliver(ms []Message) {
	for _, m := range ms {
		t.r.deliv = append(t.r.deliv, delivery{t: t, m: m})
	}
}

func (r *Router) send(to identity.PeerID, f Frame) {
	b, err := f.Append(make([]byte, 0, f.Len()))
	if err != nil {
		return // our own frames are in bounds
	}
	r.sendRaw(to, b)
}

func (r *Router) sendRaw(to identity.PeerID, b []byte) {
	r.out = append(r.out, outFrame{to: to, b: b})
}

// unlockAndFlush releases r.mu, then sends the queued frames and makes the
// queued deliveries, so that neither the transport nor a subscriber runs
// under the lock.
func (r *Router) unlockAndFlush() {
	out, deliv := r.out, r.deliv
	r.out, r.deliv = nil, nil
	type sub struct {
		chans []chan Message
		hooks []func(Message)
	}
	var subs []sub
	for _, d := range deliv {
		s := sub{hooks: d.t.hooks}
		for _, c := range d.t.subs {
			s.chans = append(s.chans, c)
		}
		subs = append(subs, s)
		r.m.delivered.Add(1)
	}
	// Channel sends stay under the lock so that a concurrent cancel cannot
	// close a channel being sent on; they never block.
	for i, d := range deliv {
		for _, c := range subs[i].chans {
			select {
			case c <- d.m:
			default:
				r.m.subscriberDrops.Add(1)
			}
		}
	}
	r.mu.Unlock()
	for i, d := range deliv {
		for _, h := range subs[i].hooks {
			h(d.m)
		}
	}
	for _, f := range out {
		r.m.bytesSent.Add(uint64(len(f.b)))
		r.tr.Send(f.to, f.b)
	}
}

// peerSet is a small ordered set: iteration in insertion order keeps the
// simulator deterministic, and meshes are too small for a map to pay.
type peerSet []identity.PeerID

func (s peerSet) has(p identity.PeerID) bool { return slices.Contains(s, p) }

func (s *peerSet) add(p identity.PeerID) {
	if !s.has(p) {
		*s = append(*s, p)
	}
}

func (s *peerSet) del(p identity.PeerID) {
	*s = slices.DeleteFunc(*s, func(q identity.PeerID) bool { return q == p })
}
