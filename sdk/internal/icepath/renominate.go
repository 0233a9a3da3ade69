package icepath

import (
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/stun/v4"
)

// This file holds renomination: how the controlling side moves a relayed
// path to a direct pair that answers, and never away from a direct one.

// pionRenominationOff is the interval given to pion's automatic
// renomination: it never decides by itself within a connection's life.
const pionRenominationOff = 100 * 365 * 24 * time.Hour

// pairRef names a candidate pair to renominate.
type pairRef struct{ local, remote ice.Candidate }

// onBindingRequest runs inside the controlling agent's event loop for
// every Binding request the peer sends (its keepalives on the selected
// pair come every KeepaliveInterval). pion's RenominateCandidate must run
// in that loop, so a renomination that upgrade decided is sent from here.
func (ag *Agent) onBindingRequest(_ *stun.Message, _, _ ice.Candidate, _ *ice.CandidatePair) bool {
	if t := ag.upgradeTo.Swap(nil); t != nil {
		if err := ag.a.RenominateCandidate(t.local, t.remote); err != nil {
			ag.log.Debug("icepath: renomination failed", "err", err)
		}
	}
	return false // never select a pair because of a request
}

// upgrade runs on the controlling side while the selected pair is relayed:
// it looks for a direct pair that has answered a check lately and, when
// there is one, has it renominated (the best by ICE pair priority). It
// returns once the path is direct, or when the agent closes. A direct
// path is never renominated: if it dies, reconnecting is the caller's
// business, with a fresh agent.
func (ag *Agent) upgrade() {
	defer ag.wg.Done()
	start := time.Now()
	for {
		interval := ag.cfg.Timing.UpgradeCheck
		if time.Since(start) > 10*time.Second {
			interval = max(interval, time.Second)
		}
		select {
		case <-ag.done:
			return
		case <-time.After(interval):
		}
		if info, ok := ag.Path(); !ok || !info.Relayed {
			return
		}
		if t := ag.bestDirectPair(); t != nil {
			ag.upgradeTo.Store(t)
		}
	}
}

// bestDirectPair returns the succeeded pair of two non-relayed candidates
// with the highest priority that answered a check in the last few
// seconds, or nil. A peer-reflexive remote candidate at the address of one
// of the peer's relayed candidates (learnt from a check that came through
// the relay before the candidate itself came through signaling) counts as
// relayed.
func (ag *Agent) bestDirectPair() *pairRef {
	locals, err := ag.a.GetLocalCandidates()
	if err != nil {
		return nil
	}
	remotes, err := ag.a.GetRemoteCandidates()
	if err != nil {
		return nil
	}
	byID := func(cs []ice.Candidate, id string) ice.Candidate {
		for _, c := range cs {
			if c.ID() == id {
				return c
			}
		}
		return nil
	}
	var (
		best     *pairRef
		bestPrio uint64
	)
	for _, st := range ag.a.GetCandidatePairsStats() {
		if st.State != ice.CandidatePairStateSucceeded || time.Since(st.LastResponseTimestamp) > 3*time.Second {
			continue
		}
		l, r := byID(locals, st.LocalCandidateID), byID(remotes, st.RemoteCandidateID)
		if l == nil || r == nil || l.Type() == ice.CandidateTypeRelay || r.Type() == ice.CandidateTypeRelay || ag.remoteRelay(r) {
			continue
		}
		if p := pairPriority(l.Priority(), r.Priority()); best == nil || p > bestPrio {
			best, bestPrio = &pairRef{l, r}, p
		}
	}
	return best
}

// pairPriority is RFC 8445's pair priority, seen from the controlling side
// (g: the local candidate's priority, d: the remote's).
func pairPriority(g, d uint32) uint64 {
	p := uint64(min(g, d))<<32 + 2*uint64(max(g, d))
	if g > d {
		p++
	}
	return p
}
