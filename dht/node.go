package dht

import (
	"bytes"
	"context"
	crand "crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/ferrynet/ferry/dht/kbucket"
	"github.com/ferrynet/ferry/identity"
)

// Transport carries a node's requests. Request sends req to the node at to
// and returns its response; it must return when ctx ends (the node sets a
// per-request deadline) and must authenticate the responder as to.ID.
type Transport interface {
	Request(ctx context.Context, to kbucket.Contact, req Request) (Message, error)
}

// Node defaults.
const (
	DefaultRequestTimeout    = 2 * time.Second
	DefaultLookupTimeout     = 30 * time.Second
	DefaultRecordTTL         = time.Hour
	DefaultRepublishInterval = 30 * time.Minute
	DefaultMaintainInterval  = time.Minute
)

type config struct {
	k, alpha, beta, paths  int
	reqTimeout, lookupTime time.Duration
	ttl, republish         time.Duration
	maintain               time.Duration
	client                 bool
	now                    func() time.Time
	log                    *slog.Logger
	tableOpts              []kbucket.Option
	storeOpts              []StoreOption
}

// Option configures a [Node].
type Option func(*config) error

func positive(name string, d time.Duration) error {
	if d <= 0 {
		return fmt.Errorf("%w: %s %v must be positive", ErrBadOption, name, d)
	}
	return nil
}

// WithK sets the bucket size and the number of closest nodes a lookup
// returns and a record is stored on (default 20).
func WithK(k int) Option {
	return func(c *config) error {
		if k < 1 || k > MaxContacts {
			return fmt.Errorf("%w: k %d, want 1..%d", ErrBadOption, k, MaxContacts)
		}
		c.k = k
		return nil
	}
}

// WithAlpha sets how many requests a lookup path keeps in flight (default
// [DefaultAlpha]).
func WithAlpha(a int) Option {
	return func(c *config) error {
		if a < 1 || a > 32 {
			return fmt.Errorf("%w: alpha %d, want 1..32", ErrBadOption, a)
		}
		c.alpha = a
		return nil
	}
}

// WithBeta sets the termination parameter (default [DefaultBeta]).
func WithBeta(b int) Option {
	return func(c *config) error {
		if b < 1 {
			return fmt.Errorf("%w: beta %d, want at least 1", ErrBadOption, b)
		}
		c.beta = b
		return nil
	}
}

// WithDisjointPaths sets how many disjoint paths a lookup takes (default
// [DefaultPaths]; see README.md for the Sybil measurements).
func WithDisjointPaths(d int) Option {
	return func(c *config) error {
		if d < 1 || d > 16 {
			return fmt.Errorf("%w: paths %d, want 1..16", ErrBadOption, d)
		}
		c.paths = d
		return nil
	}
}

// WithRequestTimeout bounds each request (default [DefaultRequestTimeout]).
func WithRequestTimeout(d time.Duration) Option {
	return func(c *config) error { c.reqTimeout = d; return positive("request timeout", d) }
}

// WithLookupTimeout bounds each lookup (default [DefaultLookupTimeout]).
func WithLookupTimeout(d time.Duration) Option {
	return func(c *config) error { c.lookupTime = d; return positive("lookup timeout", d) }
}

// WithRecordTimes sets how long the node's own records live and how often
// it republishes them (defaults [DefaultRecordTTL],
// [DefaultRepublishInterval]). The interval must be shorter than the TTL.
func WithRecordTimes(ttl, republish time.Duration) Option {
	return func(c *config) error {
		if ttl <= 0 || republish <= 0 || republish >= ttl || ttl > MaxTTL {
			return fmt.Errorf("%w: record ttl %v, republish %v (want 0 < republish < ttl <= %v)", ErrBadOption, ttl, republish, MaxTTL)
		}
		c.ttl, c.republish = ttl, republish
		return nil
	}
}

// WithMaintainInterval sets how often the node refreshes stale buckets and
// republishes due records (default [DefaultMaintainInterval]).
func WithMaintainInterval(d time.Duration) Option {
	return func(c *config) error { c.maintain = d; return positive("maintain interval", d) }
}

// WithClientMode makes the node a client: it looks up and publishes, but
// asks others not to add it to their tables and stores nothing for them.
// Use it for nodes that are not reachable from outside.
func WithClientMode() Option {
	return func(c *config) error { c.client = true; return nil }
}

// WithClock sets the clock used for records and the routing table (default
// time.Now).
func WithClock(now func() time.Time) Option {
	return func(c *config) error {
		if now == nil {
			return fmt.Errorf("%w: nil clock", ErrBadOption)
		}
		c.now = now
		return nil
	}
}

// WithLogger sets where the node logs (default: discard).
func WithLogger(l *slog.Logger) Option {
	return func(c *config) error {
		if l == nil {
			return fmt.Errorf("%w: nil logger", ErrBadOption)
		}
		c.log = l
		return nil
	}
}

// WithTableOptions passes options to the routing table (IP limits, refresh
// interval, failures); k and the clock come from the node's.
func WithTableOptions(opts ...kbucket.Option) Option {
	return func(c *config) error { c.tableOpts = append(c.tableOpts, opts...); return nil }
}

// WithStoreOptions passes options to the record store (limits).
func WithStoreOptions(opts ...StoreOption) Option {
	return func(c *config) error { c.storeOpts = append(c.storeOpts, opts...); return nil }
}

// Node is a DHT node: a routing table, a record store, and the lookups and
// maintenance that keep them useful. Create it with [New]; feed it the
// requests its transport receives with [Handle]; stop it with [Close].
type Node struct {
	id  *identity.Identity
	tr  Transport
	cfg config

	mu        sync.Mutex
	table     *kbucket.Table
	store     *Store
	resp      *Responder
	own       map[identity.PeerID]*ownRecord // by key
	rnd       *rand.Rand
	pinging   map[identity.PeerID]bool
	closed    bool
	ctx       context.Context
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	closeOnce sync.Once
}

type ownRecord struct {
	rec       *Record
	published time.Time
}

// New returns a node with identity id that sends through tr. It starts one
// maintenance goroutine; [Node.Close] stops it.
func New(id *identity.Identity, tr Transport, opts ...Option) (*Node, error) {
	if id == nil || tr == nil {
		return nil, fmt.Errorf("%w: nil identity or transport", ErrBadOption)
	}
	c := config{
		k:          kbucket.DefaultK,
		alpha:      DefaultAlpha,
		beta:       DefaultBeta,
		paths:      DefaultPaths,
		reqTimeout: DefaultRequestTimeout,
		lookupTime: DefaultLookupTimeout,
		ttl:        DefaultRecordTTL,
		republish:  DefaultRepublishInterval,
		maintain:   DefaultMaintainInterval,
		now:        time.Now,
		log:        slog.New(slog.DiscardHandler),
	}
	for _, o := range opts {
		if err := o(&c); err != nil {
			return nil, err
		}
	}
	if c.beta > c.k {
		return nil, fmt.Errorf("%w: beta %d exceeds k %d", ErrBadOption, c.beta, c.k)
	}
	table, err := kbucket.New(id.PeerID(), append([]kbucket.Option{kbucket.WithK(c.k), kbucket.WithClock(c.now)}, c.tableOpts...)...)
	if err != nil {
		return nil, err
	}
	var store *Store
	if !c.client {
		if store, err = NewStore(append([]StoreOption{WithStoreClock(c.now)}, c.storeOpts...)...); err != nil {
			return nil, err
		}
	}
	var seed [32]byte
	if _, err := crand.Read(seed[:]); err != nil {
		return nil, fmt.Errorf("dht: seed: %w", err)
	}
	n := &Node{
		id:      id,
		tr:      tr,
		cfg:     c,
		table:   table,
		store:   store,
		own:     map[identity.PeerID]*ownRecord{},
		rnd:     rand.New(rand.NewChaCha8(seed)),
		pinging: map[identity.PeerID]bool{},
	}
	n.resp = &Responder{Table: table, Store: store, K: c.k, Own: n.ownRecords}
	n.ctx, n.cancel = context.WithCancel(context.Background())
	n.wg.Add(1)
	go n.maintainLoop()
	return n, nil
}

// ID returns the node's PeerID.
func (n *Node) ID() identity.PeerID { return n.id.PeerID() }

// Close stops the node's goroutines and waits for them. It is idempotent.
func (n *Node) Close() error {
	n.closeOnce.Do(func() {
		n.mu.Lock()
		n.closed = true
		n.mu.Unlock()
		n.cancel()
		n.wg.Wait()
	})
	return nil
}

func (n *Node) ownRecords(key identity.PeerID) []*Record {
	if key != n.id.PeerID() {
		return nil
	}
	if o := n.own[key]; o != nil && n.cfg.now().Before(o.rec.Expires) {
		return []*Record{o.rec}
	}
	return nil
}

// Contacts returns the contacts of the routing table.
func (n *Node) Contacts() []kbucket.Contact {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.table.Contacts()
}

// Handle answers a request the transport received from from (whose PeerID
// the transport authenticated). If the sender says it is a server and
// would fit in the table, the node pings it in the background and adds it
// when it answers.
func (n *Node) Handle(ctx context.Context, from kbucket.Contact, req Request) (Message, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return nil, ErrClosed
	}
	resp := n.resp.Respond(from, req)
	room := n.table.HasRoom(from.ID)
	n.mu.Unlock()
	if resp == nil {
		return nil, fmt.Errorf("dht: %v is not a request: %w", req.Type(), ErrUnexpectedResponse)
	}
	if pr, ok := resp.(*PutResult); ok && pr.Code != PutStored && pr.Code != PutNotServer {
		n.cfg.log.Info("dht: refused a record", "peer", from.ID.Short(), "err", pr.Code.Err(), "reason", pr.Reason)
	}
	if req.FromServer() && room {
		n.pingAsync(from)
	}
	return resp, nil
}

// pingAsync pings c in the background and reports the outcome to the
// table. At most one ping per contact runs at a time.
func (n *Node) pingAsync(c kbucket.Contact) {
	n.mu.Lock()
	if n.closed || n.pinging[c.ID] || len(n.pinging) >= 64 {
		n.mu.Unlock()
		return
	}
	n.pinging[c.ID] = true
	n.wg.Add(1)
	n.mu.Unlock()
	go func() {
		defer n.wg.Done()
		err := n.ping(n.ctx, c)
		n.mu.Lock()
		delete(n.pinging, c.ID)
		n.mu.Unlock()
		if err != nil {
			n.cfg.log.Debug("dht: ping failed", "peer", c.ID.Short(), "err", err)
		}
	}()
}

// ping sends a PING and reports the outcome to the table.
func (n *Node) ping(ctx context.Context, c kbucket.Contact) error {
	rctx, cancel := context.WithTimeout(ctx, n.cfg.reqTimeout)
	defer cancel()
	resp, err := n.tr.Request(rctx, c, &Ping{Server: !n.cfg.client})
	if err == nil {
		if _, ok := resp.(*Pong); !ok {
			err = fmt.Errorf("dht: PING answered with %v: %w", resp.Type(), ErrUnexpectedResponse)
		}
	}
	if err != nil {
		n.mu.Lock()
		n.table.Failed(c.ID)
		n.mu.Unlock()
		return err
	}
	n.seen(c)
	return nil
}

// seen reports an answer of c to the table and, if c waits for a full
// bucket, pings the bucket's head in the background.
func (n *Node) seen(c kbucket.Contact) {
	n.mu.Lock()
	o, head := n.table.Seen(c)
	n.mu.Unlock()
	if o == kbucket.Pending {
		n.pingAsync(head)
	}
}

// Bootstrap joins the DHT through seeds: it pings them, looks up its own
// ID, then refreshes every bucket that look-up opened, as kad-dht does.
func (n *Node) Bootstrap(ctx context.Context, seeds []kbucket.Contact) error {
	if len(seeds) == 0 {
		return fmt.Errorf("dht: bootstrap: no seeds: %w", ErrBadOption)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs []error
	for _, s := range seeds {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := n.ping(ctx, s); err != nil {
				mu.Lock()
				errs = append(errs, fmt.Errorf("seed %s: %w", s.ID.Short(), err))
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(n.Contacts()) == 0 {
		return fmt.Errorf("dht: bootstrap: no seed answered: %w", errors.Join(errs...))
	}
	if _, err := n.FindClosest(ctx, n.id.PeerID()); err != nil {
		return fmt.Errorf("dht: bootstrap: %w", err)
	}
	n.mu.Lock()
	buckets := n.table.NumBuckets()
	n.mu.Unlock()
	for cpl := range buckets {
		if err := n.refresh(ctx, cpl); err != nil {
			return fmt.Errorf("dht: bootstrap: %w", err)
		}
	}
	return nil
}

func (n *Node) refresh(ctx context.Context, cpl int) error {
	n.mu.Lock()
	target := n.table.RandomID(cpl, n.rnd)
	n.mu.Unlock()
	_, err := n.FindClosest(ctx, target)
	return err
}

// lookupResult is what a lookup found.
type lookupResult struct {
	closest []kbucket.Contact
	records map[identity.PeerID]*Record // by signer
	hops    int
}

// FindClosest returns the k live nodes closest to key.
func (n *Node) FindClosest(ctx context.Context, key identity.PeerID) ([]kbucket.Contact, error) {
	res, err := n.lookup(ctx, key, false, false)
	if err != nil {
		return nil, err
	}
	return res.closest, nil
}

// FindPeer returns the peer record of id: from id itself or from the nodes
// that store it.
func (n *Node) FindPeer(ctx context.Context, id identity.PeerID) (*Record, error) {
	res, err := n.lookup(ctx, id, true, true)
	if err != nil {
		return nil, err
	}
	if r := res.records[id]; r != nil {
		return r, nil
	}
	return nil, fmt.Errorf("dht: peer %s: %w", id.Short(), ErrNotFound)
}

// Peers returns the announcements of the peers that joined topic.
func (n *Node) Peers(ctx context.Context, topic string) ([]*Record, error) {
	res, err := n.lookup(ctx, TopicKey(topic), true, false)
	if err != nil {
		return nil, err
	}
	out := make([]*Record, 0, len(res.records))
	for _, r := range res.records {
		out = append(out, r)
	}
	sortBySigner(out)
	return out, nil
}

type outcome struct {
	to   kbucket.Contact
	resp Message
	err  error
}

// lookup runs one iterative lookup for key. With get it sends GET and
// collects valid records; stopAtRecord ends it at the first one.
func (n *Node) lookup(parent context.Context, key identity.PeerID, get, stopAtRecord bool) (*lookupResult, error) {
	if err := n.ctx.Err(); err != nil {
		return nil, ErrClosed
	}
	// The lookup ends with the caller's ctx, its own deadline, or Close.
	ctx, cancel := context.WithTimeout(parent, n.cfg.lookupTime)
	stop := context.AfterFunc(n.ctx, cancel) //nolint:contextcheck // Close must end lookups the caller's ctx does not
	defer stop()
	defer cancel()
	n.mu.Lock()
	seeds := n.table.Closest(key, n.cfg.k*n.cfg.paths)
	n.mu.Unlock()
	if len(seeds) == 0 {
		return nil, fmt.Errorf("dht: lookup %s: routing table empty: %w", key.Short(), ErrNotFound)
	}
	l, err := NewLookup(key, n.id.PeerID(), seeds, LookupConfig{K: n.cfg.k, Alpha: n.cfg.alpha, Beta: n.cfg.beta, Paths: n.cfg.paths, Confirm: !get})
	if err != nil {
		return nil, err
	}
	var req Request = &FindNode{Target: key, Server: !n.cfg.client}
	if get {
		req = &Get{Key: key, Server: !n.cfg.client}
	}
	res := &lookupResult{records: map[identity.PeerID]*Record{}}
	results := make(chan outcome)
	inflight := 0
	defer func() {
		cancel()
		for ; inflight > 0; inflight-- {
			<-results
		}
	}()
	for {
		for {
			c, ok := l.Next()
			if !ok {
				break
			}
			inflight++
			go func() {
				rctx, rcancel := context.WithTimeout(ctx, n.cfg.reqTimeout)
				defer rcancel()
				resp, err := n.tr.Request(rctx, c, req)
				results <- outcome{c, resp, err}
			}()
		}
		if l.Done() || inflight == 0 {
			break
		}
		select {
		case o := <-results:
			inflight--
			n.handleOutcome(l, o, key, res, stopAtRecord)
		case <-ctx.Done():
			switch {
			case n.ctx.Err() != nil:
				return nil, ErrClosed
			case parent.Err() != nil:
				return nil, fmt.Errorf("dht: lookup %s: %w", key.Short(), parent.Err())
			}
			// The lookup's own deadline: return what it found, if anything.
			if len(res.records) == 0 && len(l.Result()) == 0 {
				return nil, fmt.Errorf("dht: lookup %s: no answer within %v: %w", key.Short(), n.cfg.lookupTime, ErrNotFound)
			}
			res.closest = l.Result()
			n.touch(key)
			return res, nil
		}
	}
	res.closest = l.Result()
	n.touch(key)
	return res, nil
}

func (n *Node) touch(key identity.PeerID) {
	n.mu.Lock()
	n.table.Touch(key)
	n.mu.Unlock()
}

func (n *Node) handleOutcome(l *Lookup, o outcome, key identity.PeerID, res *lookupResult, stopAtRecord bool) {
	var closer []kbucket.Contact
	var recs []*Record
	err := o.err
	if err == nil {
		switch m := o.resp.(type) {
		case *Nodes:
			closer = m.Closer
		case *Values:
			closer, recs = m.Closer, m.Records
		default:
			err = fmt.Errorf("dht: answered with %v: %w", o.resp.Type(), ErrUnexpectedResponse)
		}
	}
	if err != nil {
		n.mu.Lock()
		n.table.Failed(o.to.ID)
		n.mu.Unlock()
		l.Failure(o.to.ID)
		return
	}
	n.seen(o.to)
	hop := l.Response(o.to.ID, closer)
	now := n.cfg.now()
	bad := 0
	var badErr error
	for _, r := range recs {
		if err := CheckRecord(key, r, now); err != nil {
			// Forged, for another key, expired: dropped, and said once
			// per answer.
			if bad++; bad == 1 {
				badErr = err
			}
			continue
		}
		signer := r.PeerID()
		if old := res.records[signer]; old == nil || old.Seq < r.Seq {
			res.records[signer] = r
			if res.hops == 0 {
				res.hops = hop
			}
		}
	}
	if bad > 0 {
		n.cfg.log.Warn("dht: dropped invalid records from a node's answer", "peer", o.to.ID.Short(), "key", key.Short(), "records", bad, "err", badErr)
	}
	if stopAtRecord && res.records[key] != nil {
		l.Stop()
	}
}

// Publish signs the node's peer record (rendezvous URLs and, only if given,
// addresses), stores it on the k nodes closest to the node's ID, and keeps
// republishing it before it expires. It returns how many nodes stored it.
func (n *Node) Publish(ctx context.Context, rendezvous []string, addrs []netip.AddrPort) (int, error) {
	return n.publish(ctx, &Record{Rendezvous: rendezvous, Addrs: addrs})
}

// Announce joins topic: it stores an announcement (with the same
// rendezvous URLs and addresses as a peer record) on the k nodes closest to
// the topic key and keeps republishing it. It returns how many nodes stored
// it.
func (n *Node) Announce(ctx context.Context, topic string, rendezvous []string, addrs []netip.AddrPort) (int, error) {
	return n.publish(ctx, &Record{Topic: TopicKey(topic), Rendezvous: rendezvous, Addrs: addrs})
}

func (n *Node) publish(ctx context.Context, tmpl *Record) (int, error) {
	now := n.cfg.now()
	key := tmpl.Topic
	if key.IsZero() {
		key = n.id.PeerID()
	}
	n.mu.Lock()
	seq := uint64(now.UnixMilli())
	if o := n.own[key]; o != nil && o.rec.Seq >= seq {
		seq = o.rec.Seq + 1
	}
	n.mu.Unlock()
	r := &Record{Topic: tmpl.Topic, Seq: seq, Expires: now.Add(n.cfg.ttl), Rendezvous: tmpl.Rendezvous, Addrs: tmpl.Addrs}
	if err := r.Sign(n.id); err != nil {
		return 0, err
	}
	n.mu.Lock()
	n.own[key] = &ownRecord{rec: r, published: now}
	n.mu.Unlock()
	return n.putRecord(ctx, r)
}

func (n *Node) putRecord(ctx context.Context, r *Record) (int, error) {
	closest, err := n.FindClosest(ctx, r.Key())
	if err != nil {
		return 0, err
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	stored := 0
	var errs []error
	for _, c := range closest {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rctx, cancel := context.WithTimeout(ctx, n.cfg.reqTimeout)
			defer cancel()
			resp, err := n.tr.Request(rctx, c, &Put{Record: r, Server: !n.cfg.client})
			if err == nil {
				if pr, ok := resp.(*PutResult); !ok {
					err = fmt.Errorf("dht: PUT answered with %v: %w", resp.Type(), ErrUnexpectedResponse)
				} else {
					err = pr.Code.Err()
				}
			}
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", c.ID.Short(), err))
				return
			}
			stored++
		}()
	}
	wg.Wait()
	if stored == 0 {
		if len(errs) == 0 {
			return 0, fmt.Errorf("dht: no node to store the record on: %w", ErrNotFound)
		}
		return 0, fmt.Errorf("dht: no node stored the record: %w", errors.Join(errs...))
	}
	return stored, nil
}

// maintainLoop refreshes stale buckets and republishes due records until
// the node closes.
func (n *Node) maintainLoop() {
	defer n.wg.Done()
	t := time.NewTicker(n.cfg.maintain)
	defer t.Stop()
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-t.C:
			n.maintainOnce(n.ctx)
		}
	}
}

func (n *Node) maintainOnce(ctx context.Context) {
	now := n.cfg.now()
	n.mu.Lock()
	stale := n.table.StaleBuckets()
	empty := n.table.Len() == 0
	var due []*Record
	for _, o := range n.own {
		if now.Sub(o.published) >= n.cfg.republish {
			due = append(due, o.rec)
		}
	}
	if n.store != nil {
		n.store.Expire()
	}
	n.mu.Unlock()
	if empty {
		return
	}
	for _, cpl := range stale {
		if err := n.refresh(ctx, cpl); err != nil {
			n.cfg.log.Debug("dht: refresh failed", "bucket", cpl, "err", err)
		}
	}
	for _, r := range due {
		if _, err := n.publish(ctx, r); err != nil {
			n.cfg.log.Warn("dht: republish failed", "key", r.Key().Short(), "err", err)
		}
	}
}

func sortBySigner(rs []*Record) {
	slices.SortFunc(rs, func(a, b *Record) int {
		x, y := a.PeerID(), b.PeerID()
		return bytes.Compare(x[:], y[:])
	})
}
