package natlab_test

import (
	"context"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ferrynet/ferry/internal/natlab"
	"github.com/ferrynet/ferry/internal/natlab/natlabtest"
	"github.com/ferrynet/ferry/internal/testutil"
)

func requireConntrack(t *testing.T) {
	t.Helper()
	testutil.RequireRoot(t)
	testutil.RequireBinary(t, natlab.ConntrackProgram, natlab.ConntrackPackage)
}

// arrives sends one datagram from pc to dst and reports whether the host
// socket reads it within wait. Stray datagrams (of earlier probes) are
// skipped.
func arrives(t *testing.T, from net.PacketConn, dst netip.AddrPort, host net.PacketConn, payload string, wait time.Duration) bool {
	t.Helper()
	if _, err := from.WriteTo([]byte(payload), net.UDPAddrFromAddrPort(dst)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1500)
	_ = host.SetReadDeadline(time.Now().Add(wait))
	defer func() { _ = host.SetReadDeadline(time.Time{}) }()
	for {
		n, _, err := host.ReadFrom(buf)
		if err != nil {
			return false
		}
		if string(buf[:n]) == payload {
			return true
		}
	}
}

func conntrackCount(t *testing.T, r *natlab.Host) int {
	t.Helper()
	out, err := r.Run(context.Background(), natlab.ConntrackProgram, "-C")
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.Atoi(strings.TrimSpace(out))
	if err != nil {
		t.Fatalf("conntrack -C printed %q", out)
	}
	return n
}

// TestFlushMappings shows that FlushMappings really drops the kernel's
// mappings: before it, the server reaches the host through its mapping
// (and, behind a full cone, so does another address); right after it the
// router's conntrack table is empty and neither gets in; once the host
// sends again, a mapping exists again.
func TestFlushMappings(t *testing.T) {
	t.Parallel()
	requireConntrack(t)
	testutil.Deadline(t, time.Minute)
	lab := natlabtest.New(t, natlab.Config{Sites: []natlab.SiteConfig{
		{Name: "pr", NAT: natlab.PortRestrictedCone},
		{Name: "fc", NAT: natlab.FullCone},
		{Name: "pub", NAT: natlab.None},
	}})
	ctx := context.Background()
	if err := lab.Site("pub").FlushMappings(ctx); err == nil {
		t.Error("FlushMappings on a site without a router returned no error")
	}
	for i, name := range []string{"pr", "fc"} {
		t.Run(name, func(t *testing.T) {
			s := lab.Site(name)
			s1 := listenUDP(t, lab.Server(), netip.AddrPortFrom(natlab.ServerAddr, uint16(7300+2*i)).String())
			s2 := listenUDP(t, lab.Server(), netip.AddrPortFrom(natlab.ServerAltAddr, uint16(7301+2*i)).String())
			host := listenUDP(t, s.Host(0), ":0")
			s1Addr := s1.LocalAddr().(*net.UDPAddr).AddrPort()
			mapped := natlabtest.SendUntilHeard(t, host, s1Addr, s1, "open", 10*time.Second)
			fullCone := s.NAT() == natlab.FullCone
			if !arrives(t, s1, mapped, host, "before", 5*time.Second) {
				t.Fatal("the contacted server cannot reach the host through a fresh mapping")
			}
			if fullCone && !arrives(t, s2, mapped, host, "before-other", 5*time.Second) {
				t.Fatal("another address cannot reach the host through a fresh full-cone mapping")
			}
			if n := conntrackCount(t, s.Router); n == 0 {
				t.Fatal("the router's conntrack table is empty with a live mapping")
			}

			if err := s.FlushMappings(ctx); err != nil {
				t.Fatal(err)
			}
			if n := conntrackCount(t, s.Router); n != 0 {
				t.Errorf("%d conntrack entries right after the flush", n)
			}
			if arrives(t, s1, mapped, host, "after", time.Second) {
				t.Error("the contacted server still gets in after the flush")
			}
			if fullCone && arrives(t, s2, mapped, host, "after-other", time.Second) {
				t.Error("another address still gets in through the flushed full-cone mapping")
			}

			again := natlabtest.SendUntilHeard(t, host, s1Addr, s1, "reopen", 10*time.Second)
			if !arrives(t, s1, again, host, "again", 5*time.Second) {
				t.Error("no new mapping after the host sent again")
			}
			t.Logf("mapping %v before the flush, %v after", mapped, again)
		})
	}
}

// TestChangePublicAddr moves a router to a new public address: the host's
// packets come from it, the old mapping is dead, and the router holds only
// the new address.
func TestChangePublicAddr(t *testing.T) {
	t.Parallel()
	requireConntrack(t)
	testutil.Deadline(t, time.Minute)
	lab := natlabtest.New(t, natlab.Config{Sites: []natlab.SiteConfig{
		{Name: "pr", NAT: natlab.PortRestrictedCone},
		{Name: "pub", NAT: natlab.None},
	}})
	ctx := context.Background()
	if _, err := lab.Site("pub").ChangePublicAddr(ctx); err == nil {
		t.Error("ChangePublicAddr on a site without a router returned no error")
	}
	s := lab.Site("pr")
	s1 := listenUDP(t, lab.Server(), netip.AddrPortFrom(natlab.ServerAddr, 7400).String())
	host := listenUDP(t, s.Host(0), ":0")
	s1Addr := s1.LocalAddr().(*net.UDPAddr).AddrPort()
	mapped := natlabtest.SendUntilHeard(t, host, s1Addr, s1, "open", 10*time.Second)
	old := s.PublicAddr
	if mapped.Addr() != old {
		t.Fatalf("server sees %v, want the site's address %v", mapped, old)
	}

	wan, err := s.ChangePublicAddr(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if wan == old || !natlab.PublicPrefix.Contains(wan) {
		t.Fatalf("new address %v (old %v)", wan, old)
	}
	if s.PublicAddr != wan || s.Router.Addr() != wan {
		t.Errorf("PublicAddr %v, router %v, want %v", s.PublicAddr, s.Router.Addr(), wan)
	}
	out, err := s.Router.Run(ctx, "ip", "-4", "-o", "addr", "show", "dev", "wan")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, wan.String()+"/24") || strings.Contains(out, old.String()+"/") {
		t.Errorf("router's wan: %s, want only %v", out, wan)
	}
	if arrives(t, s1, mapped, host, "to-old", time.Second) {
		t.Error("a packet to the old address's mapping still arrived")
	}
	now := natlabtest.SendUntilHeard(t, host, s1Addr, s1, "from-new", 10*time.Second)
	if now.Addr() != wan {
		t.Errorf("server sees the host at %v, want the new address %v", now, wan)
	}
	if !arrives(t, s1, now, host, "to-new", 5*time.Second) {
		t.Error("the server cannot reach the host through its new mapping")
	}
}

// TestBlock cuts a site off from one public address, both ways, while
// another stays reachable, and Unblock restores it.
func TestBlock(t *testing.T) {
	t.Parallel()
	testutil.RequireRoot(t)
	testutil.Deadline(t, time.Minute)
	lab := natlabtest.New(t, natlab.Config{Sites: []natlab.SiteConfig{
		{Name: "fc", NAT: natlab.FullCone},
		{Name: "pub", NAT: natlab.None},
	}})
	ctx := context.Background()
	s := lab.Site("fc")
	if err := s.Block(ctx); err == nil {
		t.Error("Block with no address returned no error")
	}
	if err := s.Block(ctx, netip.MustParseAddr("2001:db8::1")); err == nil {
		t.Error("Block of an IPv6 address returned no error")
	}
	if err := lab.Site("pub").Block(ctx, natlab.ServerAddr); err == nil {
		t.Error("Block on a site without a router returned no error")
	}
	host := listenUDP(t, s.Host(0), ":0")
	s1 := listenUDP(t, lab.Server(), netip.AddrPortFrom(natlab.ServerAddr, 7500).String())
	s2 := listenUDP(t, lab.Server(), netip.AddrPortFrom(natlab.ServerAltAddr, 7501).String())
	a1 := s1.LocalAddr().(*net.UDPAddr).AddrPort()
	a2 := s2.LocalAddr().(*net.UDPAddr).AddrPort()
	m1 := natlabtest.SendUntilHeard(t, host, a1, s1, "open1", 10*time.Second)
	m2 := natlabtest.SendUntilHeard(t, host, a2, s2, "open2", 10*time.Second)

	if err := s.Block(ctx, natlab.ServerAltAddr); err != nil {
		t.Fatal(err)
	}
	if arrives(t, s2, m2, host, "in-blocked", time.Second) {
		t.Error("a packet from the blocked address got in")
	}
	if !arrives(t, s1, m1, host, "in-open", 5*time.Second) {
		t.Error("a packet from an address not blocked did not get in")
	}
	if _, err := host.WriteTo([]byte("out-blocked"), net.UDPAddrFromAddrPort(a2)); err != nil {
		t.Fatal(err)
	}
	_ = s2.SetReadDeadline(time.Now().Add(time.Second))
	for buf := make([]byte, 100); ; {
		n, _, err := s2.ReadFrom(buf)
		if err != nil {
			break
		}
		if string(buf[:n]) == "out-blocked" {
			t.Error("a packet to the blocked address got out")
		}
	}
	_ = s2.SetReadDeadline(time.Time{})

	if err := s.Unblock(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.Unblock(ctx); err != nil {
		t.Errorf("a second Unblock: %v", err)
	}
	natlabtest.SendUntilHeard(t, host, a2, s2, "out-again", 10*time.Second)
	if !arrives(t, s2, m2, host, "in-again", 5*time.Second) {
		t.Error("the unblocked address cannot reach the host")
	}
}
