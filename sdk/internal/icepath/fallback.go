package icepath

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/stun/v4"
)

// This file holds the fallback: what both sides do when the selected pair
// dies under a running session (a direct path blocked, the peer's NAT
// rebound to a new address), so that the session moves to a pair that
// still works instead of failing ICE and reconnecting from scratch
// (README, "Rebinding and fallback").
//
// The selected pair is dead once no STUN has crossed it (the peer's
// requests on it, answers to ours) for fallbackSilence: both sides send a
// keepalive on it every KeepaliveInterval, so that is two keepalives of
// each side lost in a row.
// The controlling side checks every pair that has not failed once per
// KeepaliveInterval (pion's automatic renomination keepalives), so the
// controlled side soon hears a Binding request on a pair that works:
//   - the controlled side, whose selected pair is dead, selects the pair
//     that request came on (a direct one at once; a relayed one only once
//     the pair has been dead for a keepalive longer, so that a direct pair
//     that works gets its chance first);
//   - its keepalives then come on that pair, and the controlling side,
//     whose selected pair is dead too, renominates the pair they come on:
//     both sides end on the same pair, and the controlling side's choice
//     (the nomination) is what holds from then on.
// When the new pair is relayed, upgrade runs again and moves the path back
// to a direct pair once one answers. On the new pair each side sends its
// last packet again (replay), so that QUIC, whose retransmission timers
// backed off while the pair was dead, hears an ACK at once.

// fallbackSilenceHalves is how long the selected pair must be silent
// before it counts as dead, in half keepalive intervals: 2 intervals, two
// keepalives of each side lost in a row.
const fallbackSilenceHalves = 4

// watchEvery is how often the watcher looks at the selected pair, in
// fractions of the keepalive interval.
const watchEvery = 4

func (ag *Agent) fallbackSilence() time.Duration {
	return ag.cfg.Timing.KeepaliveInterval * fallbackSilenceHalves / 2
}

// deadPair is the selected pair found dead: its key, and since when it
// has been silent.
type deadPair struct {
	key   string
	since time.Time
}

// fallbackState is the fallback's part of an Agent.
type fallbackState struct {
	dead       atomic.Pointer[deadPair] // the selected pair, while dead
	lastRenom  atomic.Int64             // UnixNano of the last fallback renomination
	fallbacks  atomic.Int64             // times the path moved off a dead pair
	upgrading  atomic.Bool              // upgrade is running
	selected   atomic.Pointer[string]   // the selected pair's key, set by selected
	connected  bool                     // Connect has returned a path; guarded by Agent.mu
	replayNext atomic.Bool              // a fallback is under way: replay on the next new pair

	// The last packet written, resent on a new pair (replay).
	lastMu  sync.Mutex
	last    [maxReplay]byte
	lastLen int
	conn    atomic.Pointer[ice.Conn]
}

// maxReplay bounds the packet kept for replay; QUIC's packets are smaller.
const maxReplay = 1500

// remember keeps a copy of a packet about to be written on the path.
func (fb *fallbackState) remember(b []byte) {
	if len(b) > maxReplay {
		return
	}
	fb.lastMu.Lock()
	fb.lastLen = copy(fb.last[:], b)
	fb.lastMu.Unlock()
}

// replay writes the last packet again, on the pair selected now. After a
// dead pair, both QUIC ends wait for their retransmission timers, which
// back off while nothing arrives (seconds after a few of them): the
// replayed packet, most likely a probe lost on the dead pair, makes the
// peer answer with an ACK at once, and that restarts the flow. A packet
// that had arrived is a duplicate, which QUIC drops.
func (fb *fallbackState) replay() {
	c := fb.conn.Load()
	if c == nil {
		return
	}
	var buf [maxReplay]byte
	fb.lastMu.Lock()
	n := copy(buf[:], fb.last[:fb.lastLen])
	fb.lastMu.Unlock()
	if n > 0 {
		_, _ = c.Write(buf[:n])
	}
}

// startWatching starts, once a pair is selected, the watcher on both
// sides and upgrade on the controlling side. Call with ag.mu held and the
// agent not closed.
func (ag *Agent) startWatchingLocked() {
	ag.fb.connected = true
	ag.wg.Add(1)
	go ag.watch()
	if ag.controlling && ag.cfg.Policy == PolicyAuto {
		ag.startUpgradeLocked()
	}
}

// startUpgradeLocked runs upgrade unless it runs already. Call with ag.mu
// held and the agent not closed.
func (ag *Agent) startUpgradeLocked() {
	if !ag.fb.upgrading.CompareAndSwap(false, true) {
		return
	}
	ag.wg.Add(2) // upgrade's, and this goroutine's
	go func() {
		defer ag.wg.Done()
		ag.upgrade() // calls ag.wg.Done
		ag.fb.upgrading.Store(false)
		// A fallback to the relay between upgrade's last look and the
		// flag's reset found it still running: look again.
		if info, ok := ag.Path(); ok && info.Relayed {
			ag.mu.Lock()
			if !ag.closed {
				ag.startUpgradeLocked()
			}
			ag.mu.Unlock()
		}
	}()
}

// pathSelected runs for every newly selected pair (from selected): it
// keeps the pair's key for the request handler, and a controlling agent
// whose path is relayed again runs upgrade.
func (ag *Agent) pathSelected(l, r ice.Candidate, relayed bool) {
	key := idKey(l.ID(), r.ID())
	if prev := ag.fb.selected.Swap(&key); prev != nil && *prev != key && ag.fb.replayNext.Swap(false) {
		ag.fb.replay()
	}
	if !relayed || !ag.controlling || ag.cfg.Policy != PolicyAuto {
		return
	}
	ag.mu.Lock()
	defer ag.mu.Unlock()
	if !ag.closed && ag.fb.connected {
		ag.startUpgradeLocked()
	}
}

// watch marks the selected pair dead while its remote candidate is
// silent, until the agent closes.
func (ag *Agent) watch() {
	defer ag.wg.Done()
	t := time.NewTicker(ag.cfg.Timing.KeepaliveInterval / watchEvery)
	defer t.Stop()
	for {
		select {
		case <-ag.done:
			return
		case <-t.C:
		}
		ag.checkSelected()
	}
}

// checkSelected updates fb.dead for the selected pair. A pair is alive
// while STUN crosses it: the peer's requests on it (its keepalives, or the
// controlling side's checks) or answers to ours. Neither data nor a remote
// candidate's receive time tells pairs apart: pion counts application
// data for whichever pair is selected, and a remote candidate also hears
// through the relay when the peer's packets reach this side's allocation.
func (ag *Agent) checkSelected() {
	sel, ok := ag.a.GetSelectedCandidatePairStats()
	if !ok {
		return
	}
	var last time.Time
	for _, st := range ag.a.GetCandidatePairsStats() {
		if st.LocalCandidateID == sel.LocalCandidateID && st.RemoteCandidateID == sel.RemoteCandidateID {
			last = latest(st.LastResponseTimestamp, st.LastRequestReceivedTimestamp)
			break
		}
	}
	if last.IsZero() {
		return
	}
	key := idKey(sel.LocalCandidateID, sel.RemoteCandidateID)
	if time.Since(last) < ag.fallbackSilence() {
		ag.fb.dead.Store(nil)
		return
	}
	if d := ag.fb.dead.Load(); d == nil || d.key != key {
		ag.fb.dead.Store(&deadPair{key: key, since: last})
		ag.log.Debug("icepath: selected pair silent", "pair", key, "for", time.Since(last).Round(time.Millisecond))
	}
}

func idKey(local, remote string) string { return local + ">" + remote }

func latest(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// selectedDead reports for how long the selected pair has been dead, and
// whether it is.
func (ag *Agent) selectedDead() (time.Duration, string, bool) {
	d := ag.fb.dead.Load()
	if d == nil {
		return 0, "", false
	}
	sel := ag.fb.selected.Load()
	if sel == nil || *sel != d.key {
		return 0, "", false // the selection moved on
	}
	return time.Since(d.since), d.key, true
}

// onRequest is the Binding request handler of both sides (in pion's event
// loop): the fallback first, then, on the controlling side, renomination
// (onBindingRequest). It returns true, which makes pion select the pair
// the request came on, only when the controlled side follows the peer off
// a dead pair.
func (ag *Agent) onRequest(m *stun.Message, local, remote ice.Candidate, pair *ice.CandidatePair) bool {
	follow := ag.fallback(local, remote)
	if ag.controlling {
		return ag.onBindingRequest(m, local, remote, pair)
	}
	return follow
}

// fallback decides, for a Binding request that came on the pair (local,
// remote), whether to leave a dead selected pair for it: the controlled
// side reports true (select it), the controlling side renominates it.
func (ag *Agent) fallback(local, remote ice.Candidate) bool {
	if local == nil || remote == nil {
		return false
	}
	deadFor, deadKey, dead := ag.selectedDead()
	if !dead {
		return false
	}
	key := idKey(local.ID(), remote.ID())
	if key == deadKey {
		return false // it is alive after all: the watcher will see it
	}
	relayed := !ag.direct(local, remote)
	if ag.controlling {
		// The peer's keepalives come on this pair: it has left the dead
		// one. Nominate it, at most once per keepalive interval.
		now := time.Now()
		if last := ag.fb.lastRenom.Load(); last != 0 && now.Sub(time.Unix(0, last)) < ag.cfg.Timing.KeepaliveInterval {
			return false
		}
		ag.fb.lastRenom.Store(now.UnixNano())
		ag.fb.replayNext.Store(true)
		if err := ag.a.RenominateCandidate(local, remote); err != nil {
			ag.log.Debug("icepath: fallback renomination failed", "err", err)
			return false
		}
		ag.fb.fallbacks.Add(1)
		ag.log.Debug("icepath: selected pair dead, following the peer", "from", deadKey, "to", key, "dead for", deadFor.Round(time.Millisecond))
		return false // pion selects it when the nomination succeeds
	}
	if relayed && deadFor < ag.fallbackSilence()+ag.cfg.Timing.KeepaliveInterval {
		return false // a working direct pair may still speak up
	}
	ag.fb.dead.Store(nil)
	ag.fb.replayNext.Store(true)
	ag.fb.fallbacks.Add(1)
	ag.log.Debug("icepath: selected pair dead, moving", "from", deadKey, "to", key, "relayed", relayed, "dead for", deadFor.Round(time.Millisecond))
	return true
}

// Fallbacks counts the times the path left a dead selected pair.
func (ag *Agent) Fallbacks() int { return int(ag.fb.fallbacks.Load()) }
