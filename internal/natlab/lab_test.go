package natlab_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/netip"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ferrynet/ferry/internal/natlab"
	"github.com/ferrynet/ferry/internal/natlab/natlabtest"
	"github.com/ferrynet/ferry/internal/testutil"
)

// udpEcho answers every datagram on pc with the sender's address followed
// by the payload, until pc is closed.
func udpEcho(t *testing.T, pc net.PacketConn) {
	t.Helper()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		buf := make([]byte, 2048)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			_, _ = pc.WriteTo(buf[:n], from)
		}
	}()
	t.Cleanup(func() { pc.Close(); wg.Wait() })
}

func listenUDP(t *testing.T, h *natlab.Host, addr string) net.PacketConn {
	t.Helper()
	pc, err := h.ListenPacket(context.Background(), "udp4", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	return pc
}

func serverEcho(t *testing.T, lab *natlab.Lab, port int) *net.UDPAddr {
	t.Helper()
	ap := netip.AddrPortFrom(natlab.ServerAddr, uint16(port))
	udpEcho(t, listenUDP(t, lab.Server(), ap.String()))
	return net.UDPAddrFromAddrPort(ap)
}

// pingUDP sends n numbered datagrams, spaced by gap, to the echo server
// and collects the echoes for wait after the last one. It returns the
// round-trip time of each echoed sequence number in arrival order.
func pingUDP(t *testing.T, pc net.PacketConn, to net.Addr, n int, gap, wait time.Duration) (seqs []uint32, rtts []time.Duration) {
	t.Helper()
	sent := make([]time.Time, n)
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 2048)
		for {
			_ = pc.SetReadDeadline(time.Now().Add(wait))
			k, _, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			if k < 4 {
				continue
			}
			seq := binary.BigEndian.Uint32(buf)
			if int(seq) < n {
				seqs = append(seqs, seq)
				rtts = append(rtts, time.Since(sent[seq]))
			}
		}
	}()
	for i := range n {
		b := binary.BigEndian.AppendUint32(nil, uint32(i))
		sent[i] = time.Now()
		if _, err := pc.WriteTo(append(b, "natlab"...), to); err != nil {
			t.Fatal(err)
		}
		if gap > 0 {
			time.Sleep(gap)
		}
	}
	<-done
	return seqs, rtts
}

func median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}

// TestShaping checks the WAN link shaping: delay (a lower bound that
// cannot be flaky, and a loose upper bound that catches a delay applied
// twice), jitter without reordering, loss in the expected band, run-time
// changes with SetWAN, and that TCP survives the userspace delay stage
// (which it does not if checksum offload is left on).
func TestShaping(t *testing.T) {
	t.Parallel()
	testutil.RequireRoot(t)
	testutil.Deadline(t, 2*time.Minute)
	lab := natlabtest.New(t, natlab.Config{Sites: []natlab.SiteConfig{
		{Name: "d", NAT: natlab.PortRestrictedCone, WAN: natlab.Link{Delay: 25 * time.Millisecond}},
		{Name: "j", NAT: natlab.FullCone, WAN: natlab.Link{Delay: 20 * time.Millisecond, Jitter: 10 * time.Millisecond}},
		{Name: "l", NAT: natlab.Symmetric, WAN: natlab.Link{Loss: 20}},
		{Name: "p", NAT: natlab.None, WAN: natlab.Link{Delay: 5 * time.Millisecond}},
		{Name: "s", NAT: natlab.FullCone, DelayStage: true},
		{Name: "pl", NAT: natlab.None, WAN: natlab.Link{Loss: 30}},
	}})
	echo := serverEcho(t, lab, 7000)

	t.Run("delay", func(t *testing.T) {
		t.Parallel()
		pc := listenUDP(t, lab.Site("d").Host(0), ":0")
		seqs, rtts := pingUDP(t, pc, echo, 20, 10*time.Millisecond, time.Second)
		if len(seqs) != 20 {
			t.Fatalf("got %d of 20 echoes on a lossless link", len(seqs))
		}
		if m := slices.Min(rtts); m < 50*time.Millisecond {
			t.Errorf("min RTT %v is below 2 x 25 ms", m)
		}
		if m := median(rtts); m > 150*time.Millisecond {
			t.Errorf("median RTT %v, want about 50 ms", m)
		}
		t.Logf("RTT min %v median %v", slices.Min(rtts), median(rtts))
	})
	t.Run("public-host-delay", func(t *testing.T) {
		t.Parallel()
		pc := listenUDP(t, lab.Site("p").Host(0), ":0")
		_, rtts := pingUDP(t, pc, echo, 10, 5*time.Millisecond, time.Second)
		if len(rtts) != 10 || slices.Min(rtts) < 10*time.Millisecond {
			t.Errorf("public host link: %d echoes, RTTs %v", len(rtts), rtts)
		}
	})
	t.Run("jitter-keeps-order", func(t *testing.T) {
		t.Parallel()
		pc := listenUDP(t, lab.Site("j").Host(0), ":0")
		seqs, rtts := pingUDP(t, pc, echo, 200, time.Millisecond, time.Second)
		if len(seqs) != 200 {
			t.Fatalf("got %d of 200 echoes on a lossless link", len(seqs))
		}
		if !slices.IsSorted(seqs) {
			t.Errorf("frames reordered: %v", seqs)
		}
		lo, hi := slices.Min(rtts), slices.Max(rtts)
		if lo < 20*time.Millisecond {
			t.Errorf("min RTT %v below 2 x (20 - 10) ms", lo)
		}
		if hi-lo < 5*time.Millisecond {
			t.Errorf("RTTs within %v of each other: no jitter applied", hi-lo)
		}
		t.Logf("RTT min %v max %v median %v", lo, hi, median(rtts))
	})
	t.Run("loss", func(t *testing.T) {
		t.Parallel()
		s := lab.Site("l")
		pc := listenUDP(t, s.Host(0), ":0")
		// 20 % each way on the WAN link: 64 % of echoes come back.
		seqs, _ := pingUDP(t, pc, echo, 1000, 200*time.Microsecond, 500*time.Millisecond)
		got := float64(len(seqs)) / 1000
		if got < 0.50 || got > 0.78 {
			t.Errorf("%.1f %% of echoes came back, want about 64 %%", got*100)
		}
		t.Logf("%.1f %% of echoes came back at 20 %% loss each way", got*100)

		ctx := context.Background()
		if err := s.SetWAN(ctx, natlab.Link{Loss: 100}); err != nil {
			t.Fatal(err)
		}
		if seqs, _ := pingUDP(t, pc, echo, 50, 0, 300*time.Millisecond); len(seqs) != 0 {
			t.Errorf("%d echoes at 100 %% loss", len(seqs))
		}
		if err := s.SetWAN(ctx, natlab.Link{}); err != nil {
			t.Fatal(err)
		}
		if seqs, _ := pingUDP(t, pc, echo, 50, 0, 300*time.Millisecond); len(seqs) != 50 {
			t.Errorf("%d of 50 echoes after removing the loss", len(seqs))
		}
		if err := s.SetWAN(ctx, natlab.Link{Delay: time.Millisecond}); err == nil {
			t.Error("SetWAN added a delay to a site built without a delay stage")
		}
	})
	t.Run("public-host-loss-is-silent", func(t *testing.T) {
		t.Parallel()
		// Loss must look like a lossy wire: the sender's sendto never
		// fails (pingUDP fails the test on a write error).
		pc := listenUDP(t, lab.Site("pl").Host(0), ":0")
		seqs, _ := pingUDP(t, pc, echo, 300, 200*time.Microsecond, 500*time.Millisecond)
		if got := float64(len(seqs)) / 300; got < 0.30 || got > 0.68 {
			t.Errorf("%.1f %% of echoes came back at 30 %% loss each way, want about 49 %%", got*100)
		}
	})
	t.Run("set-delay", func(t *testing.T) {
		t.Parallel()
		// A site built clean, with a stage to add delay later.
		s := lab.Site("s")
		pc := listenUDP(t, s.Host(0), ":0")
		_, rtts := pingUDP(t, pc, echo, 5, 5*time.Millisecond, time.Second)
		// A loose bound: it only has to tell "no delay" from the 80 ms below.
		if len(rtts) != 5 || median(rtts) > 40*time.Millisecond {
			t.Errorf("clean staged link: %d echoes, RTTs %v", len(rtts), rtts)
		}
		if err := s.SetWAN(context.Background(), natlab.Link{Delay: 40 * time.Millisecond}); err != nil {
			t.Fatal(err)
		}
		_, rtts = pingUDP(t, pc, echo, 5, 5*time.Millisecond, time.Second)
		if len(rtts) != 5 || slices.Min(rtts) < 80*time.Millisecond {
			t.Errorf("after SetWAN(40ms): %d echoes, RTTs %v", len(rtts), rtts)
		}
	})
	t.Run("tcp-through-delay-stage", func(t *testing.T) {
		t.Parallel()
		for _, site := range []string{"d", "j"} {
			tcpTransfer(t, lab, lab.Site(site).Host(0), 2<<20)
		}
	})
}

// tcpTransfer sends size random bytes from h to a listener on the server
// and checks the server's SHA-256 of what arrived.
func tcpTransfer(t *testing.T, lab *natlab.Lab, h *natlab.Host, size int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ln, err := lab.Server().Listen(ctx, "tcp4", natlab.ServerAddr.String()+":0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	sums := make(chan []byte, 1)
	go func() {
		c, aerr := ln.Accept()
		if aerr != nil {
			sums <- nil
			return
		}
		defer c.Close()
		hsh := sha256.New()
		_, _ = io.Copy(hsh, c)
		sums <- hsh.Sum(nil)
	}()
	c, err := h.DialContext(ctx, "tcp4", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	data := make([]byte, size)
	_, _ = rand.Read(data)
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := c.Write(data); err != nil {
		t.Fatal(err)
	}
	c.Close()
	want := sha256.Sum256(data)
	if got := <-sums; !bytes.Equal(got, want[:]) {
		t.Errorf("%s: TCP transfer of %d bytes arrived corrupted or incomplete", h.Name(), size)
	}
}

// TestMappingTimeout checks that an idle mapping dies after the site's
// MappingTimeout, for both the conntrack path (replies from the endpoint
// contacted) and the full-cone DNAT path (anyone), and lives before it.
func TestMappingTimeout(t *testing.T) {
	t.Parallel()
	testutil.RequireRoot(t)
	testutil.Deadline(t, time.Minute)
	lab := natlabtest.New(t, natlab.Config{Sites: []natlab.SiteConfig{
		{Name: "fc", NAT: natlab.FullCone, MappingTimeout: 2 * time.Second},
	}})
	srv := lab.Server()
	s1 := listenUDP(t, srv, natlab.ServerAddr.String()+":7100")
	s2 := listenUDP(t, srv, natlab.ServerAltAddr.String()+":7101")
	host := listenUDP(t, lab.Site("fc").Host(0), ":0")

	if _, err := host.WriteTo([]byte("open"), s1.LocalAddr()); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 100)
	_ = s1.SetReadDeadline(time.Now().Add(2 * time.Second))
	_, mapped, err := s1.ReadFrom(buf)
	if err != nil {
		t.Fatal(err)
	}
	received := func(from net.PacketConn) bool {
		if _, err := from.WriteTo([]byte("x"), mapped); err != nil {
			t.Fatal(err)
		}
		_ = host.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		_, _, err := host.ReadFrom(buf)
		return err == nil
	}
	if !received(s1) || !received(s2) {
		t.Fatal("fresh full-cone mapping did not let packets in")
	}
	time.Sleep(2500 * time.Millisecond) // idle past the 2 s timeout (the probes above were inbound only)
	if received(s1) {
		t.Error("reply from the contacted endpoint got through an expired mapping")
	}
	if received(s2) {
		t.Error("packet from another endpoint got through an expired full-cone mapping")
	}
}

// TestHostNetworking exercises the API a test uses to act inside a host:
// sockets through Do, Listen, DialContext and the pion Net, and processes
// through Run and Start.
func TestHostNetworking(t *testing.T) {
	t.Parallel()
	testutil.RequireRoot(t)
	testutil.Deadline(t, time.Minute)
	lab := natlabtest.New(t, natlab.Config{Sites: []natlab.SiteConfig{
		{Name: "a", NAT: natlab.PortRestrictedCone, Hosts: 2},
		{Name: "pub", NAT: natlab.None},
	}})
	ctx := context.Background()
	a := lab.Site("a")

	// TCP through the NAT: the server sees the site's public address.
	ln, err := lab.Server().Listen(ctx, "tcp4", natlab.ServerAddr.String()+":0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	for _, h := range []*natlab.Host{a.Host(0), a.Host(1), lab.Site("pub").Host(0)} {
		c, derr := h.DialContext(ctx, "tcp4", ln.Addr().String())
		if derr != nil {
			t.Fatal(derr)
		}
		sc, aerr := ln.Accept()
		if aerr != nil {
			t.Fatal(aerr)
		}
		got := sc.RemoteAddr().(*net.TCPAddr).AddrPort().Addr()
		if want := h.Site().PublicAddr; got != want {
			t.Errorf("%s: server sees %s, want %s", h.Name(), got, want)
		}
		sc.Close()
		c.Close()
	}

	// The pion Net: interfaces of the namespace, sockets in it.
	n, err := a.Host(0).Net()
	if err != nil {
		t.Fatal(err)
	}
	ifs, err := n.Interfaces()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	var addrs []string
	for _, ifi := range ifs {
		names = append(names, ifi.Name)
		as, _ := ifi.Addrs()
		for _, ad := range as {
			addrs = append(addrs, ad.String())
		}
	}
	slices.Sort(names)
	if !slices.Equal(names, []string{"eth0", "lo"}) {
		t.Errorf("interfaces in the host: %v, want eth0 and lo", names)
	}
	if !slices.Contains(addrs, a.Host(0).Addr().String()+"/24") {
		t.Errorf("host addresses %v lack %s", addrs, a.Host(0).Addr())
	}
	echo := serverEcho(t, lab, 7200)
	uc, err := n.ListenUDP("udp4", &net.UDPAddr{})
	if err != nil {
		t.Fatal(err)
	}
	defer uc.Close()
	if _, err = uc.WriteTo([]byte("hi"), echo); err != nil {
		t.Fatal(err)
	}
	_ = uc.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, _, err = uc.ReadFrom(make([]byte, 10)); err != nil {
		t.Errorf("pion Net socket: %v", err)
	}
	dc, err := n.Dial("udp4", echo.String())
	if err != nil {
		t.Fatal(err)
	}
	dc.Close()

	// Do passes errors through.
	sentinel := errors.New("sentinel")
	if derr := a.Host(0).Do(func() error { return sentinel }); !errors.Is(derr, sentinel) {
		t.Errorf("Do returned %v", derr)
	}

	// Run and Start.
	out, err := a.Host(1).Run(ctx, "ip", "-4", "-o", "addr", "show", "dev", "eth0")
	if err != nil || !strings.Contains(out, a.Host(1).Addr().String()) {
		t.Errorf("Run: %q, %v", out, err)
	}
	if _, err = a.Host(1).Run(ctx, "false"); err == nil {
		t.Error("Run of a failing command returned no error")
	}
	p, err := a.Host(1).Start(ctx, "sleep", "300")
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Stop(); err != nil {
		t.Errorf("Stop: %v", err)
	}
	if err := syscall.Kill(p.Pid(), 0); err == nil {
		t.Error("process still alive after Stop")
	}
}

// TestIsolation checks that nothing has a route out of the lab: no default
// route anywhere, and public hosts cannot reach into LANs.
func TestIsolation(t *testing.T) {
	t.Parallel()
	testutil.RequireRoot(t)
	testutil.Deadline(t, time.Minute)
	lab := natlabtest.New(t, natlab.Config{Sites: []natlab.SiteConfig{
		{Name: "a", NAT: natlab.FullCone, WAN: natlab.Link{Delay: time.Millisecond}},
		{Name: "b", NAT: natlab.None},
	}})
	ctx := context.Background()
	for _, ns := range lab.Namespaces() {
		out, err := exec.CommandContext(ctx, "ip", "-n", ns, "-4", "route", "show", "default").CombinedOutput()
		if err != nil {
			t.Fatalf("%s: %v: %s", ns, err, out)
		}
		if strings.TrimSpace(string(out)) != "" {
			t.Errorf("%s has a default route: %s", ns, out)
		}
	}
	unreachable := func(h *natlab.Host, dst string) {
		pc := listenUDP(t, h, ":0")
		_, err := pc.WriteTo([]byte("x"), net.UDPAddrFromAddrPort(netip.MustParseAddrPort(dst)))
		if !errors.Is(err, syscall.ENETUNREACH) {
			t.Errorf("%s -> %s: %v, want network unreachable", h.Name(), dst, err)
		}
	}
	unreachable(lab.Site("a").Host(0), "192.0.2.1:9")    // outside the lab
	unreachable(lab.Site("b").Host(0), "198.51.100.1:9") // outside the lab
	unreachable(lab.Server(), "10.1.0.11:9")             // into a LAN
	unreachable(lab.Site("a").Router, "8.8.8.8:53")      // a router has no way out either
}

// TestAddSitesAndHairpin grows a running lab and checks hairpinning between
// two hosts behind one NAT: with hairpin on, a packet to the other host's
// public mapping arrives from the sender's public address; off, it does
// not arrive.
func TestAddSitesAndHairpin(t *testing.T) {
	t.Parallel()
	testutil.RequireRoot(t)
	testutil.Deadline(t, time.Minute)
	lab := natlabtest.New(t, natlab.Config{})
	ctx := context.Background()
	var sites []natlab.SiteConfig
	for _, ty := range []natlab.NAT{natlab.FullCone, natlab.RestrictedCone, natlab.PortRestrictedCone, natlab.Symmetric} {
		sites = append(sites,
			natlab.SiteConfig{Name: ty.Short() + "on", NAT: ty, Hosts: 2, Hairpin: true},
			natlab.SiteConfig{Name: ty.Short() + "off", NAT: ty, Hosts: 2})
	}
	if err := lab.AddSites(ctx, sites...); err != nil {
		t.Fatal(err)
	}
	if err := lab.AddSites(ctx, natlab.SiteConfig{Name: "fcon", NAT: natlab.FullCone}); err == nil {
		t.Error("AddSites accepted a duplicate site name")
	}
	for _, s := range lab.Sites() {
		t.Run(s.Name(), func(t *testing.T) {
			t.Parallel()
			h1 := listenUDP(t, s.Host(0), ":0")
			h2 := listenUDP(t, s.Host(1), ":0")
			// The server sees h2's public mapping m2.
			buf := make([]byte, 100)
			rep := listenUDP(t, lab.Server(), natlab.ServerAddr.String()+":0")
			if _, err := h2.WriteTo([]byte("who"), rep.LocalAddr()); err != nil {
				t.Fatal(err)
			}
			_ = rep.SetReadDeadline(time.Now().Add(2 * time.Second))
			_, m2, err := rep.ReadFrom(buf)
			if err != nil {
				t.Fatal(err)
			}
			if _, err = h1.WriteTo([]byte("hairpin"), m2); err != nil {
				t.Fatal(err)
			}
			_ = h2.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
			n, from, err := h2.ReadFrom(buf)
			got := err == nil && string(buf[:n]) == "hairpin"
			want := s.Config().Hairpin
			if got != want {
				t.Fatalf("hairpin delivered %v, site hairpin %v (err %v)", got, want, err)
			}
			if got && from.(*net.UDPAddr).AddrPort().Addr() != s.PublicAddr {
				t.Errorf("hairpinned packet from %s, want the public address %s", from, s.PublicAddr)
			}
		})
	}
}
