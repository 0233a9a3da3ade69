package sdk

import (
	"sync"
	"time"

	"github.com/ferrynet/ferry/sdk/internal/icepath"
)

// A path is what one session runs on, beyond a socket the endpoint owns: an
// ICE path found through signaling, or a packet conn from a RedialFunc. It
// is closed, once, when the session ends.
type path struct {
	once    sync.Once
	release func()
	ice     *icepath.Agent // nil unless the path came from ICE
	took    time.Duration  // from the start of Dial (or the offer) to the path
}

func (p *path) close() {
	if p == nil {
		return
	}
	p.once.Do(func() {
		if p.release != nil {
			p.release()
		}
	})
}

// Path describes the network path a connection currently runs on.
type Path struct {
	// Relayed is true when the path goes through a TURN relay.
	Relayed bool
	// LocalCandidate and RemoteCandidate are the ICE candidate types of the
	// selected pair: host, srflx, prflx or relay ("" when the session was
	// dialed without ICE, at a known address).
	LocalCandidate, RemoteCandidate string
	// LocalAddr and RemoteAddr are the pair's addresses.
	LocalAddr, RemoteAddr string
	// Relay is the relay server's address and RelayProtocol how this side
	// reaches it (udp, tcp, tls or dtls), when the path is relayed: the
	// TURN URL's host:port when this side's candidate is relayed, else the
	// peer's allocation on its relay, which this side reaches over udp.
	Relay, RelayProtocol string
	// RTT is the smoothed heartbeat round-trip time.
	RTT time.Duration
	// ConnectTime is how long it took to find this path and establish the
	// session on it.
	ConnectTime time.Duration
	// SelectedAt is when ICE selected the current pair (zero when the
	// session was dialed without ICE), and Upgrades how many times this
	// session's path moved from the relay to a direct pair.
	SelectedAt time.Time
	Upgrades   int
	// RelayBytes counts the application bytes (the session's packets, not
	// ICE checks or TURN's own messages) that crossed a relay through this
	// side's own relay allocations on the current ICE path: both ways over
	// a UDP relay, only those sent over TCP, none over TLS. Packets that
	// this side sends straight to the peer's allocation count on the
	// peer's side, so the two sides' sum is what the connection put
	// through relays.
	RelayBytes int64
}

// Kind returns "relay", "direct", or "none" for the zero Path (no session:
// the connection is connecting, reconnecting or closed).
func (p Path) Kind() string {
	switch {
	case p.Relayed:
		return "relay"
	case p.LocalAddr == "" && p.RemoteAddr == "":
		return "none"
	}
	return "direct"
}

// Path returns the path the connection runs on now (the zero Path while it
// has no session).
func (c *Conn) Path() Path {
	c.mu.Lock()
	s, rtt := c.sess, c.srtt
	c.mu.Unlock()
	var p Path
	if s == nil {
		return p
	}
	p.RTT = rtt
	p.LocalAddr, p.RemoteAddr = s.qc.LocalAddr().String(), s.qc.RemoteAddr().String()
	if s.path == nil {
		return p
	}
	p.ConnectTime = s.path.took
	if s.path.ice == nil {
		return p
	}
	if inf, ok := s.path.ice.Path(); ok {
		p.Relayed = inf.Relayed
		p.LocalCandidate, p.RemoteCandidate = inf.LocalType, inf.RemoteType
		p.LocalAddr, p.RemoteAddr = inf.LocalAddr, inf.RemoteAddr
		p.Relay, p.RelayProtocol = inf.RelayAddr, inf.RelayProtocol
		p.SelectedAt, p.Upgrades = inf.SelectedAt, inf.Upgrades
		p.RelayBytes = inf.RelayBytes
	}
	return p
}
