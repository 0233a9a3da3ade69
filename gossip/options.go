package gossip

import (
	"fmt"
	"time"
)

// Defaults (README.md explains each choice against GossipSub's and
// iroh-gossip's numbers).
const (
	DefaultMaxData     = 4096 // bytes of data per message, as iroh-gossip
	DefaultMeshTarget  = 5    // neighbours a node dials for, as HyParView's active view
	DefaultMeshMax     = 12   // neighbours a node accepts, GossipSub's D_hi
	DefaultPassiveMax  = 30   // candidates kept per topic, as HyParView's passive view
	DefaultIHaveWait   = 500 * time.Millisecond
	DefaultGraftRetry  = 500 * time.Millisecond
	DefaultGapWait     = 3 * time.Second
	DefaultCacheTTL    = 30 * time.Second // messages kept to answer GRAFTs
	DefaultCacheBytes  = 8 << 20
	DefaultOriginTTL   = 10 * time.Minute
	DefaultMaxOrigins  = 10_000
	DefaultSeenWindow  = 1024 // sequence numbers per origin remembered exactly
	DefaultRate        = 1000 // frames per second per neighbour
	DefaultBurst       = 2000
	DefaultPruneScore  = -100
	DefaultBlockFor    = 10 * time.Minute
	DefaultSubBuffer   = 1024
	DefaultMaxHeld     = 256 // messages held per origin while a gap is open
	defaultJoinTimeout = 5 * time.Second
)

// Penalties applied to a neighbour's score per offence.
const (
	PenaltyForged    = -50
	PenaltyOversized = -50
	PenaltyMalformed = -50
	PenaltyStale     = -20
	PenaltyFlood     = -1
)

type config struct {
	clock      Clock
	maxData    int
	meshTarget int
	meshMax    int
	passiveMax int
	ihaveWait  time.Duration
	graftRetry time.Duration
	gapWait    time.Duration
	cacheTTL   time.Duration
	cacheBytes int
	originTTL  time.Duration
	maxOrigins int
	rate       float64
	burst      float64
	pruneScore float64
	blockFor   time.Duration
	subBuffer  int
	maxHeld    int
}

// Option configures a [Router].
type Option func(*config) error

// WithClock sets the clock and timers (default the real ones); the
// simulator passes its virtual clock.
func WithClock(c Clock) Option {
	return func(cfg *config) error {
		if c == nil {
			return fmt.Errorf("gossip: nil clock")
		}
		cfg.clock = c
		return nil
	}
}

// WithMaxData sets the largest message data accepted, published or
// forwarded (default [DefaultMaxData]; at most [MaxWireData]).
func WithMaxData(n int) Option {
	return func(cfg *config) error {
		if n < 1 || n > MaxWireData {
			return fmt.Errorf("gossip: max data %d, want 1..%d", n, MaxWireData)
		}
		cfg.maxData = n
		return nil
	}
}

// WithMesh sets how many neighbours a node dials for and how many it
// accepts per topic (defaults [DefaultMeshTarget], [DefaultMeshMax]).
func WithMesh(target, maxPeers int) Option {
	return func(cfg *config) error {
		if target < 1 || maxPeers < target || maxPeers > 1000 {
			return fmt.Errorf("gossip: mesh target %d, max %d", target, maxPeers)
		}
		cfg.meshTarget, cfg.meshMax = target, maxPeers
		return nil
	}
}

// WithRate sets the frames per second and the burst accepted from one
// neighbour; frames beyond are dropped and counted as a flood.
func WithRate(perSecond, burst float64) Option {
	return func(cfg *config) error {
		if perSecond <= 0 || burst < 1 {
			return fmt.Errorf("gossip: rate %v burst %v", perSecond, burst)
		}
		cfg.rate, cfg.burst = perSecond, burst
		return nil
	}
}

// WithGapWait sets how long a message is held back waiting for an earlier
// one of the same origin (default [DefaultGapWait]).
func WithGapWait(d time.Duration) Option {
	return func(cfg *config) error {
		if d < 0 {
			return fmt.Errorf("gossip: gap wait %v", d)
		}
		cfg.gapWait = d
		return nil
	}
}

// WithMaxHeld sets how many messages of one origin are held back while a
// gap before them is open (default [DefaultMaxHeld]); one more skips the
// gap at once. Raise it with [WithGapWait] for fast origins.
func WithMaxHeld(n int) Option {
	return func(cfg *config) error {
		if n < 1 || n > 1<<20 {
			return fmt.Errorf("gossip: max held %d, want 1..%d", n, 1<<20)
		}
		cfg.maxHeld = n
		return nil
	}
}

// WithCacheTTL sets how long whole messages are kept to answer GRAFTs
// (default [DefaultCacheTTL]).
func WithCacheTTL(d time.Duration) Option {
	return func(cfg *config) error {
		if d <= 0 {
			return fmt.Errorf("gossip: cache TTL %v", d)
		}
		cfg.cacheTTL = d
		return nil
	}
}

func defaults() config {
	return config{
		clock:      realClock{},
		maxData:    DefaultMaxData,
		meshTarget: DefaultMeshTarget,
		meshMax:    DefaultMeshMax,
		passiveMax: DefaultPassiveMax,
		ihaveWait:  DefaultIHaveWait,
		graftRetry: DefaultGraftRetry,
		gapWait:    DefaultGapWait,
		cacheTTL:   DefaultCacheTTL,
		cacheBytes: DefaultCacheBytes,
		originTTL:  DefaultOriginTTL,
		maxOrigins: DefaultMaxOrigins,
		rate:       DefaultRate,
		burst:      DefaultBurst,
		pruneScore: DefaultPruneScore,
		blockFor:   DefaultBlockFor,
		subBuffer:  DefaultSubBuffer,
		maxHeld:    DefaultMaxHeld,
	}
}

// Clock gives the router the time and its timers.
type Clock interface {
	Now() time.Time
	// AfterFunc calls f after d, on any goroutine.
	AfterFunc(d time.Duration, f func())
}

type realClock struct{}

func (realClock) Now() time.Time                      { return time.Now() }
func (realClock) AfterFunc(d time.Duration, f func()) { time.AfterFunc(d, f) }
