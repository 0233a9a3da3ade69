package natprobe_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferrynet/ferry/internal/natlab"
	"github.com/ferrynet/ferry/internal/natlab/coturn"
	"github.com/ferrynet/ferry/internal/natlab/natlabtest"
	"github.com/ferrynet/ferry/internal/natprobe"
	"github.com/ferrynet/ferry/internal/nattype"
	"github.com/ferrynet/ferry/internal/testutil"
	"github.com/ferrynet/ferry/internal/tlsconf"
	"github.com/ferrynet/ferry/server/relay"
	"github.com/ferrynet/ferry/server/rendezvous"
)

// TestMain checks that the lab tests left no namespace behind.
func TestMain(m *testing.M) {
	os.Exit(natlabtest.Run(m))
}

// stunServer is one RFC 5780 server implementation natprobe is checked
// against. Adding an implementation (Ferry's rendezvous server, once it
// exists) is one entry in stunServers.
type stunServer struct {
	name string
	// start runs the server on the lab's server host (both addresses)
	// and says how to reach it.
	start func(t *testing.T, lab *natlab.Lab) serverInfo
}

type serverInfo struct {
	stun string      // host:port of the STUN service
	turn []string    // TURN URIs reachable over TCP/TLS, if the server relays
	tls  *tls.Config // verifies the TURN TLS certificate
}

var stunServers = []stunServer{
	{name: "coturn", start: startCoturn},
	{name: "ferry-rendezvous", start: startRendezvous},
}

func startCoturn(t *testing.T, lab *natlab.Lab) serverInfo {
	t.Helper()
	testutil.RequireBinary(t, "turnserver", "coturn")
	testutil.RequireBinary(t, "turnutils_natdiscovery", "coturn")
	dir := t.TempDir()
	certFile, keyFile, pool := writeCert(t, dir, natlab.ServerAddr)
	srv, err := coturn.Start(context.Background(), coturn.ServerConfig{
		Host: lab.Server(), Dir: dir, CertFile: certFile, KeyFile: keyFile,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	return serverInfo{
		stun: netip.AddrPortFrom(natlab.ServerAddr, coturn.Port).String(),
		turn: []string{
			fmt.Sprintf("turn:%s:%d?transport=tcp", natlab.ServerAddr, coturn.Port),
			fmt.Sprintf("turns:%s:%d", natlab.ServerAddr, coturn.TLSPort),
		},
		tls: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
	}
}

// startRendezvous runs Ferry's rendezvous server (STUN with RFC 5780 on the
// server's two addresses and two ports, and STUN over TCP on the primary
// port) and, for the udp-blocked site's TURN check, Ferry's relay over TCP
// (on another port, so that STUN over TCP is the rendezvous's) and TLS, in
// the server host's namespace.
func startRendezvous(t *testing.T, lab *natlab.Lab) serverInfo {
	t.Helper()
	srv := lab.Server()
	var conns []net.PacketConn
	for _, ap := range []netip.AddrPort{
		netip.AddrPortFrom(natlab.ServerAddr, coturn.Port), netip.AddrPortFrom(natlab.ServerAddr, coturn.Port+1),
		netip.AddrPortFrom(natlab.ServerAltAddr, coturn.Port), netip.AddrPortFrom(natlab.ServerAltAddr, coturn.Port+1),
	} {
		c, err := srv.ListenUDP("udp4", net.UDPAddrFromAddrPort(ap))
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	ctx := context.Background()
	stunTCP, err := srv.Listen(ctx, "tcp4", netip.AddrPortFrom(natlab.ServerAddr, coturn.Port).String())
	if err != nil {
		t.Fatal(err)
	}
	rv, err := rendezvous.New(rendezvous.Config{STUNConns: conns, STUNListener: stunTCP, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rv.Close() })

	dir := t.TempDir()
	certFile, keyFile, pool := writeCert(t, dir, natlab.ServerAddr)
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	tcpAt := netip.AddrPortFrom(natlab.ServerAddr, coturn.Port+1)
	tlsAt := netip.AddrPortFrom(natlab.ServerAddr, coturn.TLSPort)
	tl, err := srv.Listen(ctx, "tcp4", tcpAt.String())
	if err != nil {
		t.Fatal(err)
	}
	sl, err := srv.Listen(ctx, "tcp4", tlsAt.String())
	if err != nil {
		t.Fatal(err)
	}
	rl, err := relay.New(relay.Config{
		TCPListeners: []net.Listener{tl},
		TLSListeners: []net.Listener{sl},
		TLSConfig:    &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12},
		Realm:        "natlab",
		Users:        map[string]string{"natlab": "natlab"},
		RelayIPs:     []netip.Addr{natlab.ServerAddr},
		Logger:       slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rl.Close() })
	return serverInfo{
		stun: netip.AddrPortFrom(natlab.ServerAddr, coturn.Port).String(),
		turn: []string{
			fmt.Sprintf("turn:%s?transport=tcp", tcpAt),
			fmt.Sprintf("turns:%s", tlsAt),
		},
		tls: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
	}
}

// labSite is one site of the acceptance lab and what natprobe must say.
type labSite struct {
	cfg      natlab.SiteConfig
	lossy    bool // 50 ms delay and 5 % loss on the WAN link
	lifetime bool // run the lifetime estimate (site with a 3 s mapping timeout)
}

func acceptanceSites() []labSite {
	var out []labSite
	for _, ty := range nattype.All() {
		hp := ty != nattype.None
		out = append(out, labSite{cfg: natlab.SiteConfig{Name: ty.Short(), NAT: ty, Hairpin: hp}})
		if ty != nattype.None && ty != nattype.UDPBlocked {
			out = append(out, labSite{cfg: natlab.SiteConfig{Name: ty.Short() + "nh", NAT: ty}})
		}
		out = append(out, labSite{lossy: true, cfg: natlab.SiteConfig{
			Name: ty.Short() + "l", NAT: ty, Hairpin: hp,
			WAN: natlab.Link{Delay: 50 * time.Millisecond, Loss: 5},
		}})
	}
	out = append(out, labSite{lifetime: true, cfg: natlab.SiteConfig{
		Name: "lt", NAT: natlab.PortRestrictedCone, MappingTimeout: 3 * time.Second,
	}})
	return out
}

type siteRun struct {
	site     labSite
	lab      *natlab.Site
	res      *natprobe.Result
	err      error
	disc     coturn.Discovery
	discErr  error
	discDone bool
	// natdiscovery -H
	hairpin    coturn.Discovery
	hairpinErr error
	// udp-blocked sites: natprobe again without TURN servers, so that
	// only STUN over TCP can tell "UDP blocked" from "unreachable".
	tcpOnly    *natprobe.Result
	tcpOnlyErr error
}

// TestNATProbeInLab is natprobe's acceptance test: for each NAT type,
// natprobe inside a lab host reports the right nat_type, mapping and
// filtering, agrees with coturn's natdiscovery, detects hairpinning on and
// off, still does with 50 ms delay and 5 % loss on the WAN link, finds
// TURN over TCP and TLS when UDP is blocked, and bounds the mapping
// lifetime.
func TestNATProbeInLab(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.Deadline(t, 4*time.Minute)
	for _, server := range stunServers {
		t.Run(server.name, func(t *testing.T) {
			testNATProbeAgainst(t, server)
		})
	}
}

func testNATProbeAgainst(t *testing.T, server stunServer) {
	sites := acceptanceSites()
	var cfgs []natlab.SiteConfig
	for _, s := range sites {
		cfgs = append(cfgs, s.cfg)
	}
	lab := natlabtest.New(t, natlab.Config{Sites: cfgs})
	info := server.start(t, lab)
	ctx := context.Background()

	// Everything at once: most of the time is spent waiting for answers
	// that a filtering NAT must not let through.
	runs := make([]*siteRun, len(sites))
	var wg sync.WaitGroup
	for i, s := range sites {
		r := &siteRun{site: s, lab: lab.Site(s.cfg.Name)}
		runs[i] = r
		h := r.lab.Host(0)
		cfg := natprobe.Config{
			Server: info.stun, ListenPacket: h.ListenPacket, Dial: h.DialContext,
		}
		if s.lossy {
			// 5 % each way loses ~10 % of transactions; a longer bound
			// gives each five transmissions instead of four.
			cfg.Timeout = 8 * time.Second
		}
		if s.cfg.NAT == nattype.UDPBlocked {
			only := cfg
			wg.Go(func() { r.tcpOnly, r.tcpOnlyErr = natprobe.Probe(ctx, only) })
			cfg.TURN, cfg.TLSConfig = info.turn, info.tls
		}
		if s.lifetime {
			cfg.Lifetime = 8 * time.Second
		}
		wg.Go(func() { r.res, r.err = natprobe.Probe(ctx, cfg) })
		if !s.lossy {
			// natdiscovery has no retransmissions: compare on clean links.
			r.discDone = true
			wg.Go(func() { r.disc, r.discErr = coturn.NATDiscovery(ctx, h, natlab.ServerAddr) })
			if s.cfg.NAT != nattype.UDPBlocked {
				wg.Go(func() { r.hairpin, r.hairpinErr = coturn.Hairpinning(ctx, h, natlab.ServerAddr) })
			}
		}
	}
	wg.Wait()

	var grid []string
	for _, r := range runs {
		t.Run(r.site.cfg.Name, func(t *testing.T) {
			checkSite(t, r)
		})
		grid = append(grid, gridRow(r))
	}
	t.Logf("natprobe vs natdiscovery (%s):\n%-6s %-22s %-8s %-22s %-27s %-27s %-8s %s\n%s", server.name,
		"site", "lab NAT", "link", "nat_type", "mapping", "filtering", "hairpin", "natdiscovery mapping / filtering / hairpin",
		strings.Join(grid, "\n"))
}

func gridRow(r *siteRun) string {
	link := "clean"
	if r.site.lossy {
		link = "50ms/5%"
	}
	nd := "-"
	if r.discDone {
		nd = fmt.Sprintf("%s / %s / hairpin %v", r.disc.Mapping, r.disc.Filtering, r.hairpin.Hairpin)
		if r.disc.UDPBlocked() {
			nd = "no UDP response"
		}
	}
	if r.res == nil {
		return fmt.Sprintf("%-6s %-22s %-8s error: %v", r.site.cfg.Name, r.site.cfg.NAT, link, r.err)
	}
	return fmt.Sprintf("%-6s %-22s %-8s %-22s %-27s %-27s %-8v %s", r.site.cfg.Name, r.site.cfg.NAT, link,
		r.res.NATType, r.res.Mapping, r.res.Filtering, r.res.Hairpinning, nd)
}

func checkSite(t *testing.T, r *siteRun) {
	t.Helper()
	ty := r.site.cfg.NAT
	res := r.res
	if r.err != nil {
		t.Fatalf("natprobe: %v (result %+v)", r.err, res)
	}
	dump := func() string {
		var b strings.Builder
		_ = natprobe.WriteText(&b, res, true)
		return b.String()
	}
	wantM, wantF := ty.Behaviour()
	if res.NATType != ty.ClassicName() || res.Mapping != wantM || res.Filtering != wantF {
		t.Errorf("natprobe says %s (%s, %s); the lab built %s (%s, %s)\n%s",
			res.NATType, res.Mapping, res.Filtering, ty.ClassicName(), wantM, wantF, dump())
	}
	if got := addrOf(t, res.PublicAddr); got != r.lab.PublicAddr {
		t.Errorf("public address %s, want the site's %s", res.PublicAddr, r.lab.PublicAddr)
	}
	if res.UDPBlocked != (ty == nattype.UDPBlocked) {
		t.Errorf("udp_blocked %v for %s", res.UDPBlocked, ty)
	}
	// Ferry's verdict must match the rules in nattype.
	var direct, relay []string
	for _, peer := range nattype.All() {
		if nattype.ExpectedPath(ty, peer) == nattype.Direct {
			direct = append(direct, peer.ClassicName())
		} else {
			relay = append(relay, peer.ClassicName())
		}
	}
	if !slices.Equal(res.DirectReachableWith, direct) || !slices.Equal(res.NeedsRelayWith, relay) {
		t.Errorf("direct %v relay %v, want direct %v relay %v", res.DirectReachableWith, res.NeedsRelayWith, direct, relay)
	}
	if ty == nattype.UDPBlocked {
		if res.STUNOverTCP == nil || !*res.STUNOverTCP {
			t.Errorf("STUN over TCP did not work through a udp-blocked NAT\n%s", dump())
		}
		if len(res.TURN) != 2 || !res.TURN[0].Reachable || !res.TURN[1].Reachable {
			t.Errorf("TURN over TCP and TLS not both reachable: %+v", res.TURN)
		}
		checkTCPOnly(t, r)
	} else {
		wantHairpin := r.site.cfg.Hairpin || ty == nattype.None
		if res.Hairpinning != wantHairpin {
			t.Errorf("hairpinning %v, site hairpin %v\n%s", res.Hairpinning, wantHairpin, dump())
		}
		if res.ALGDetected {
			t.Errorf("ALG detected in a lab without ALGs")
		}
		// snat keeps ports; fully-random masquerade does not.
		if wantPP := ty != nattype.Symmetric; res.PortPreserved != wantPP {
			t.Errorf("port_preserved %v, want %v", res.PortPreserved, wantPP)
		}
		if !res.RFC5780 || res.Mode != "rfc5780" {
			t.Errorf("server not used in RFC 5780 mode: %s", res.Mode)
		}
	}
	if r.site.lifetime {
		lt := res.MappingLifetime
		if lt == nil || lt.MinSeconds != 2 || lt.MaxSeconds == nil || *lt.MaxSeconds != 4 {
			t.Errorf("a 3 s mapping timeout should be bracketed by [2s, 4s): %+v\n%s", lt, dump())
		}
	}
	if r.discDone {
		if r.discErr != nil {
			t.Fatalf("natdiscovery: %v", r.discErr)
		}
		if ty == nattype.UDPBlocked {
			if !r.disc.UDPBlocked() {
				t.Errorf("natdiscovery got UDP answers through a udp-blocked NAT")
			}
			return
		}
		if r.disc.Mapping != res.Mapping || r.disc.Filtering != res.Filtering {
			t.Errorf("natprobe (%s, %s) disagrees with natdiscovery (%s, %s)\n%s",
				res.Mapping, res.Filtering, r.disc.Mapping, r.disc.Filtering, r.disc.Output)
		}
		if r.hairpinErr != nil {
			t.Fatalf("natdiscovery -H: %v", r.hairpinErr)
		}
		if r.hairpin.Hairpin != res.Hairpinning {
			t.Errorf("natprobe hairpinning %v disagrees with natdiscovery -H (%v)\n%s", res.Hairpinning, r.hairpin.Hairpin, r.hairpin.Output)
		}
	}
}

// checkTCPOnly: without TURN servers to fall back on, the STUN server's own
// answer over TCP makes natprobe say udp-blocked (not "unknown"), with the
// public address, and the TCP answer came from the STUN port.
func checkTCPOnly(t *testing.T, r *siteRun) {
	t.Helper()
	res := r.tcpOnly
	if r.tcpOnlyErr != nil {
		t.Fatalf("natprobe without TURN: %v (result %+v)", r.tcpOnlyErr, res)
	}
	var b strings.Builder
	_ = natprobe.WriteText(&b, res, true)
	if res.Mode != "udp-blocked" || res.NATType != nattype.UDPBlocked.ClassicName() || res.STUNOverTCP == nil || !*res.STUNOverTCP {
		t.Errorf("without TURN: mode %q, nat_type %q; want udp-blocked from STUN over TCP\n%s", res.Mode, res.NATType, b.String())
	}
	if got := addrOf(t, res.PublicAddr); got != r.lab.PublicAddr {
		t.Errorf("without TURN: public address %s, want the site's %s", res.PublicAddr, r.lab.PublicAddr)
	}
	want := netip.AddrPortFrom(natlab.ServerAddr, coturn.Port).String()
	found := false
	for _, tt := range res.Tests {
		found = found || tt.Name == "STUN Binding over TCP" && tt.Response && tt.To == want
	}
	if !found {
		t.Errorf("no answered STUN Binding over TCP to %s\n%s", want, b.String())
	}
	if !strings.Contains(b.String(), "no UDP answer") {
		t.Errorf("text report lacks the udp-blocked mode:\n%s", b.String())
	}
}

func addrOf(t *testing.T, s string) netip.Addr {
	t.Helper()
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		t.Fatalf("bad address %q: %v", s, err)
	}
	return ap.Addr()
}

// TestBasicModeInLab: against coturn with RFC 5780 turned off, natprobe
// behind a NAT reports the public address, says it ran in basic mode, and
// claims no mapping or filtering verdict.
func TestBasicModeInLab(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.RequireBinary(t, "turnserver", "coturn")
	testutil.Deadline(t, time.Minute)
	lab := natlabtest.New(t, natlab.Config{Sites: []natlab.SiteConfig{
		{Name: "a", NAT: natlab.PortRestrictedCone, Hairpin: true},
	}})
	srv, err := coturn.Start(context.Background(), coturn.ServerConfig{Host: lab.Server(), Dir: t.TempDir(), NoRFC5780: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	h := lab.Site("a").Host(0)
	res, err := natprobe.Probe(context.Background(), natprobe.Config{
		Server: natlab.ServerAddr.String(), ListenPacket: h.ListenPacket, Dial: h.DialContext,
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Mode != "basic" || res.RFC5780 || res.NATType != "unknown" ||
		res.Mapping != nattype.Unknown || res.Filtering != nattype.Unknown || !res.PortPreserved || !res.Hairpinning {
		t.Errorf("basic mode behind a NAT: %+v", res)
	}
	if got := addrOf(t, res.PublicAddr); got != lab.Site("a").PublicAddr {
		t.Errorf("public address %s", res.PublicAddr)
	}
	if !strings.Contains(strings.Join(res.Notes, "\n"), "does not support RFC 5780") {
		t.Errorf("notes: %v", res.Notes)
	}
}

// writeCert writes a self-signed certificate for ip to dir and returns the
// file names and a pool that trusts it.
func writeCert(t *testing.T, dir string, ip netip.Addr) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := tlsconf.WriteSelfSigned([]string{ip.String()}, certFile, keyFile); err != nil {
		t.Fatal(err)
	}
	pemBytes, err := os.ReadFile(certFile)
	if err != nil {
		t.Fatal(err)
	}
	pool = x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pemBytes) {
		t.Fatal("the self-signed certificate does not parse")
	}
	return certFile, keyFile, pool
}

// TestPortMappingInLab: natprobe's port-mapping line is right behind
// routers with and without miniupnpd, and the port allocation is "random"
// behind the symmetric NAT (masquerade fully-random) and "preserved"
// behind the cone NAT (snat).
func TestPortMappingInLab(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.RequireBinary(t, "miniupnpd", "miniupnpd-nftables")
	testutil.RequireBinary(t, "turnserver", "coturn")
	testutil.Deadline(t, 2*time.Minute)
	sites := []natlab.SiteConfig{
		{Name: "sm", NAT: natlab.Symmetric, PortMapping: true},
		{Name: "pm", NAT: natlab.PortRestrictedCone, PortMapping: true},
		{Name: "s", NAT: natlab.Symmetric},
		{Name: "p", NAT: natlab.PortRestrictedCone},
	}
	lab := natlabtest.New(t, natlab.Config{Sites: sites})
	info := startRendezvous(t, lab)
	results := make([]*natprobe.Result, len(sites))
	errs := make([]error, len(sites))
	var wg sync.WaitGroup
	for i, sc := range sites {
		h := lab.Site(sc.Name).Host(0)
		wg.Go(func() {
			results[i], errs[i] = natprobe.Probe(context.Background(), natprobe.Config{
				Server: info.stun, ListenPacket: h.ListenPacket, Dial: h.DialContext, Gateway: h.Gateway(),
			})
		})
	}
	wg.Wait()
	for i, sc := range sites {
		t.Run(sc.Name, func(t *testing.T) {
			res := results[i]
			if errs[i] != nil {
				t.Fatalf("natprobe: %v", errs[i])
			}
			var b strings.Builder
			_ = natprobe.WriteText(&b, res, true)
			pm := res.PortMapping
			if pm == nil {
				t.Fatalf("no port-mapping result\n%s", b.String())
			}
			want := "UPnP no, NAT-PMP no, PCP no"
			if sc.PortMapping {
				want = "UPnP yes, NAT-PMP yes, PCP yes"
				if pm.ExternalAddr != lab.Site(sc.Name).PublicAddr.String() {
					t.Errorf("NAT-PMP external address %q, want %s", pm.ExternalAddr, lab.Site(sc.Name).PublicAddr)
				}
			}
			if !strings.Contains(b.String(), "Port mapping     "+want) && !strings.Contains(b.String(), want+" (gateway") {
				t.Errorf("want port mapping %q\n%s", want, b.String())
			}
			wantAlloc := "preserved"
			if sc.NAT == natlab.Symmetric {
				wantAlloc = "random"
			}
			if res.PortAllocation == nil || res.PortAllocation.Pattern != wantAlloc || len(res.PortAllocation.Ports) != 5 {
				t.Errorf("port allocation %+v, want %s from 5 mappings\n%s", res.PortAllocation, wantAlloc, b.String())
			}
			if sc.NAT == natlab.Symmetric && !strings.Contains(b.String(), "birthday-paradox punching: needed") {
				t.Errorf("no birthday-punching verdict\n%s", b.String())
			}
			t.Logf("\n%s", b.String())
		})
	}
}
