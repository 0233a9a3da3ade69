package dht

import (
	"fmt"
	"slices"

	"github.com/ferrynet/ferry/dht/kbucket"
	"github.com/ferrynet/ferry/identity"
)

// Lookup defaults.
const (
	// DefaultAlpha is how many requests a lookup (each path of it) keeps in
	// flight.
	DefaultAlpha = 3
	// DefaultBeta is kad-dht's termination parameter: a lookup ends when the
	// β closest candidates it knows have all answered.
	DefaultBeta = 3
	// DefaultPaths is how many disjoint paths a lookup takes: 2, because
	// with 10% Sybil nodes among 10,000 one path found 95.4% of records in
	// the simulator (fewer on other seeds) and two 99.97% (README.md).
	DefaultPaths = 2
)

// LookupConfig parameterises a [Lookup]. Zero fields take the defaults
// ([kbucket.DefaultK], [DefaultAlpha], [DefaultBeta], [DefaultPaths]).
type LookupConfig struct {
	K, Alpha, Beta, Paths int
	// Confirm makes the lookup go on after the β rule until the k closest
	// candidates it knows have all answered, so that [Lookup.Result] holds
	// the k closest live nodes (what a publisher stores on). Without it the
	// lookup ends by the β rule alone, which is enough to find a record or
	// a node, and Result holds the closest that answered by then.
	Confirm bool
}

func (c *LookupConfig) fill() error {
	if c.K == 0 {
		c.K = kbucket.DefaultK
	}
	if c.Alpha == 0 {
		c.Alpha = DefaultAlpha
	}
	if c.Beta == 0 {
		c.Beta = DefaultBeta
	}
	if c.Paths == 0 {
		c.Paths = DefaultPaths
	}
	if c.K < 1 || c.Alpha < 1 || c.Beta < 1 || c.Beta > c.K || c.Paths < 1 || c.Paths > 16 {
		return fmt.Errorf("%w: lookup k %d, alpha %d, beta %d, paths %d", ErrBadOption, c.K, c.Alpha, c.Beta, c.Paths)
	}
	return nil
}

type candState uint8

const (
	heard candState = iota
	waiting
	answered
	failed
)

type candidate struct {
	kbucket.Contact
	state candState
	path  int
	depth int
}

// Lookup is the state machine of one iterative Kademlia lookup. It does no
// I/O and reads no clock: its driver asks [Lookup.Next] whom to query, sends
// the requests, and reports each outcome with [Lookup.Response] or
// [Lookup.Failure] (a timeout, a lost message, an error) until
// [Lookup.Done]. The goroutine driver of [Node] and the simulator's event
// loop drive the same code. A Lookup is not safe for concurrent use.
//
// The lookup keeps its candidates sorted by XOR distance to the target. Each
// path keeps α requests in flight to its closest candidates not yet asked
// and ends when the β closest candidates it knows have answered (kad-dht's
// rule) or when it has nobody left to ask. With several paths (S/Kademlia's
// disjoint lookups) the seeds are dealt out round robin and a contact
// belongs to the first path that hears of it, so the paths never share a
// node.
type Lookup struct {
	target  identity.PeerID
	self    identity.PeerID
	cfg     LookupConfig
	cands   []*candidate // sorted by distance to target
	byID    map[identity.PeerID]*candidate
	flight  []int // per path
	next    int   // round-robin path cursor
	stopped bool
	sent    int
	need    int // candidates that must answer: β, or k with Confirm
}

// NewLookup starts a lookup for target from seeds (typically the closest
// contacts of the node's own table). self is left out of the candidates.
func NewLookup(target, self identity.PeerID, seeds []kbucket.Contact, cfg LookupConfig) (*Lookup, error) {
	if err := cfg.fill(); err != nil {
		return nil, err
	}
	l := &Lookup{
		target: target,
		self:   self,
		cfg:    cfg,
		byID:   make(map[identity.PeerID]*candidate, 4*cfg.K),
		flight: make([]int, cfg.Paths),
		need:   cfg.Beta,
	}
	if cfg.Confirm {
		l.need = cfg.K
	}
	sorted := slices.Clone(seeds)
	slices.SortFunc(sorted, func(a, b kbucket.Contact) int { return l.cmp(a.ID, b.ID) })
	p := 0
	for _, c := range sorted {
		if l.add(c, p, 0) {
			p = (p + 1) % cfg.Paths
		}
	}
	return l, nil
}

// Target returns the key looked up.
func (l *Lookup) Target() identity.PeerID { return l.target }

func (l *Lookup) cmp(a, b identity.PeerID) int {
	for i := range l.target {
		da, db := a[i]^l.target[i], b[i]^l.target[i]
		if da != db {
			if da < db {
				return -1
			}
			return 1
		}
	}
	return 0
}

func (l *Lookup) add(c kbucket.Contact, path, depth int) bool {
	if c.ID == l.self || c.ID.IsZero() {
		return false
	}
	if _, ok := l.byID[c.ID]; ok {
		return false
	}
	cand := &candidate{Contact: c, path: path, depth: depth}
	i, _ := slices.BinarySearchFunc(l.cands, c.ID, func(e *candidate, id identity.PeerID) int { return l.cmp(e.ID, id) })
	l.cands = slices.Insert(l.cands, i, cand)
	l.byID[c.ID] = cand
	return true
}

// pathDone reports whether path p has ended: the β closest of its live
// candidates answered, or nothing is left to ask and nothing in flight.
func (l *Lookup) pathDone(p int) bool {
	seen := 0
	for _, c := range l.cands {
		if c.path != p || c.state == failed {
			continue
		}
		if c.state != answered {
			break // one of the β closest has not answered yet
		}
		if seen++; seen == l.need {
			return true
		}
	}
	return l.flight[p] == 0 && !l.hasHeard(p)
}

func (l *Lookup) hasHeard(p int) bool {
	for _, c := range l.cands {
		if c.path == p && c.state == heard {
			return true
		}
	}
	return false
}

// Next returns the next contact to query, if the lookup wants one now, and
// marks it in flight. Call it until it returns false, then again after each
// Response or Failure.
func (l *Lookup) Next() (kbucket.Contact, bool) {
	if l.stopped {
		return kbucket.Contact{}, false
	}
	for range l.cfg.Paths {
		p := l.next
		l.next = (l.next + 1) % l.cfg.Paths
		if l.flight[p] >= l.cfg.Alpha || l.pathDone(p) {
			continue
		}
		for _, c := range l.cands {
			if c.path == p && c.state == heard {
				c.state = waiting
				l.flight[p]++
				l.sent++
				return c.Contact, true
			}
		}
	}
	return kbucket.Contact{}, false
}

// Response reports that id answered with closer contacts. It returns the
// hop of the answer: 1 for a seed, one more than its informant for a node
// learned from another's answer. An answer from a node not in flight is
// ignored (hop 0).
func (l *Lookup) Response(id identity.PeerID, closer []kbucket.Contact) int {
	c := l.byID[id]
	if c == nil || c.state != waiting {
		return 0
	}
	c.state = answered
	l.flight[c.path]--
	for _, n := range closer {
		l.add(n, c.path, c.depth+1)
	}
	return c.depth + 1
}

// Failure reports that id did not answer.
func (l *Lookup) Failure(id identity.PeerID) {
	c := l.byID[id]
	if c == nil || c.state != waiting {
		return
	}
	c.state = failed
	l.flight[c.path]--
}

// Stop ends the lookup early (its driver found what it looked for).
// Requests still in flight may be reported or dropped.
func (l *Lookup) Stop() { l.stopped = true }

// Done reports whether the lookup has ended: stopped, or every path done.
// Requests may still be in flight after a stop.
func (l *Lookup) Done() bool {
	if l.stopped {
		return true
	}
	for p := range l.cfg.Paths {
		if !l.pathDone(p) {
			return false
		}
	}
	return true
}

// InFlight returns how many requests await an outcome.
func (l *Lookup) InFlight() int {
	n := 0
	for _, f := range l.flight {
		n += f
	}
	return n
}

// Sent returns how many requests the lookup asked for.
func (l *Lookup) Sent() int { return l.sent }

// Result returns the k closest candidates that answered, closest first.
func (l *Lookup) Result() []kbucket.Contact {
	var out []kbucket.Contact
	for _, c := range l.cands {
		if c.state == answered {
			out = append(out, c.Contact)
			if len(out) == l.cfg.K {
				break
			}
		}
	}
	return out
}

// Answered reports whether id answered during the lookup.
func (l *Lookup) Answered(id identity.PeerID) bool {
	c := l.byID[id]
	return c != nil && c.state == answered
}

// Heard returns the hop at which id was first learned (0 for a seed) and
// whether it was heard of at all.
func (l *Lookup) Heard(id identity.PeerID) (int, bool) {
	c := l.byID[id]
	if c == nil {
		return 0, false
	}
	return c.depth, true
}
