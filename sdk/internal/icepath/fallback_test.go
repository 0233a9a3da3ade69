package icepath

import (
	"bytes"
	"fmt"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/transport/v5/vnet"

	"github.com/ferrynet/ferry/internal/testutil"
)

// fallbackTiming makes keepalives, and so the fallback, five times faster
// than the defaults.
func fallbackTiming(c Config) Config {
	c.Timing.KeepaliveInterval = 200 * time.Millisecond
	c.Timing.UpgradeCheck = 100 * time.Millisecond
	c.Timing.FailedTimeout = 30 * time.Second // ICE must not fail first
	return c
}

// roundTrip sends a message each way and waits for it, skipping other
// packets (a fallback replays the last packet written, which the reader
// may see twice).
func roundTrip(t *testing.T, a, b *PacketConn, tag string) {
	t.Helper()
	for i, pair := range [][2]*PacketConn{{a, b}, {b, a}} {
		msg := fmt.Appendf(nil, "%s %d", tag, i)
		from, to := pair[0], pair[1]
		if _, err := from.WriteTo(msg, from.Peer()); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 1500)
		_ = to.SetReadDeadline(time.Now().Add(10 * time.Second))
		for {
			n, _, err := to.ReadFrom(buf)
			if err != nil {
				t.Fatalf("%s: %v", msg, err)
			}
			if bytes.Equal(buf[:n], msg) {
				break
			}
		}
	}
}

// blockable drops every packet between the two NATs while blocked is set.
func blockable(l *lab) *atomic.Bool {
	var blocked atomic.Bool
	l.WAN.AddChunkFilter(func(c vnet.Chunk) bool {
		ip := func(a net.Addr) string { h, _, _ := net.SplitHostPort(a.String()); return h }
		src, dst := ip(c.SourceAddr()), ip(c.DestinationAddr())
		between := src == natIPA && dst == natIPB || src == natIPB && dst == natIPA
		return !between || !blocked.Load()
	})
	return &blocked
}

// A direct path that dies while the relay works moves to the relay on
// both sides, the same agents and PacketConns carrying on, and back to a
// direct pair once the network heals.
func TestDeadDirectPathFallsBackToRelay(t *testing.T) {
	testutil.CheckLeaks(t)
	testutil.Deadline(t, time.Minute)
	l := newLab(t, portRestr, fullCone)
	blocked := blockable(l)
	a := newAgent(t, fallbackTiming(l.config(l.NetA, PolicyAuto)), true)
	b := newAgent(t, fallbackTiming(l.config(l.NetB, PolicyAuto)), false)
	log := watchPath(t, a)
	pa, pb, err := connectPair(t, a, b)
	if err != nil {
		t.Fatal(err)
	}
	defer pa.Close()
	defer pb.Close()
	testutil.WaitFor(t, 10*time.Second, "a direct path on both sides", func() bool {
		ia, _ := a.Path()
		ib, _ := b.Path()
		return !ia.Relayed && !ib.Relayed
	})
	roundTrip(t, pa, pb, "direct")

	blocked.Store(true)
	testutil.WaitFor(t, 20*time.Second, "both sides on the relay after the direct path died", func() bool {
		ia, _ := a.Path()
		ib, _ := b.Path()
		return ia.Relayed && ib.Relayed
	})
	roundTrip(t, pa, pb, "relayed")
	if a.Fallbacks() == 0 || b.Fallbacks() == 0 {
		t.Errorf("fallbacks: controlling %d, controlled %d; want both", a.Fallbacks(), b.Fallbacks())
	}

	blocked.Store(false)
	testutil.WaitFor(t, 30*time.Second, "a direct path again after the network healed", func() bool {
		ia, _ := a.Path()
		ib, _ := b.Path()
		return !ia.Relayed && !ib.Relayed
	})
	roundTrip(t, pa, pb, "direct again")
	if info, _ := a.Path(); info.Upgrades != 1 {
		t.Errorf("%d upgrades, want 1 (relay -> direct once); path changes:%s", info.Upgrades, log)
	}
	t.Logf("path changes:%s", log)
}

// A healthy direct path that carries nothing but keepalives is never
// taken for dead.
func TestIdleDirectPathStaysPut(t *testing.T) {
	testutil.CheckLeaks(t)
	testutil.Deadline(t, time.Minute)
	l := newLab(t, portRestr, fullCone)
	a := newAgent(t, fallbackTiming(l.config(l.NetA, PolicyAuto)), true)
	b := newAgent(t, fallbackTiming(l.config(l.NetB, PolicyAuto)), false)
	la, lb := watchPath(t, a), watchPath(t, b)
	pa, pb, err := connectPair(t, a, b)
	if err != nil {
		t.Fatal(err)
	}
	defer pa.Close()
	defer pb.Close()
	testutil.WaitFor(t, 10*time.Second, "a direct path on both sides, selected", func() bool {
		ia, _ := a.Path()
		ib, _ := b.Path()
		return !ia.Relayed && !ib.Relayed && len(la.snapshot()) > 0 && len(lb.snapshot()) > 0
	})
	na, nb := len(la.snapshot()), len(lb.snapshot())
	time.Sleep(15 * a.cfg.Timing.KeepaliveInterval) // idle: the condition is that nothing happens
	if len(la.snapshot()) != na || len(lb.snapshot()) != nb || a.Fallbacks() != 0 || b.Fallbacks() != 0 {
		t.Errorf("idle direct path moved; controlling:%s; controlled:%s; fallbacks %d/%d", la, lb, a.Fallbacks(), b.Fallbacks())
	}
	roundTrip(t, pa, pb, "still")
}
