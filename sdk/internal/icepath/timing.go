package icepath

import "time"

// This file holds Timing: how fast a path is chosen, and its defaults.

// Timing tunes how fast a path is chosen. The zero value picks the defaults
// documented on each field; see docs/ARCHITECTURE.md for why.
type Timing struct {
	// CheckInterval is the connectivity-check pacing (default 25 ms; pion: 200 ms).
	CheckInterval time.Duration
	// CheckWindow is how long a pair is checked before it is given up
	// (default 2 s; pion: 7 checks, 1.4 s at its pacing). It must cover
	// the time the peer's candidates take to arrive through signaling and
	// open its NAT, or pairs that would work fail before they can.
	CheckWindow time.Duration
	// SrflxWait and PrflxWait delay accepting a server- or peer-reflexive
	// pair, so a better one can win (default 0 and 0; pion: 500 ms, 1 s).
	SrflxWait, PrflxWait time.Duration
	// RelayWait delays accepting a relayed pair, giving hole punching time
	// to succeed first (default 500 ms; pion: 2 s).
	RelayWait time.Duration
	// STUNTimeout bounds gathering a server-reflexive candidate (default 2 s).
	STUNTimeout time.Duration
	// DisconnectedTimeout and FailedTimeout: how long a selected pair may
	// go silent before ICE calls it disconnected (default 3 s) and failed
	// (default 10 s).
	DisconnectedTimeout, FailedTimeout time.Duration
	// KeepaliveInterval (default 1 s) keeps NAT bindings open.
	KeepaliveInterval time.Duration
	// UpgradeCheck is how often the controlling side, while the path is
	// relayed, looks for a direct pair to move it to (default 250 ms; every
	// second at most once the path is 10 s old).
	UpgradeCheck time.Duration
}

func (t Timing) withDefaults() Timing {
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&t.CheckInterval, 25*time.Millisecond)
	def(&t.CheckWindow, 2*time.Second)
	def(&t.RelayWait, 500*time.Millisecond)
	def(&t.STUNTimeout, 2*time.Second)
	def(&t.DisconnectedTimeout, 3*time.Second)
	def(&t.FailedTimeout, 10*time.Second)
	def(&t.KeepaliveInterval, time.Second)
	def(&t.UpgradeCheck, 250*time.Millisecond)
	return t
}
