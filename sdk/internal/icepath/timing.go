package icepath

import "time"

// This file holds Timing: how fast a path is chosen, and its defaults.

// Timing tunes how fast a path is chosen. It is the SDK's ICETiming, whose
// fields document what each does, the default and why; a zero field takes
// the default set in withDefaults. README.md has the table.
type Timing struct {
	CheckInterval                      time.Duration // connectivity-check pacing
	CheckWindow                        time.Duration // how long a pair is checked
	SrflxWait, PrflxWait               time.Duration // delay before accepting reflexive pairs
	RelayWait                          time.Duration // delay before accepting a relayed pair
	STUNTimeout                        time.Duration // bounds gathering a server-reflexive candidate
	DisconnectedTimeout, FailedTimeout time.Duration // silence before disconnected, failed
	KeepaliveInterval                  time.Duration // keeps NAT bindings open; paces renomination
	UpgradeCheck                       time.Duration // how often a relayed path looks for a direct pair
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
