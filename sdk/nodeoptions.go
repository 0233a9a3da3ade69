package sdk

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"time"

	"github.com/pion/transport/v5"

	"github.com/ferrynet/ferry/sdk/internal/icepath"
)

// A RelayPolicy says when a Node's connections may use a TURN relay. The
// zero value is RelayAuto.
type RelayPolicy int

// Relay policies.
const (
	// RelayAuto uses a direct path when the NATs allow one and a relay
	// otherwise; a relayed connection keeps probing direct pairs and moves
	// to one as soon as it answers.
	RelayAuto RelayPolicy = iota
	// RelayNever never relays: peers that cannot reach each other directly
	// fail to connect (ErrNoPath).
	RelayNever
	// RelayAlways uses relayed paths only (for privacy, or to test the
	// relay path).
	RelayAlways
)

// String returns "auto", "never" or "always" (what ParseRelayPolicy reads).
func (p RelayPolicy) String() string {
	switch p {
	case RelayNever:
		return "never"
	case RelayAlways:
		return "always"
	default:
		return "auto"
	}
}

func (p RelayPolicy) internal() icepath.Policy {
	switch p {
	case RelayNever:
		return icepath.PolicyNever
	case RelayAlways:
		return icepath.PolicyAlways
	default:
		return icepath.PolicyAuto
	}
}

// ParseRelayPolicy parses "auto" (or ""), "never" or "always".
func ParseRelayPolicy(s string) (RelayPolicy, error) {
	switch s {
	case "auto", "":
		return RelayAuto, nil
	case "never":
		return RelayNever, nil
	case "always":
		return RelayAlways, nil
	}
	return 0, fmt.Errorf("sdk: relay policy %q: want auto, never or always", s)
}

// ICETiming tunes how fast ICE settles on a path. A zero field keeps the
// default given in its comment; sdk/internal/icepath/README.md says why the defaults
// differ from pion's.
type ICETiming struct {
	// CheckInterval is the connectivity-check pacing (default 25 ms; pion:
	// 200 ms).
	CheckInterval time.Duration
	// CheckWindow is how long a pair is checked before it is given up
	// (default 2 s; pion: 7 checks, 1.4 s at its pacing). It must cover the
	// time the peer's candidates take to arrive through signaling and open
	// its NAT, or pairs that would work fail before they can.
	CheckWindow time.Duration
	// SrflxWait and PrflxWait delay accepting a server- or peer-reflexive
	// pair, so that a better one can win (default 0 and 0; pion: 500 ms and
	// 1 s).
	SrflxWait, PrflxWait time.Duration
	// RelayWait delays accepting a relayed pair, giving hole punching time
	// to succeed first (default 500 ms; pion: 2 s). While it runs the
	// accepting side keeps checking its direct pairs, which it stops doing
	// once a pair is selected: with no wait, a direct pair whose first
	// checks met a still-closed NAT could stay undiscovered.
	RelayWait time.Duration
	// STUNTimeout bounds gathering a server-reflexive candidate (default
	// 2 s).
	STUNTimeout time.Duration
	// DisconnectedTimeout and FailedTimeout are how long a selected pair
	// may go silent before ICE calls it disconnected (default 3 s) and
	// failed (default 10 s); a failed path makes the connection reconnect.
	DisconnectedTimeout, FailedTimeout time.Duration
	// KeepaliveInterval keeps NAT bindings open (default 1 s).
	KeepaliveInterval time.Duration
	// UpgradeCheck is how often the dialing side, while the path is
	// relayed, looks for a direct pair to move it to (default 250 ms; at
	// most every second once the path is 10 s old).
	UpgradeCheck time.Duration
}

func (t ICETiming) internal() icepath.Timing {
	return icepath.Timing{
		CheckInterval:       t.CheckInterval,
		CheckWindow:         t.CheckWindow,
		SrflxWait:           t.SrflxWait,
		PrflxWait:           t.PrflxWait,
		RelayWait:           t.RelayWait,
		STUNTimeout:         t.STUNTimeout,
		DisconnectedTimeout: t.DisconnectedTimeout,
		FailedTimeout:       t.FailedTimeout,
		KeepaliveInterval:   t.KeepaliveInterval,
		UpgradeCheck:        t.UpgradeCheck,
	}
}

// nodeConfig holds what only a Node uses.
type nodeConfig struct {
	identity     *Identity
	identityFile string
	rendezvous   []string
	rendezvousCA string
	rvTLS        *tls.Config
	policy       RelayPolicy
	timing       ICETiming
	icenet       transport.Net
	dialTCP      func(ctx context.Context, network, addr string) (net.Conn, error)
	loopback     bool
	ipFilter     func(net.IP) bool
	offerRate    float64
	offerBurst   int
	loginTimeout time.Duration
	lan          lanMode      // see lan.go
	portMapping  *PortMapping // see portmap.go
}

// DefaultLoginTimeout bounds the login to each rendezvous server in New.
const DefaultLoginTimeout = 15 * time.Second

// WithLoginTimeout bounds the login to each rendezvous server in New
// (default DefaultLoginTimeout).
func WithLoginTimeout(d time.Duration) NodeOption {
	return nodeOpt(func(c *config) { c.node.loginTimeout = d })
}

// WithIdentity sets the node's identity. Without it or WithIdentityFile, a
// node uses a fresh identity kept in memory only, whose PeerID changes on
// every start.
func WithIdentity(id *Identity) NodeOption { return nodeOpt(func(c *config) { c.node.identity = id }) }

// WithIdentityFile loads the node's identity from path, creating the key
// (mode 0600) when the file does not exist. WithIdentity wins over it.
func WithIdentityFile(path string) NodeOption {
	return nodeOpt(func(c *config) { c.node.identityFile = path })
}

// WithRendezvous adds rendezvous servers (wss://host[:port], or ws:// in
// labs); New needs at least one. The node logs in to the first that
// answers; the others are fallbacks for when it cannot be reached at start.
func WithRendezvous(urls ...string) NodeOption {
	return nodeOpt(func(c *config) { c.node.rendezvous = append(c.node.rendezvous, urls...) })
}

// WithRendezvousCA trusts the PEM certificates in file, in addition to the
// system roots, for the rendezvous servers.
func WithRendezvousCA(file string) NodeOption {
	return nodeOpt(func(c *config) { c.node.rendezvousCA = file })
}

// WithRendezvousTLS replaces the TLS configuration used to reach the
// rendezvous servers.
func WithRendezvousTLS(t *tls.Config) NodeOption {
	return nodeOpt(func(c *config) { c.node.rvTLS = t })
}

// WithRelayPolicy sets when connections may use a relay (default RelayAuto).
func WithRelayPolicy(p RelayPolicy) NodeOption {
	return nodeOpt(func(c *config) { c.node.policy = p })
}

// WithICETiming tunes ICE (zero fields keep the defaults).
func WithICETiming(t ICETiming) NodeOption { return nodeOpt(func(c *config) { c.node.timing = t }) }

// WithNetwork makes the node open its ICE sockets through n and its TCP
// connections to the rendezvous through dial, instead of the host's
// network. Tests use it to place a node in a network namespace or a
// virtual network.
func WithNetwork(n transport.Net, dial func(ctx context.Context, network, addr string) (net.Conn, error)) NodeOption {
	return nodeOpt(func(c *config) { c.node.icenet, c.node.dialTCP = n, dial })
}

// WithLoopbackCandidates lets ICE use loopback addresses, for peers on one
// host.
func WithLoopbackCandidates() NodeOption { return nodeOpt(func(c *config) { c.node.loopback = true }) }

// WithCandidateFilter restricts the local addresses ICE gathers host
// candidates on (for example, to keep a node off some interfaces).
func WithCandidateFilter(keep func(net.IP) bool) NodeOption {
	return nodeOpt(func(c *config) { c.node.ipFilter = keep })
}

// WithOfferLimit bounds the offers (requests to connect, each of which
// would start an ICE agent and use relay quota) that one sender may make:
// perSecond on average, burst at once (defaults DefaultOfferRate and
// DefaultOfferBurst). Offers beyond it are ignored. Offers from peers that
// WithAllowPeer refuses are declined before any ICE or relay work, and count
// against the limit too.
func WithOfferLimit(perSecond float64, burst int) NodeOption {
	return nodeOpt(func(c *config) { c.node.offerRate, c.node.offerBurst = perSecond, burst })
}
