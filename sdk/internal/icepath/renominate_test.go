package icepath

import (
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/transport/v5/vnet"

	"github.com/ferrynet/ferry/internal/testutil"
)

// pairPriority orders pairs as RFC 8445 says: by the lower of the two
// candidate priorities first, so any pair with a relayed candidate ranks
// below every direct one.
func TestPairPriority(t *testing.T) {
	prio := func(typePref uint32) uint32 { return typePref<<24 | 65535<<8 | 255 }
	host, prflx, srflx, relay := prio(126), prio(110), prio(100), prio(0)
	order := [][2]uint32{{host, host}, {host, prflx}, {srflx, prflx}, {srflx, srflx}, {host, relay}, {relay, relay}}
	for i := 1; i < len(order); i++ {
		hi, lo := pairPriority(order[i-1][0], order[i-1][1]), pairPriority(order[i][0], order[i][1])
		if hi <= lo {
			t.Errorf("pair %d (%#x) does not rank above pair %d (%#x)", i-1, hi, i, lo)
		}
	}
	if pairPriority(host, srflx) == pairPriority(srflx, host) {
		t.Error("the controlling side's candidate breaks no tie")
	}
}

// pathLog records an agent's path changes.
type pathLog struct {
	mu      sync.Mutex
	changes []Info
}

func watchPath(t *testing.T, ag *Agent) *pathLog {
	t.Helper()
	l := &pathLog{}
	if err := ag.OnPathChange(func(i Info) {
		l.mu.Lock()
		l.changes = append(l.changes, i)
		l.mu.Unlock()
	}); err != nil {
		t.Fatal(err)
	}
	return l
}

// firstDirect returns the first direct path in changes, or nil.
func firstDirect(changes []Info) *Info {
	for i := range changes {
		if !changes[i].Relayed {
			return &changes[i]
		}
	}
	return nil
}

func (l *pathLog) snapshot() []Info {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]Info(nil), l.changes...)
}

func (l *pathLog) String() string {
	var b strings.Builder
	for _, i := range l.snapshot() {
		b.WriteString("\n  " + i.LocalType + " " + i.LocalAddr + " -> " + i.RemoteType + " " + i.RemoteAddr)
	}
	return b.String()
}

// A direct path is never renominated, even where pion's automatic
// renomination would score another pair higher. Behind an
// address-restricted cone facing a symmetric NAT, the dialer's first
// direct pair is often srflx/prflx, which pion's scoring ranks below
// host/relay (and below host/prflx), more so once the selected pair has
// carried only data for 5 s and lost its "stability bonus": with pion
// choosing, the path moved here (to host/prflx) and in the NAT lab to the
// relay, under a working direct path.
func TestDirectPathStaysPut(t *testing.T) {
	testutil.CheckLeaks(t)
	testutil.Deadline(t, 2*time.Minute)
	restricted := &vnet.NATType{MappingBehavior: vnet.EndpointIndependent, FilteringBehavior: vnet.EndpointAddrDependent}
	{
		l := newLab(t, restricted, symmetric)
		a := newAgent(t, l.config(l.NetA, PolicyAuto), true)
		b := newAgent(t, l.config(l.NetB, PolicyAuto), false)
		log := watchPath(t, a)
		pa, pb, err := connectPair(t, a, b)
		if err != nil {
			t.Fatal(err)
		}
		// Traffic for longer than pion's 5 s "stability bonus" lasts on a
		// pair that only carries data (no STUN responses): the selected
		// pair then loses to any pair still being checked.
		for range 65 {
			exchange(t, pa, pb)
			time.Sleep(100 * time.Millisecond)
		}
		// The path may start on the relay (the relayed pair may win the
		// race on a slow machine), but once direct, it stays.
		ch := log.snapshot()
		first := slices.IndexFunc(ch, func(i Info) bool { return !i.Relayed })
		if first < 0 || first != len(ch)-1 {
			t.Fatalf("want the path to end direct, and never leave a direct pair; path changes:%s", log)
		}
		_ = pa.Close()
		_ = pb.Close()
	}
}

// A path that starts on the relay moves to a direct pair that becomes valid
// later, under the same PacketConn, and then stays there. The peers' direct
// candidates are held back until the relayed pair is selected.
func TestRelayedPathMovesToDirect(t *testing.T) {
	testutil.CheckLeaks(t)
	testutil.Deadline(t, time.Minute)
	l := newLab(t, fullCone, fullCone)
	cfg := func(n *vnet.Net) Config {
		c := l.config(n, PolicyAuto)
		c.Timing.RelayWait = time.Millisecond
		c.Timing.UpgradeCheck = 100 * time.Millisecond
		return c
	}
	a := newAgent(t, cfg(l.NetA), true)
	b := newAgent(t, cfg(l.NetB), false)
	log := watchPath(t, a)
	release := make(chan struct{})
	var held sync.WaitGroup
	pa, pb, err := connectPairVia(t, a, b, func(to *Agent, c string) {
		add := func() {
			if err := to.AddRemote(c); err != nil {
				t.Errorf("add remote: %v", err)
			}
		}
		if strings.Contains(c, "typ relay") {
			add()
			return
		}
		held.Go(func() {
			<-release
			add()
		})
	})
	if err != nil {
		close(release)
		held.Wait()
		t.Fatal(err)
	}
	first, _ := a.Path()
	if !first.Relayed {
		t.Fatalf("first path %s -> %s is not relayed", first.LocalType, first.RemoteType)
	}
	if first.Upgrades != 0 || first.SelectedAt.IsZero() {
		t.Errorf("first path: %d upgrades, selected at %v", first.Upgrades, first.SelectedAt)
	}
	exchange(t, pa, pb)
	close(release)
	held.Wait()
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("path changes:%s", log)
		}
	})
	testutil.WaitFor(t, 10*time.Second, "a direct path after the direct candidates arrived", func() bool {
		info, _ := a.Path()
		return !info.Relayed
	})
	exchange(t, pa, pb)
	time.Sleep(time.Second) // ten upgrade checks
	exchange(t, pa, pb)
	info, _ := a.Path()
	if info.Relayed {
		t.Fatalf("moved back to the relay; path changes:%s", log)
	}
	if info.Upgrades != 1 || !info.SelectedAt.After(first.SelectedAt) || info.RelayAddr != "" {
		t.Errorf("direct path: %d upgrades (want 1), selected at %v (first at %v), relay %q", info.Upgrades, info.SelectedAt, first.SelectedAt, info.RelayAddr)
	}
	testutil.WaitFor(t, 10*time.Second, "the controlled side on the direct path, upgrade counted", func() bool {
		info, _ := b.Path()
		return !info.Relayed && info.Upgrades == 1
	})
	t.Logf("path changes:%s", log)
	_ = pa.Close()
	_ = pb.Close()
}

// A pair whose remote candidate is peer-reflexive at the address of one of
// the peer's relayed candidates is reported as relayed: the check that
// taught pion the candidate came through the relay, ahead of signaling
// (the NAT matrix showed such a pair as "host/prflx", direct, on the side
// facing a udp-blocked peer).
func TestPeerReflexiveRelayIsRelayed(t *testing.T) {
	ag, err := New(Config{}, true)
	if err != nil {
		t.Fatal(err)
	}
	defer ag.Close()
	if err := ag.AddRemote("candidate:1 1 udp 16777215 203.0.113.10 50000 typ relay raddr 198.51.100.2 rport 4000"); err != nil {
		t.Fatal(err)
	}
	host, err := ice.NewCandidateHost(&ice.CandidateHostConfig{Network: "udp", Address: "10.1.0.2", Port: 4000, Component: 1})
	if err != nil {
		t.Fatal(err)
	}
	prflx := func(addr string, port int) ice.Candidate {
		c, err := ice.NewCandidatePeerReflexive(&ice.CandidatePeerReflexiveConfig{Network: "udp", Address: addr, Port: port, Component: 1})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	if inf := ag.pairInfo(host, prflx("203.0.113.10", 50000)); !inf.Relayed || !inf.RemoteRelayed || inf.RemoteType != "relay" {
		t.Errorf("prflx at the peer's relay address: %+v, want relayed", inf)
	}
	if inf := ag.pairInfo(host, prflx("198.51.100.2", 50001)); inf.Relayed || inf.RemoteType != "prflx" {
		t.Errorf("prflx elsewhere: %+v, want direct", inf)
	}
}

// A direct pair that failed its checks before the relay won is probed
// again while the path is relayed, and the path moves to it once it
// answers. Here every packet between the two NATs is dropped until the
// direct pairs have failed and the relay carries the path; then the
// network heals (as after a NAT's filter state expired, or checks lost
// under load: the flake the NAT matrix showed with port-restricted cones).
func TestFailedDirectPairIsProbedAgain(t *testing.T) {
	testutil.CheckLeaks(t)
	testutil.Deadline(t, time.Minute)
	l := newLab(t, portRestr, fullCone)
	var blocked atomic.Bool
	blocked.Store(true)
	l.WAN.AddChunkFilter(func(c vnet.Chunk) bool {
		ip := func(a net.Addr) string { h, _, _ := net.SplitHostPort(a.String()); return h }
		src, dst := ip(c.SourceAddr()), ip(c.DestinationAddr())
		between := src == natIPA && dst == natIPB || src == natIPB && dst == natIPA
		return !between || !blocked.Load()
	})
	cfg := func(n *vnet.Net) Config {
		c := l.config(n, PolicyAuto)
		c.Timing.CheckWindow = 100 * time.Millisecond
		c.Timing.RelayWait = 2 * time.Second
		c.Timing.UpgradeCheck = 100 * time.Millisecond
		return c
	}
	a := newAgent(t, cfg(l.NetA), true)
	b := newAgent(t, cfg(l.NetB), false)
	log, logB := watchPath(t, a), watchPath(t, b)
	pa, pb, err := connectPair(t, a, b)
	if err != nil {
		t.Fatal(err)
	}
	defer pa.Close()
	defer pb.Close()
	if info, _ := a.Path(); !info.Relayed {
		t.Fatalf("first path %s -> %s is direct through a blocked network", info.LocalType, info.RemoteType)
	}
	testutil.WaitFor(t, 10*time.Second, "the direct pairs to fail", func() bool {
		failed := 0
		for _, st := range a.a.GetCandidatePairsStats() {
			if st.State == ice.CandidatePairStateFailed {
				failed++
			}
		}
		return failed > 0
	})
	exchange(t, pa, pb)
	blocked.Store(false)
	testutil.WaitFor(t, 20*time.Second, "a direct path after the network healed", func() bool {
		ia, _ := a.Path()
		ib, _ := b.Path()
		return !ia.Relayed && !ib.Relayed
	})
	exchange(t, pa, pb)
	if info, _ := a.Path(); info.Upgrades != 1 {
		t.Errorf("%d upgrades, want 1; path changes:%s", info.Upgrades, log)
	}
	if n := a.probes.Load(); n == 0 {
		t.Error("no failed pair was probed, yet the path moved")
	}
	// Both sides agree: each reported the move to a direct pair to its
	// handler, within a round trip of the other (the
	// controlled side follows when its own check of the nominated pair
	// succeeds). The vnet's round trip is well under a millisecond; the
	// bound is generous for a loaded machine, and the figure is logged.
	da, db := firstDirect(log.snapshot()), firstDirect(logB.snapshot())
	switch {
	case da == nil || db == nil:
		t.Errorf("a side reported no move to direct: dialer %v, acceptor %v; dialer's changes:%s; acceptor's:%s", da != nil, db != nil, log, logB)
	default:
		skew := da.SelectedAt.Sub(db.SelectedAt).Abs()
		t.Logf("the sides moved %v apart", skew)
		if skew > time.Second {
			t.Errorf("the sides moved to direct %v apart", skew)
		}
	}
	t.Logf("%d probes; path changes:%s; acceptor's:%s", a.probes.Load(), log, logB)
}

// Probe rounds come fast at first, then every few seconds, then slower,
// and never stop: the schedule the README's table gives.
func TestProbeSchedule(t *testing.T) {
	want := []time.Duration{0, time.Second, 2 * time.Second, 4 * time.Second, 5 * time.Second, 5 * time.Second}
	for round, w := range want {
		if got := probeDelay(round, 10*time.Second); got != w {
			t.Errorf("round %d: delay %v, want %v", round, got, w)
		}
	}
	if got := probeDelay(10, 2*time.Minute); got != 15*time.Second {
		t.Errorf("after two minutes relayed: delay %v, want 15s", got)
	}
	if got := probeDelay(1000, 24*time.Hour); got <= 0 || got > 15*time.Second {
		t.Errorf("after a day relayed: delay %v, want a round at least every 15s", got)
	}
}
