// Package sim is the gossip simulator: N nodes in one process, each running
// the gossip package's own [gossip.Router], over the DHT simulator's
// in-memory network ([dhtsim.Loop]: virtual time, per-node latency, loss),
// with churn, deterministic from a seed.
//
// A run has three phases. Nodes join the topic one after another (every
// 5 ms of virtual time), each given 30 random earlier nodes as candidates
// (what topic discovery would give) and dialling 5 of them. After a 2 s
// pause, messages are published every 20 ms (Config.Interval), each by a random
// live node;
// meanwhile, with churn, nodes leave without notice and new ones join in
// their place. Last, the run goes on until no event is left (at most 30 s
// of virtual time), so repairs finish.
//
// A node that leaves sends nothing: its neighbours learn it is gone when
// their connection to it times out (1 s later), and a node that dials it
// learns so after a dial timeout (1 s). Every node asks discovery for 20
// fresh candidates each second while it holds fewer than 10.
package sim

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"math"
	"runtime"
	"slices"
	"time"

	dhtsim "github.com/ferrynet/ferry/dht/sim"
	"github.com/ferrynet/ferry/gossip"
	"github.com/ferrynet/ferry/identity"
)

// Config describes a run. Zero values take the defaults noted.
type Config struct {
	// Nodes is how many nodes subscribe to the topic (at least 2).
	Nodes int
	// Messages is how many messages are published (default Nodes).
	Messages int
	// Churn is the fraction of nodes replaced during the publishing phase
	// (0..1).
	Churn float64
	// Loss is the probability that any one frame is lost (0..0.5).
	Loss float64
	// Seed makes the run reproducible.
	Seed uint64
	// DataSize is the bytes of data per message (default 256).
	DataSize int
	// Interval is the time between two messages (default 20 ms). Churn
	// is spread over the publishing phase, Messages × Interval.
	Interval time.Duration
	// Progress, if set, is called now and then with how many messages
	// have been published.
	Progress func(done, total int)
}

// Result is what a run measured. JSON names are gossipsim's.
type Result struct {
	Nodes    int `json:"nodes"`
	Messages int `json:"messages"`
	// DeliveryRatio is deliveries / (messages × live subscribers): the
	// subscribers of a message are the nodes other than its origin that
	// had joined 2 s before it was published and were alive at the end.
	DeliveryRatio float64 `json:"delivery_ratio"`
	// DupPerDelivery is the MSG copies received on the wire per message
	// delivered to an app, over every node: 1 would be no waste.
	DupPerDelivery float64 `json:"dup_per_delivery"`
	HopsP50        float64 `json:"hops_p50"`
	HopsP99        float64 `json:"hops_p99"`
	LatencyMsP50   float64 `json:"latency_ms_p50"`
	LatencyMsP99   float64 `json:"latency_ms_p99"`
	// BytesPerNode is the wire bytes a node sent over the run, on average
	// over every node that took part.
	BytesPerNode int64 `json:"bytes_per_node"`
	// HeapBytesPerNode is the heap in use per node after the join phase.
	HeapBytesPerNode int64   `json:"heap_bytes_per_node"`
	Churn            float64 `json:"churn"`
	Loss             float64 `json:"loss"`
	Seed             uint64  `json:"seed"`
	// Deliveries, Expected and AppDuplicates: the ratio's terms, and
	// messages delivered to one app twice (must be 0).
	Deliveries    int64 `json:"deliveries"`
	Expected      int64 `json:"expected"`
	AppDuplicates int64 `json:"app_duplicates"`
	// OutOfOrder counts deliveries with a lower sequence number than the
	// one before from the same origin at the same node (must be 0).
	OutOfOrder     int64   `json:"out_of_order"`
	FramesTotal    int64   `json:"frames_total"`
	MeshDegreeP50  float64 `json:"mesh_degree_p50"`
	VirtualSeconds float64 `json:"virtual_seconds"`
	// Metrics sums the routers' counters.
	Metrics gossip.Metrics `json:"metrics"`
}

// ErrBadConfig reports a Config out of range.
var ErrBadConfig = errors.New("gossipsim: bad config")

const (
	topic        = "sim"
	joinGap      = 5 * time.Millisecond
	publishGap   = 20 * time.Millisecond
	settle       = 2 * time.Second
	detectDelay  = time.Second
	dialTimeout  = time.Second
	candidates   = 30
	refreshEvery = time.Second
	drainFor     = 30 * time.Second
)

func (c *Config) fill() error {
	if c.Nodes < 2 {
		return fmt.Errorf("%w: %d nodes, want at least 2", ErrBadConfig, c.Nodes)
	}
	if c.Messages == 0 {
		c.Messages = c.Nodes
	}
	if c.DataSize == 0 {
		c.DataSize = 256
	}
	if c.Interval == 0 {
		c.Interval = publishGap
	}
	switch {
	case c.Interval < 0 || c.Interval > time.Minute:
		return fmt.Errorf("%w: interval %v, want up to 1m", ErrBadConfig, c.Interval)
	case c.Messages < 0:
		return fmt.Errorf("%w: %d messages", ErrBadConfig, c.Messages)
	case c.Churn < 0 || c.Churn > 1 || math.IsNaN(c.Churn):
		return fmt.Errorf("%w: churn %v, want 0..1", ErrBadConfig, c.Churn)
	case c.Loss < 0 || c.Loss > 0.5 || math.IsNaN(c.Loss):
		return fmt.Errorf("%w: loss %v, want 0..0.5", ErrBadConfig, c.Loss)
	case c.DataSize < 0 || c.DataSize > gossip.DefaultMaxData:
		return fmt.Errorf("%w: data size %d, want 0..%d", ErrBadConfig, c.DataSize, gossip.DefaultMaxData)
	}
	return nil
}

type node struct {
	idx      int
	id       identity.PeerID
	base     time.Duration
	r        *gossip.Router
	t        *gossip.Topic
	alive    bool
	joinedAt time.Duration
	sent     int64
	// down holds the peers this node has a PeerDown pending for.
	down map[identity.PeerID]bool
	last map[identity.PeerID]uint64 // last sequence delivered per origin
}

type msgInfo struct {
	at     time.Duration
	origin int
}

type simulation struct {
	cfg   Config
	l     *dhtsim.Loop
	epoch time.Time
	nodes []*node
	byID  map[identity.PeerID]*node
	live  []*node
	msgs  map[gossip.MsgID]msgInfo
	got   map[[2]int]bool // (node, message index) delivered
	idx   map[gossip.MsgID]int

	deliveredAt []delivered
	appDups     int64
	outOfOrder  int64
	frames      int64
	publishing  bool
	err         error
}

type delivered struct {
	node, msg int
	hops      int
	latency   time.Duration
}

type clock struct{ s *simulation }

func (c clock) Now() time.Time                      { return c.s.epoch.Add(c.s.l.Now()) }
func (c clock) AfterFunc(d time.Duration, f func()) { c.s.l.At(d, f) }

type transport struct {
	s *simulation
	n *node
}

func (tr transport) Send(to identity.PeerID, b []byte) {
	s, a := tr.s, tr.n
	if !a.alive {
		return
	}
	s.frames++
	a.sent += int64(len(b))
	dst := s.byID[to]
	if dst == nil || !dst.alive {
		s.peerDown(a, to, dialTimeout)
		return
	}
	if s.l.Lost() {
		return
	}
	s.l.At(a.base+dst.base, func() {
		// A frame on the wire arrives even if its sender has left since.
		if dst.alive {
			dst.r.HandleFrame(a.id, b)
		}
	})
}

// peerDown tells n, after d, that its connection to p is gone.
func (s *simulation) peerDown(n *node, p identity.PeerID, d time.Duration) {
	if n.down[p] {
		return
	}
	n.down[p] = true
	s.l.At(d, func() {
		delete(n.down, p)
		if n.alive {
			n.r.PeerDown(p)
		}
	})
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
		l:     dhtsim.NewLoop(cfg.Seed, cfg.Loss),
		epoch: time.Unix(1_800_000_000, 0),
		byID:  map[identity.PeerID]*node{},
		msgs:  map[gossip.MsgID]msgInfo{},
		got:   map[[2]int]bool{},
		idx:   map[gossip.MsgID]int{},
	}
	var before runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for i := range cfg.Nodes {
		s.l.At(time.Duration(i)*joinGap, func() { s.spawn() })
	}
	if err := s.runUntil(ctx, time.Duration(cfg.Nodes)*joinGap); err != nil {
		return Result{}, err
	}
	var after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&after)
	s.l.At(refreshEvery, s.refresh)

	start := s.l.Now() + settle
	churn := int(math.Round(cfg.Churn * float64(cfg.Nodes)))
	s.publishing = true
	for i := range cfg.Messages {
		s.l.At(start-s.l.Now()+time.Duration(i)*cfg.Interval, func() { s.publish(ctx, i) })
	}
	span := time.Duration(cfg.Messages) * cfg.Interval
	for i := range churn {
		at := start + span*time.Duration(i)/time.Duration(max(churn, 1))
		s.l.At(at-s.l.Now(), s.churnOne)
	}
	end := start + span
	s.l.At(end-s.l.Now(), func() { s.publishing = false })
	if err := s.runUntil(ctx, end+drainFor); err != nil {
		return Result{}, err
	}
	if s.err != nil {
		return Result{}, s.err
	}
	return s.result(before, after), nil
}

// runUntil runs events until none is left or virtual time passes limit.
func (s *simulation) runUntil(ctx context.Context, limit time.Duration) error {
	for steps := 0; s.l.Pending() > 0 && s.l.Now() <= limit; steps++ {
		if steps%10_000 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		s.l.Step()
		if s.err != nil {
			return s.err
		}
	}
	return nil
}

func (s *simulation) fail(err error) {
	if s.err == nil {
		s.err = err
	}
}

func (s *simulation) spawn() {
	r := s.l.Rand()
	var seed [ed25519.SeedSize]byte
	for i := range seed {
		seed[i] = byte(r.Uint32())
	}
	key, err := identity.FromPrivateKey(ed25519.NewKeyFromSeed(seed[:]))
	if err != nil {
		s.fail(err)
		return
	}
	n := &node{
		idx: len(s.nodes), id: key.PeerID(), base: s.l.NodeLatency(), alive: true,
		joinedAt: s.l.Now(), down: map[identity.PeerID]bool{}, last: map[identity.PeerID]uint64{},
	}
	n.r, err = gossip.New(key, transport{s: s, n: n}, gossip.WithClock(clock{s}))
	if err != nil {
		s.fail(err)
		return
	}
	if n.t, err = n.r.Join(topic); err != nil {
		s.fail(err)
		return
	}
	n.t.OnMessage(func(m gossip.Message) { s.onMessage(n, m) })
	s.nodes = append(s.nodes, n)
	s.byID[n.id] = n
	n.t.AddPeers(s.randomLive(candidates, n)...)
	s.live = append(s.live, n)
}

func (s *simulation) randomLive(k int, except *node) []identity.PeerID {
	r := s.l.Rand()
	var out []identity.PeerID
	if len(s.live) <= k+1 {
		for _, n := range s.live {
			if n != except {
				out = append(out, n.id)
			}
		}
		return out
	}
	picked := map[int]bool{}
	for len(out) < k {
		i := r.IntN(len(s.live))
		if picked[i] || s.live[i] == except {
			continue
		}
		picked[i] = true
		out = append(out, s.live[i].id)
	}
	return out
}

// refresh is discovery: nodes short of candidates get fresh ones.
func (s *simulation) refresh() {
	for _, n := range s.live {
		if n.t.Candidates() < 10 {
			n.t.AddPeers(s.randomLive(20, n)...)
		}
	}
	if s.publishing {
		s.l.At(refreshEvery, s.refresh)
	}
}

func (s *simulation) publish(ctx context.Context, i int) {
	if s.cfg.Progress != nil && i%100 == 0 {
		s.cfg.Progress(i, s.cfg.Messages)
	}
	n := s.live[s.l.Rand().IntN(len(s.live))]
	data := make([]byte, s.cfg.DataSize)
	for j := range data {
		data[j] = byte(i + j)
	}
	if err := n.t.Publish(ctx, data); err != nil {
		s.fail(err)
		return
	}
	id := gossip.MsgID{Origin: n.id, Seq: n.t.LastSeq()}
	s.msgs[id] = msgInfo{at: s.l.Now(), origin: n.idx}
	s.idx[id] = i
}

func (s *simulation) onMessage(n *node, m gossip.Message) {
	i, ok := s.idx[gossip.MsgID{Origin: m.Origin, Seq: m.Seq}]
	if !ok {
		s.fail(fmt.Errorf("node %d delivered a message nobody published: %x seq %d", n.idx, m.Origin[:4], m.Seq))
		return
	}
	if prev, ok := n.last[m.Origin]; ok && m.Seq <= prev {
		s.outOfOrder++
	}
	n.last[m.Origin] = m.Seq
	k := [2]int{n.idx, i}
	if s.got[k] {
		s.appDups++
		return
	}
	s.got[k] = true
	info := s.msgs[gossip.MsgID{Origin: m.Origin, Seq: m.Seq}]
	s.deliveredAt = append(s.deliveredAt, delivered{node: n.idx, msg: i, hops: m.Hops, latency: s.l.Now() - info.at})
}

func (s *simulation) churnOne() {
	if len(s.live) < 3 {
		return
	}
	r := s.l.Rand()
	j := r.IntN(len(s.live))
	n := s.live[j]
	s.live = slices.Delete(s.live, j, j+1)
	n.alive = false
	// Its neighbours' connections to it time out.
	for _, o := range s.live {
		e, l := o.t.Neighbours()
		if slices.Contains(e, n.id) || slices.Contains(l, n.id) {
			s.peerDown(o, n.id, detectDelay)
		}
	}
	s.spawn()
}

func (s *simulation) result(before, after runtime.MemStats) Result {
	cfg := s.cfg
	res := Result{
		Nodes: cfg.Nodes, Messages: cfg.Messages, Churn: cfg.Churn, Loss: cfg.Loss, Seed: cfg.Seed,
		AppDuplicates: s.appDups, OutOfOrder: s.outOfOrder, FramesTotal: s.frames,
		VirtualSeconds: s.l.Now().Seconds(),
	}
	heap := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	res.HeapBytesPerNode = max(heap, 0) / int64(cfg.Nodes)
	eligible := func(n *node, info msgInfo) bool {
		return n.alive && n.idx != info.origin && n.joinedAt+settle <= info.at
	}
	for _, info := range s.msgs {
		for _, n := range s.nodes {
			if eligible(n, info) {
				res.Expected++
			}
		}
	}
	byIdx := make([]msgInfo, len(s.idx))
	for id, i := range s.idx {
		byIdx[i] = s.msgs[id]
	}
	var hops, lat []float64
	for _, d := range s.deliveredAt {
		if eligible(s.nodes[d.node], byIdx[d.msg]) {
			res.Deliveries++
		}
		hops = append(hops, float64(d.hops))
		lat = append(lat, float64(d.latency)/float64(time.Millisecond))
	}
	if res.Expected > 0 {
		res.DeliveryRatio = float64(res.Deliveries) / float64(res.Expected)
	}
	res.HopsP50, res.HopsP99 = percentile(hops, 50), percentile(hops, 99)
	res.LatencyMsP50, res.LatencyMsP99 = percentile(lat, 50), percentile(lat, 99)
	var sent int64
	var degree []float64
	for _, n := range s.nodes {
		sent += n.sent
		m := n.r.Metrics()
		addMetrics(&res.Metrics, m)
		if n.alive {
			e, l := n.t.Neighbours()
			degree = append(degree, float64(len(e)+len(l)))
		}
	}
	res.BytesPerNode = sent / int64(len(s.nodes))
	res.MeshDegreeP50 = percentile(degree, 50)
	if res.Metrics.Delivered > 0 {
		res.DupPerDelivery = float64(res.Metrics.MsgsReceived) / float64(res.Metrics.Delivered)
	}
	return res
}

func addMetrics(a *gossip.Metrics, b gossip.Metrics) {
	a.Frames += b.Frames
	a.MsgsReceived += b.MsgsReceived
	a.Delivered += b.Delivered
	a.Published += b.Published
	a.Duplicates += b.Duplicates
	a.Forged += b.Forged
	a.Stale += b.Stale
	a.Oversized += b.Oversized
	a.Malformed += b.Malformed
	a.Flood += b.Flood
	a.Blocked += b.Blocked
	a.UnknownTopic += b.UnknownTopic
	a.Late += b.Late
	a.SubscriberDrops += b.SubscriberDrops
	a.MissingFull += b.MissingFull
	a.Pruned += b.Pruned
	a.GapsSkipped += b.GapsSkipped
	a.RepairFailed += b.RepairFailed
	a.GraftsSent += b.GraftsSent
	a.IHavesSent += b.IHavesSent
	a.MsgsSent += b.MsgsSent
	a.JoinsSent += b.JoinsSent
	a.BytesSent += b.BytesSent
}

func percentile(v []float64, p float64) float64 {
	if len(v) == 0 {
		return 0
	}
	slices.Sort(v)
	i := int(math.Ceil(p/100*float64(len(v)))) - 1
	return v[max(0, min(i, len(v)-1))]
}
