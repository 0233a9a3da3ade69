// Package sim is the DHT simulator: N nodes in one process over an
// in-memory network in virtual time, with latency, loss, churn and Sybil
// attackers, deterministic from a seed.
//
// The simulated nodes run the DHT's own code: the routing table
// (dht/kbucket), the record store, the [dht.Responder] that computes
// answers, and the [dht.Lookup] state machine. Only the driver differs from
// [dht.Node]: instead of goroutines and timers, a discrete-event loop
// delivers messages after a latency, drops lost ones, and fires request
// timeouts, all on one goroutine and without reading a clock, so a run
// depends on nothing but its [Config].
//
// A run has two phases. In the join phase nodes join one after the other
// (every 20 ms of virtual time): each pings a few nodes that joined before
// it, looks up its own ID, refreshes its buckets, and publishes its signed
// peer record on the 20 nodes closest to its ID. In the lookup phase,
// lookups start every 20 ms from a random live honest node for the peer
// record of another random live honest node; meanwhile, with churn, nodes
// leave without notice and new ones join in their place. A lookup succeeds
// when it holds a valid record of its target, from the target itself or
// from a node storing it.
//
// Sybil nodes are run by one attacker. They join and answer pings like
// honest nodes, so they enter tables, but they answer every FIND_NODE and
// GET with the attacker's nodes closest to the key and never with a record,
// and they accept PUTs and drop them. Their addresses are as spread out as
// honest ones (the attacker has many networks), so the IP diversity limits
// do not help: the measurement is of the lookup alone.
package sim

import (
	"container/heap"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"net/netip"
	"runtime"
	"slices"
	"time"

	"github.com/ferrynet/ferry/dht"
	"github.com/ferrynet/ferry/dht/kbucket"
	"github.com/ferrynet/ferry/identity"
)

// Config describes a run. Zero values take the defaults noted.
type Config struct {
	// Nodes is how many nodes the network has (at least 2).
	Nodes int
	// Lookups is how many lookups to run (default Nodes).
	Lookups int
	// Churn is the fraction of nodes replaced during the lookup phase
	// (0..1): that many leave without notice and as many new ones join.
	Churn float64
	// Loss is the probability that any one message is lost (0..0.5).
	Loss float64
	// Sybil is the fraction of nodes run by the attacker (0..0.5).
	Sybil float64
	// Seed makes the run reproducible.
	Seed uint64
	// K, Alpha, Beta and Paths are the DHT's parameters (defaults 20, 3,
	// 3, 2: those of dht).
	K, Alpha, Beta, Paths int
	// Progress, if set, is called now and then with the phase and how far
	// it got.
	Progress func(phase string, done, total int)
}

// Result is what a run measured. JSON field names are those of dhtsim.
type Result struct {
	Nodes       int     `json:"nodes"`
	Lookups     int     `json:"lookups"`
	SuccessRate float64 `json:"success_rate"`
	// Hops of the answer that delivered the record, over successful
	// lookups: 1 when a node of the origin's own table had it.
	HopsP50 float64 `json:"hops_p50"`
	HopsP95 float64 `json:"hops_p95"`
	// Requests a lookup sent, over all lookups.
	MsgsPerLookupP50 float64 `json:"msgs_per_lookup_p50"`
	MsgsPerLookupP95 float64 `json:"msgs_per_lookup_p95"`
	// Virtual time from a lookup's start to its record, over successful
	// lookups.
	LatencyMsP50 float64 `json:"latency_ms_p50"`
	LatencyMsP95 float64 `json:"latency_ms_p95"`
	// Heap bytes per simulated node after the join phase (the one figure
	// that is measured, not simulated, so it varies a little between runs).
	BytesPerNode int64   `json:"bytes_per_node"`
	Churn        float64 `json:"churn"`
	Sybil        float64 `json:"sybil"`
	Loss         float64 `json:"loss"`
	Seed         uint64  `json:"seed"`
	K            int     `json:"k"`
	Alpha        int     `json:"alpha"`
	Beta         int     `json:"beta"`
	Paths        int     `json:"paths"`
	// TableSizeP50 is the median routing table size at the end.
	TableSizeP50 float64 `json:"table_size_p50"`
	// MessagesTotal counts every message sent in the run, joins included.
	MessagesTotal int64 `json:"messages_total"`
	// VirtualSeconds is how long the run lasted in virtual time.
	VirtualSeconds float64 `json:"virtual_seconds"`
}

// ErrBadConfig reports a Config out of range.
var ErrBadConfig = errors.New("sim: bad config")

const (
	joinGap        = 20 * time.Millisecond
	lookupGap      = 20 * time.Millisecond
	requestTimeout = time.Second
	seedsPerJoin   = 3
	recordTTL      = 24 * time.Hour
)

func (c *Config) fill() error {
	if c.Nodes < 2 {
		return fmt.Errorf("%w: %d nodes, want at least 2", ErrBadConfig, c.Nodes)
	}
	if c.Lookups == 0 {
		c.Lookups = c.Nodes
	}
	if c.K == 0 {
		c.K = kbucket.DefaultK
	}
	if c.Alpha == 0 {
		c.Alpha = dht.DefaultAlpha
	}
	if c.Beta == 0 {
		c.Beta = dht.DefaultBeta
	}
	if c.Paths == 0 {
		c.Paths = dht.DefaultPaths
	}
	switch {
	case c.Lookups < 0:
		return fmt.Errorf("%w: %d lookups", ErrBadConfig, c.Lookups)
	case c.Churn < 0 || c.Churn > 1 || math.IsNaN(c.Churn):
		return fmt.Errorf("%w: churn %v, want 0..1", ErrBadConfig, c.Churn)
	case c.Loss < 0 || c.Loss > 0.5 || math.IsNaN(c.Loss):
		return fmt.Errorf("%w: loss %v, want 0..0.5", ErrBadConfig, c.Loss)
	case c.Sybil < 0 || c.Sybil > 0.5 || math.IsNaN(c.Sybil):
		return fmt.Errorf("%w: sybil %v, want 0..0.5", ErrBadConfig, c.Sybil)
	case c.K < 1 || c.K > dht.MaxContacts || c.Alpha < 1 || c.Beta < 1 || c.Beta > c.K || c.Paths < 1 || c.Paths > 16:
		return fmt.Errorf("%w: k %d, alpha %d, beta %d, paths %d", ErrBadConfig, c.K, c.Alpha, c.Beta, c.Paths)
	}
	return nil
}

type node struct {
	idx    int
	key    *identity.Identity // honest nodes sign their record with it
	id     identity.PeerID
	addr   netip.AddrPort
	base   time.Duration // this node's half of every link's latency
	table  *kbucket.Table
	store  *dht.Store
	resp   *dht.Responder
	rec    *dht.Record
	alive  bool
	sybil  bool
	joined bool
}

func (n *node) contact() kbucket.Contact { return kbucket.Contact{ID: n.id, Addr: n.addr} }

type event struct {
	at  time.Duration
	seq uint64
	fn  func()
}

type eventQueue []event

func (q eventQueue) Len() int { return len(q) }
func (q eventQueue) Less(i, j int) bool {
	if q[i].at != q[j].at {
		return q[i].at < q[j].at
	}
	return q[i].seq < q[j].seq
}
func (q eventQueue) Swap(i, j int) { q[i], q[j] = q[j], q[i] }
func (q *eventQueue) Push(x any)   { *q = append(*q, x.(event)) }
func (q *eventQueue) Pop() any {
	old := *q
	e := old[len(old)-1]
	old[len(old)-1] = event{} // drop the closure, or the backing array keeps it alive
	*q = old[:len(old)-1]
	return e
}

type simulation struct {
	cfg    Config
	r      *rand.Rand
	now    time.Duration
	epoch  time.Time
	q      eventQueue
	seq    uint64
	nodes  []*node
	byID   map[identity.PeerID]*node
	live   []*node // honest, joined, alive
	sybils []identity.PeerID
	msgs   int64
	err    error

	lookupsDone            int
	success                int
	hops, msgsPer, latency []float64
}

// fail stops the run with err.
func (s *simulation) fail(err error) {
	if s.err == nil {
		s.err = err
	}
}

func (s *simulation) clock() time.Time { return s.epoch.Add(s.now) }

func (s *simulation) at(d time.Duration, fn func()) {
	s.seq++
	heap.Push(&s.q, event{at: s.now + d, seq: s.seq, fn: fn})
}

// Run simulates the network described by cfg. It returns early with ctx's
// error if ctx ends.
func Run(ctx context.Context, cfg Config) (Result, error) {
	if err := cfg.fill(); err != nil {
		return Result{}, err
	}
	if err := ctx.Err(); err != nil {
		return Result{}, err
	}
	s := &simulation{
		cfg:   cfg,
		r:     rand.New(rand.NewPCG(cfg.Seed, cfg.Seed^0x9e3779b97f4a7c15)),
		epoch: time.Unix(1_800_000_000, 0),
		byID:  make(map[identity.PeerID]*node, cfg.Nodes),
	}
	var before runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)

	nSybil := int(math.Round(cfg.Sybil * float64(cfg.Nodes)))
	// Sybils are spread through the join order; the first node is honest
	// (it is everyone's first seed).
	sybilAt := map[int]bool{}
	for len(sybilAt) < nSybil {
		if i := 1 + s.r.IntN(cfg.Nodes-1); !sybilAt[i] {
			sybilAt[i] = true
		}
	}
	for i := range cfg.Nodes {
		n, err := s.newNode(sybilAt[i])
		if err != nil {
			return Result{}, err
		}
		s.at(time.Duration(i)*joinGap, func() { s.join(n) })
	}
	if err := s.runUntilIdle(ctx, "join", cfg.Nodes, func() int { return s.joinedCount() }); err != nil {
		return Result{}, err
	}
	var after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&after)
	bytesPerNode := (int64(after.HeapAlloc) - int64(before.HeapAlloc)) / int64(cfg.Nodes)

	// Lookup phase, with churn spread over it.
	phase := time.Duration(cfg.Lookups) * lookupGap
	for i := range cfg.Lookups {
		s.at(time.Duration(i)*lookupGap, s.startLookup)
	}
	replace := int(math.Round(cfg.Churn * float64(cfg.Nodes)))
	for i := range replace {
		at := time.Duration(float64(phase) * (float64(i) + 0.5) / float64(replace))
		s.at(at, s.churnOne)
	}
	if err := s.runUntilIdle(ctx, "lookups", cfg.Lookups, func() int { return s.lookupsDone }); err != nil {
		return Result{}, err
	}

	sizes := make([]float64, 0, len(s.live))
	for _, n := range s.live {
		sizes = append(sizes, float64(n.table.Len()))
	}
	res := Result{
		Nodes:            cfg.Nodes,
		Lookups:          cfg.Lookups,
		HopsP50:          percentile(s.hops, 50),
		HopsP95:          percentile(s.hops, 95),
		MsgsPerLookupP50: percentile(s.msgsPer, 50),
		MsgsPerLookupP95: percentile(s.msgsPer, 95),
		LatencyMsP50:     percentile(s.latency, 50),
		LatencyMsP95:     percentile(s.latency, 95),
		BytesPerNode:     bytesPerNode,
		Churn:            cfg.Churn,
		Sybil:            cfg.Sybil,
		Loss:             cfg.Loss,
		Seed:             cfg.Seed,
		K:                cfg.K,
		Alpha:            cfg.Alpha,
		Beta:             cfg.Beta,
		Paths:            cfg.Paths,
		TableSizeP50:     percentile(sizes, 50),
		MessagesTotal:    s.msgs,
		VirtualSeconds:   s.now.Seconds(),
	}
	if cfg.Lookups > 0 {
		res.SuccessRate = float64(s.success) / float64(cfg.Lookups)
	}
	return res, nil
}

func (s *simulation) joinedCount() int {
	n := 0
	for _, nd := range s.nodes {
		if nd.joined {
			n++
		}
	}
	return n
}

// runUntilIdle runs events until none is left, reporting progress.
func (s *simulation) runUntilIdle(ctx context.Context, phase string, total int, done func() int) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	steps := 0
	for s.q.Len() > 0 {
		if steps%10_000 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		if steps%100_000 == 0 {
			if s.cfg.Progress != nil {
				s.cfg.Progress(phase, done(), total)
			}
		}
		steps++
		e := heap.Pop(&s.q).(event)
		s.now = e.at
		e.fn()
		if s.err != nil {
			return s.err
		}
	}
	if s.cfg.Progress != nil {
		s.cfg.Progress(phase, done(), total)
	}
	return nil
}

func (s *simulation) newNode(sybil bool) (*node, error) {
	n := &node{idx: len(s.nodes), sybil: sybil, base: time.Duration(5+s.r.IntN(71)) * time.Millisecond}
	if sybil {
		// The attacker's IDs: any 32 bytes it likes (it can make keys).
		for i := range n.id {
			n.id[i] = byte(s.r.Uint32())
		}
		s.sybils = append(s.sybils, n.id)
	} else {
		var seed [ed25519.SeedSize]byte
		for i := range seed {
			seed[i] = byte(s.r.Uint32())
		}
		key, err := identity.FromPrivateKey(ed25519.NewKeyFromSeed(seed[:]))
		if err != nil {
			return nil, err
		}
		n.key, n.id = key, key.PeerID()
	}
	n.addr = netip.AddrPortFrom(netip.AddrFrom4([4]byte{byte(20 + s.r.IntN(80)), byte(s.r.Uint32()), byte(s.r.Uint32()), byte(1 + s.r.IntN(254))}), 4000)
	var err error
	if n.table, err = kbucket.New(n.id, kbucket.WithK(s.cfg.K), kbucket.WithClock(s.clock)); err != nil {
		return nil, err
	}
	if !sybil {
		if n.store, err = dht.NewStore(dht.WithStoreClock(s.clock)); err != nil {
			return nil, err
		}
	}
	n.resp = &dht.Responder{Table: n.table, Store: n.store, K: s.cfg.K, Own: func(key identity.PeerID) []*dht.Record {
		if n.rec != nil && key == n.id {
			return []*dht.Record{n.rec}
		}
		return nil
	}}
	s.nodes = append(s.nodes, n)
	s.byID[n.id] = n
	return n, nil
}

// send delivers req from a to the node at to, then calls onResp with the
// answer or onFail after the request timeout.
func (s *simulation) send(a *node, to kbucket.Contact, req dht.Request, onResp func(dht.Message), onFail func()) {
	s.msgs++
	b := s.byID[to.ID]
	if b == nil || !b.alive || s.lost() {
		s.at(requestTimeout, onFail)
		return
	}
	lat := a.base + b.base
	sent := s.now
	s.at(lat, func() {
		if !b.alive {
			s.at(sent+requestTimeout-s.now, onFail)
			return
		}
		resp := s.respond(b, a, req)
		s.msgs++
		if s.lost() {
			s.at(sent+requestTimeout-s.now, onFail)
			return
		}
		s.at(lat, func() {
			if a.alive {
				onResp(resp)
			} else {
				onFail() // the sender left meanwhile
			}
		})
	})
}

func (s *simulation) lost() bool { return s.cfg.Loss > 0 && s.r.Float64() < s.cfg.Loss }

// respond computes b's answer to a's request, and pings a back if it is a
// server b has room for.
func (s *simulation) respond(b, a *node, req dht.Request) dht.Message {
	if b.sybil {
		switch m := req.(type) {
		case *dht.FindNode:
			return &dht.Nodes{Closer: s.closestSybils(m.Target)}
		case *dht.Get:
			return &dht.Values{Closer: s.closestSybils(m.Key)}
		case *dht.Put:
			return &dht.PutResult{}
		}
	}
	resp := b.resp.Respond(a.contact(), req)
	if req.FromServer() && b.table.HasRoom(a.id) {
		s.ping(b, a.contact())
	}
	return resp
}

// closestSybils returns the attacker's k nodes closest to key.
func (s *simulation) closestSybils(key identity.PeerID) []kbucket.Contact {
	k := min(s.cfg.K, len(s.sybils))
	best := make([]identity.PeerID, 0, k+1)
	for _, id := range s.sybils {
		i, _ := slices.BinarySearchFunc(best, id, func(e, t identity.PeerID) int {
			if kbucket.Closer(e, t, key) {
				return -1
			}
			return 1
		})
		if i >= k {
			continue
		}
		best = slices.Insert(best, i, id)
		if len(best) > k {
			best = best[:k]
		}
	}
	out := make([]kbucket.Contact, len(best))
	for i, id := range best {
		out[i] = s.byID[id].contact()
	}
	return out
}

// ping sends a PING from a to c and reports the outcome to a's table.
func (s *simulation) ping(a *node, c kbucket.Contact) {
	s.send(a, c, &dht.Ping{Server: true}, func(dht.Message) { s.seen(a, c) }, func() { a.table.Failed(c.ID) })
}

// seen reports an answer of c to a's table, pinging a full bucket's head.
func (s *simulation) seen(a *node, c kbucket.Contact) {
	if o, head := a.table.Seen(c); o == kbucket.Pending {
		s.ping(a, head)
	}
}

// lookup drives a dht.Lookup from a; done runs once when it ends.
type lookup struct {
	s      *simulation
	a      *node
	l      *dht.Lookup
	req    dht.Request
	key    identity.PeerID
	want   identity.PeerID // GET: the record's signer; zero for FIND_NODE
	start  time.Duration
	found  bool
	hops   int
	ended  bool
	onDone func(*lookup)
}

func (s *simulation) newLookup(a *node, key identity.PeerID, get, confirm bool, onDone func(*lookup)) {
	seeds := a.table.Closest(key, s.cfg.K*s.cfg.Paths)
	l, err := dht.NewLookup(key, a.id, seeds, dht.LookupConfig{K: s.cfg.K, Alpha: s.cfg.Alpha, Beta: s.cfg.Beta, Paths: s.cfg.Paths, Confirm: confirm})
	if err != nil {
		s.fail(err) // cannot happen: fill checked the parameters
		return
	}
	lk := &lookup{s: s, a: a, l: l, key: key, start: s.now, onDone: onDone}
	if get {
		lk.req, lk.want = &dht.Get{Key: key, Server: true}, key
	} else {
		lk.req = &dht.FindNode{Target: key, Server: true}
	}
	lk.pump()
}

func (lk *lookup) pump() {
	if lk.ended {
		return
	}
	if !lk.a.alive {
		// The origin left during its lookup: it ends unsuccessful.
		lk.ended = true
		lk.onDone(lk)
		return
	}
	for {
		c, ok := lk.l.Next()
		if !ok {
			break
		}
		lk.s.send(lk.a, c, lk.req, func(m dht.Message) { lk.response(c, m) }, func() { lk.failure(c) })
	}
	if lk.l.Done() {
		lk.ended = true
		lk.onDone(lk)
	}
}

func (lk *lookup) response(c kbucket.Contact, m dht.Message) {
	lk.s.seen(lk.a, c)
	var closer []kbucket.Contact
	var recs []*dht.Record
	switch m := m.(type) {
	case *dht.Nodes:
		closer = m.Closer
	case *dht.Values:
		closer, recs = m.Closer, m.Records
	}
	hop := lk.l.Response(c.ID, closer)
	if !lk.want.IsZero() && !lk.found {
		for _, r := range recs {
			if r.PeerID() == lk.want && dht.CheckRecord(lk.key, r, lk.s.clock()) == nil {
				lk.found, lk.hops = true, hop
				lk.l.Stop()
				break
			}
		}
	}
	lk.pump()
}

func (lk *lookup) failure(c kbucket.Contact) {
	lk.a.table.Failed(c.ID)
	lk.l.Failure(c.ID)
	lk.pump()
}

// join brings n into the network: ping seeds, look up its own ID, refresh
// its buckets, publish its record.
func (s *simulation) join(n *node) {
	n.alive = true
	if n.rec == nil {
		s.sign(n)
	}
	var seeds []*node
	if len(s.live) > 0 {
		seeds = append(seeds, s.live[0])
		for range seedsPerJoin - 1 {
			seeds = append(seeds, s.live[s.r.IntN(len(s.live))])
		}
	}
	if len(seeds) == 0 {
		s.joined(n) // the first node
		return
	}
	pending := len(seeds)
	for _, sd := range seeds {
		s.send(n, sd.contact(), &dht.Ping{Server: true}, func(dht.Message) {
			s.seen(n, sd.contact())
			if pending--; pending == 0 {
				s.afterSeeds(n)
			}
		}, func() {
			if pending--; pending == 0 {
				s.afterSeeds(n)
			}
		})
	}
}

func (s *simulation) afterSeeds(n *node) {
	if n.table.Len() == 0 && len(s.live) > 0 {
		// Every seed ping was lost: try again with others.
		s.at(requestTimeout, func() { s.join(n) })
		return
	}
	s.newLookup(n, n.id, false, true, func(self *lookup) {
		// The look-up of its own ID found the k closest live nodes: they
		// are where n stores its record once its buckets are refreshed.
		closest := self.l.Result()
		buckets := n.table.NumBuckets()
		left := buckets
		if left == 0 {
			s.publish(n, closest)
			return
		}
		for cpl := range buckets {
			s.newLookup(n, n.table.RandomID(cpl, s.r), false, false, func(*lookup) {
				if left--; left == 0 {
					s.publish(n, closest)
				}
			})
		}
	})
}

// sign makes n's peer record, which n serves itself from then on.
func (s *simulation) sign(n *node) {
	if n.sybil {
		return
	}
	r := &dht.Record{Seq: 1, Expires: s.clock().Add(recordTTL), Rendezvous: []string{fmt.Sprintf("wss://rv%d.sim/v1/signal", n.idx%16)}}
	if err := r.Sign(n.key); err != nil {
		s.fail(err)
		return
	}
	n.rec = r
}

// publish stores n's record on closest, the k nodes closest to its ID.
func (s *simulation) publish(n *node, closest []kbucket.Contact) {
	s.joined(n)
	if n.sybil {
		return
	}
	for _, c := range closest {
		s.send(n, c, &dht.Put{Record: n.rec, Server: true}, func(dht.Message) {}, func() {})
	}
}

func (s *simulation) joined(n *node) {
	n.joined = true
	if !n.sybil && n.alive {
		s.live = append(s.live, n)
	}
}

// startLookup looks up the record of a random live honest node from
// another.
func (s *simulation) startLookup() {
	if len(s.live) < 2 {
		s.lookupsDone++
		return
	}
	a := s.live[s.r.IntN(len(s.live))]
	b := a
	for b == a {
		b = s.live[s.r.IntN(len(s.live))]
	}
	s.newLookup(a, b.id, true, false, func(lk *lookup) {
		s.lookupsDone++
		s.msgsPer = append(s.msgsPer, float64(lk.l.Sent()))
		if lk.found {
			s.success++
			s.hops = append(s.hops, float64(lk.hops))
			s.latency = append(s.latency, float64(s.now-lk.start)/float64(time.Millisecond))
		}
	})
}

// churnOne removes a random live node (honest or Sybil, never the first)
// and joins a new one of the same kind.
func (s *simulation) churnOne() {
	var candidates []*node
	for _, n := range s.nodes[1:] {
		if n.alive && n.joined {
			candidates = append(candidates, n)
		}
	}
	if len(candidates) == 0 {
		return
	}
	gone := candidates[s.r.IntN(len(candidates))]
	gone.alive = false
	if i := slices.Index(s.live, gone); i >= 0 {
		s.live = slices.Delete(s.live, i, i+1)
	}
	if gone.sybil {
		if i := slices.Index(s.sybils, gone.id); i >= 0 {
			s.sybils = slices.Delete(s.sybils, i, i+1)
		}
	}
	n, err := s.newNode(gone.sybil)
	if err != nil {
		s.fail(err)
		return
	}
	s.join(n)
}

func percentile(v []float64, p float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	i := int(math.Ceil(p/100*float64(len(s)))) - 1
	return s[max(0, min(i, len(s)-1))]
}
