package icepath

import (
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/ice/v4"

	"github.com/ferrynet/ferry/internal/testutil"
)

// forwarder is a gateway's port mapping on loopback: packets to its public
// socket go to the inside address from one socket per outside peer, and
// the inside's answers to that socket go back out from the public one, as
// a NAT's DNAT and its reply direction do.
type forwarder struct {
	pub    *net.UDPConn
	inside netip.AddrPort
	mu     sync.Mutex
	socks  map[netip.AddrPort]*net.UDPConn
	wg     sync.WaitGroup
}

func newForwarder(t *testing.T, inside netip.AddrPort) *forwarder {
	t.Helper()
	pub, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	f := &forwarder{pub: pub, inside: inside, socks: map[netip.AddrPort]*net.UDPConn{}}
	f.wg.Go(func() {
		buf := make([]byte, 1500)
		for {
			n, from, err := pub.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			if s := f.sockFor(from); s != nil {
				_, _ = s.WriteToUDPAddrPort(buf[:n], f.inside)
			}
		}
	})
	t.Cleanup(func() {
		_ = pub.Close()
		f.mu.Lock()
		for _, s := range f.socks {
			_ = s.Close()
		}
		f.mu.Unlock()
		f.wg.Wait()
	})
	return f
}

func (f *forwarder) addr() netip.AddrPort { return f.pub.LocalAddr().(*net.UDPAddr).AddrPort() }

func (f *forwarder) sockFor(peer netip.AddrPort) *net.UDPConn {
	f.mu.Lock()
	defer f.mu.Unlock()
	if s, ok := f.socks[peer]; ok {
		return s
	}
	s, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return nil
	}
	f.socks[peer] = s
	f.wg.Go(func() {
		buf := make([]byte, 1500)
		for {
			n, _, err := s.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			_, _ = f.pub.WriteToUDPAddrPort(buf[:n], peer)
		}
	})
	return s
}

func newPortMap(t *testing.T) *PortMap {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	pm, err := NewPortMap(c, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pm.Close() })
	return pm
}

func loopConfig(pm *PortMap) Config {
	return Config{IncludeLoopback: true, Policy: PolicyNever, PortMap: pm, Timing: Timing{FailedTimeout: 5 * time.Second}}
}

// TestMappedCandidate: an agent with a PortMap gathers its host candidate
// on the shared socket and offers the mapping as a srflx candidate based
// on it; a peer that gets nothing but that candidate reaches the agent
// through the mapping, and the path carries data both ways.
func TestMappedCandidate(t *testing.T) {
	testutil.CheckLeaks(t)
	testutil.Deadline(t, 60*time.Second)
	pm := newPortMap(t)
	inside := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), pm.Port())
	fw := newForwarder(t, inside)
	pm.SetMapped(fw.addr(), inside.Addr())

	a := newAgent(t, loopConfig(pm), true)
	b := newAgent(t, Config{IncludeLoopback: true, Policy: PolicyNever, Timing: Timing{FailedTimeout: 5 * time.Second}}, false)
	var mu sync.Mutex
	var offered []string
	// a learns b only from b's checks through the mapping (so a never
	// reaches b around it), and b gets nothing but the mapping.
	pa, pb, err := connectPairVia(t, a, b, func(to *Agent, cand string) {
		if to == a {
			return
		}
		{
			mu.Lock()
			offered = append(offered, cand)
			mu.Unlock()
			c, err := ice.UnmarshalCandidate(cand)
			if err != nil {
				t.Errorf("unmarshal %q: %v", cand, err)
				return
			}
			if c.Type() != ice.CandidateTypeServerReflexive {
				return // only the mapping reaches b
			}
		}
		if err := to.AddRemote(cand); err != nil {
			t.Errorf("add remote: %v", err)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer pa.Close()
	defer pb.Close()
	exchange(t, pa, pb)
	mu.Lock()
	defer mu.Unlock()
	var host, srflx int
	for _, c := range offered {
		f := strings.Fields(c)
		switch {
		case strings.Contains(c, "typ host") && f[5] == itoa(pm.Port()):
			host++
		case strings.Contains(c, "typ srflx") && f[4]+":"+f[5] == fw.addr().String() && strings.Contains(c, "rport "+itoa(pm.Port())):
			srflx++
		}
	}
	if host == 0 || srflx != 1 {
		t.Fatalf("offered %q: want a host candidate on port %d and one srflx at %v", offered, pm.Port(), fw.addr())
	}
	inf, _ := b.Path()
	if inf.RemoteAddr != fw.addr().String() {
		t.Fatalf("b's path goes to %s, want the mapping %v", inf.RemoteAddr, fw.addr())
	}
}

// TestNoMappingNoCandidate: a PortMap without a mapping (or one withdrawn)
// offers no srflx candidate, and two agents sharing it still gather.
func TestNoMappingNoCandidate(t *testing.T) {
	testutil.CheckLeaks(t)
	testutil.Deadline(t, 30*time.Second)
	pm := newPortMap(t)
	pm.SetMapped(netip.MustParseAddrPort("203.0.113.7:4000"), netip.Addr{})
	pm.SetMapped(netip.AddrPort{}, netip.Addr{})
	for range 2 {
		ag := newAgent(t, loopConfig(pm), true)
		done := make(chan struct{})
		var got []string
		if err := ag.Gather(func(c string) {
			if c == "" {
				close(done)
				return
			}
			got = append(got, c)
		}); err != nil {
			t.Fatal(err)
		}
		<-done
		if len(got) == 0 || strings.Contains(strings.Join(got, "\n"), "srflx") {
			t.Fatalf("gathered %q: want host candidates and no srflx", got)
		}
	}
}

func TestNewPortMapRejects(t *testing.T) {
	c, err := net.ListenUDP("udp6", &net.UDPAddr{IP: net.IPv6loopback})
	if err != nil {
		t.Skipf("no IPv6 loopback: %v", err)
	}
	defer c.Close()
	if _, err := NewPortMap(c, nil, nil); err == nil {
		t.Fatal("an IPv6 socket was accepted")
	}
}

func itoa(p uint16) string { return strconv.Itoa(int(p)) }
