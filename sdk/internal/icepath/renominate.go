package icepath

import (
	"cmp"
	"slices"
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

// Probing failed direct pairs while relayed (README, "Probing"): a round
// sends one nominating Binding request on each of at most maxProbePairs
// failed direct pairs. Rounds follow probeBackoff, then come every
// probeSteady, and every probeSlow once the path has been relayed for
// probeSlowAfter; a new remote candidate starts the schedule again.
const (
	maxProbePairs  = 16
	probeSteady    = 5 * time.Second
	probeSlow      = 15 * time.Second
	probeSlowAfter = time.Minute
)

var probeBackoff = []time.Duration{0, time.Second, 2 * time.Second, 4 * time.Second}

// onBindingRequest runs inside the controlling agent's event loop for
// every Binding request the peer sends (its keepalives on the selected
// pair come every KeepaliveInterval). pion's RenominateCandidate must run
// in that loop, so a renomination that upgrade decided, and a round of
// probes, are sent from here.
func (ag *Agent) onBindingRequest(_ *stun.Message, _, _ ice.Candidate, _ *ice.CandidatePair) bool {
	if t := ag.upgradeTo.Swap(nil); t != nil {
		if err := ag.a.RenominateCandidate(t.local, t.remote); err != nil {
			ag.log.Debug("icepath: renomination failed", "err", err)
		}
	}
	if ps := ag.probeTo.Swap(nil); ps != nil {
		// A nominating request on a failed pair is a fresh check of it:
		// if it answers, pion moves the path there at once (a
		// renomination's success response selects the pair), and the
		// peer follows once its own triggered check on the pair succeeds.
		for _, p := range *ps {
			if err := ag.a.RenominateCandidate(p.local, p.remote); err != nil {
				ag.log.Debug("icepath: probe failed", "err", err)
			}
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
//
// Direct pairs that failed their checks before the relay won are not
// checked by pion again (its checks after selection skip failed pairs), so
// upgrade also has them probed again, on the schedule above, until one
// answers.
func (ag *Agent) upgrade() {
	defer ag.wg.Done()
	start := time.Now()
	round, nextProbe := 0, start
	for {
		interval := ag.cfg.Timing.UpgradeCheck
		if time.Since(start) > 10*time.Second {
			interval = max(interval, time.Second)
		}
		select {
		case <-ag.done:
			return
		case <-ag.changed:
			round, nextProbe = 0, time.Now()
		case <-time.After(interval):
		}
		if info, ok := ag.Path(); !ok || !info.Relayed {
			return
		}
		if t := ag.bestDirectPair(); t != nil {
			ag.upgradeTo.Store(t)
			continue
		}
		if now := time.Now(); !now.Before(nextProbe) {
			if ps := ag.failedDirectPairs(); len(ps) > 0 {
				ag.probeTo.Store(&ps)
				ag.probes.Add(int64(len(ps)))
			}
			round++
			nextProbe = now.Add(probeDelay(round, now.Sub(start)))
		}
	}
}

// probeDelay is the wait before probe round round+1 (counting from 0),
// relayed for so long.
func probeDelay(round int, relayed time.Duration) time.Duration {
	switch {
	case round < len(probeBackoff):
		return probeBackoff[round]
	case relayed < probeSlowAfter:
		return probeSteady
	}
	return probeSlow
}

// direct reports whether a pair of these candidates is direct: neither is
// relayed, nor is the remote one peer-reflexive at the address of the
// peer's relayed candidate.
func (ag *Agent) direct(l, r ice.Candidate) bool {
	return l.Type() != ice.CandidateTypeRelay && r.Type() != ice.CandidateTypeRelay && !ag.remoteRelay(r)
}

// failedDirectPairs returns the failed direct pairs, at most
// maxProbePairs of them, highest pair priority first.
func (ag *Agent) failedDirectPairs() []pairRef {
	locals, remotes, ok := ag.candidates()
	if !ok {
		return nil
	}
	var ps []pairRef
	for _, st := range ag.a.GetCandidatePairsStats() {
		if st.State != ice.CandidatePairStateFailed {
			continue
		}
		l, r := byID(locals, st.LocalCandidateID), byID(remotes, st.RemoteCandidateID)
		if l != nil && r != nil && ag.direct(l, r) {
			ps = append(ps, pairRef{l, r})
		}
	}
	slices.SortFunc(ps, func(x, y pairRef) int {
		return cmp.Compare(pairPriority(y.local.Priority(), y.remote.Priority()), pairPriority(x.local.Priority(), x.remote.Priority()))
	})
	return ps[:min(len(ps), maxProbePairs)]
}

func (ag *Agent) candidates() (locals, remotes []ice.Candidate, ok bool) {
	locals, err := ag.a.GetLocalCandidates()
	if err != nil {
		return nil, nil, false
	}
	remotes, err = ag.a.GetRemoteCandidates()
	if err != nil {
		return nil, nil, false
	}
	return locals, remotes, true
}

func byID(cs []ice.Candidate, id string) ice.Candidate {
	for _, c := range cs {
		if c.ID() == id {
			return c
		}
	}
	return nil
}

// bestDirectPair returns the succeeded pair of two non-relayed candidates
// with the highest priority that answered a check in the last few
// seconds, or nil. A peer-reflexive remote candidate at the address of one
// of the peer's relayed candidates (learnt from a check that came through
// the relay before the candidate itself came through signaling) counts as
// relayed.
func (ag *Agent) bestDirectPair() *pairRef {
	locals, remotes, ok := ag.candidates()
	if !ok {
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
		if l == nil || r == nil || !ag.direct(l, r) {
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
