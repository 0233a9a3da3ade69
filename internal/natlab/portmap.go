package natlab

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/pion/stun/v4"
)

// Port mapping: SiteConfig.PortMapping runs miniupnpd (Debian's
// miniupnpd-nftables build) on the site's router, so that UPnP IGD,
// NAT-PMP and PCP clients meet a real implementation. See README.md,
// "Port mapping".

const (
	// NATPMPPort is where miniupnpd answers NAT-PMP and PCP on the LAN.
	NATPMPPort = 5351
	// UPnPHTTPPort is miniupnpd's UPnP IGD HTTP port on the router's LAN
	// address (SSDP on 239.255.255.250:1900 points to it).
	UPnPHTTPPort = 5000
	// portMapSTUNPort is the lab's own RFC 5780 STUN server (coturn on the
	// server host, ports 3490 and 3491), which miniupnpd asks at start to
	// learn that its WAN address, reserved as every lab address is, is
	// still reachable 1:1. Off the usual 3478 so tests keep theirs.
	portMapSTUNPort = 3490
	// portMapTable is miniupnpd's nftables table on the router.
	portMapTable = "natlab_upnp"
)

// PortMapper is miniupnpd on one site's router, started by the lab and
// stopped at Lab.Close.
type PortMapper struct {
	site *Site
	proc *Process
	dir  string
}

// PortMapper returns the site's miniupnpd, or nil if the site was built
// without PortMapping.
func (s *Site) PortMapper() *PortMapper {
	s.linkMu.Lock()
	defer s.linkMu.Unlock()
	return s.portMapper
}

// Output is what miniupnpd has logged so far (it runs with -d).
func (m *PortMapper) Output() string { return m.proc.Output() }

// Rules lists miniupnpd's nftables rules on the router: one DNAT rule per
// UDP or TCP mapping in the prerouting chain, and one accept rule in the
// forward chain.
func (m *PortMapper) Rules(ctx context.Context) (string, error) {
	return m.site.Router.Run(ctx, "nft", "list", "table", "inet", portMapTable)
}

// Mappings returns the DNAT rules of the active mappings, one per line,
// as nft prints them ("... udp dport 40000 dnat ip to 10.1.0.11:40000").
func (m *PortMapper) Mappings(ctx context.Context) ([]string, error) {
	out, err := m.site.Router.Run(ctx, "nft", "list", "chain", "inet", portMapTable, "prerouting_miniupnpd")
	if err != nil {
		return nil, err
	}
	var rules []string
	for line := range strings.SplitSeq(out, "\n") {
		if line = strings.TrimSpace(line); strings.Contains(line, "dnat") {
			rules = append(rules, line)
		}
	}
	return rules, nil
}

// portMapRuleset is added to the router's ruleset for a site with port
// mapping: miniupnpd's own table (filled by miniupnpd; its prerouting DNAT
// runs before the lab's, its forward chain only accepts), the router's own
// traffic kept on its address and port (a symmetric NAT's masquerade
// would randomise miniupnpd's STUN check too, which then disables port
// forwarding), and the lab STUN server's answers let in. The lab's forward
// chain already accepts what a DNAT let in.
func portMapRuleset(wan netip.Addr) string {
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	w("table inet %s {}", portMapTable)
	w("delete table inet %s", portMapTable)
	w("table inet %s {", portMapTable)
	w("\tchain forward {")
	w("\t\ttype filter hook forward priority filter - 10; policy accept;")
	w("\t\tjump miniupnpd")
	w("\t}")
	w("\tchain miniupnpd {")
	w("\t}")
	w("\tchain prerouting {")
	w("\t\ttype nat hook prerouting priority dstnat - 10; policy accept;")
	w("\t\tjump prerouting_miniupnpd")
	w("\t}")
	w("\tchain postrouting {")
	w("\t\ttype nat hook postrouting priority srcnat - 10; policy accept;")
	w("\t\toifname \"wan\" ip saddr %s snat ip to %s", wan, wan)
	w("\t\tjump postrouting_miniupnpd")
	w("\t}")
	w("\tchain prerouting_miniupnpd {")
	w("\t}")
	w("\tchain postrouting_miniupnpd {")
	w("\t}")
	w("}")
	w("insert rule ip natlab in iifname \"wan\" ip saddr { %s, %s } udp sport { %d, %d } accept",
		ServerAddr, ServerAltAddr, portMapSTUNPort, portMapSTUNPort+1)
	return b.String()
}

// miniupnpdConf is the daemon's configuration for one site.
func miniupnpdConf(s *Site, dir string) string {
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	w("ext_ifname=wan")
	w("listening_ip=lan")
	w("http_port=%d", UPnPHTTPPort)
	if s.cfg.PortMapUPnPOnly {
		w("enable_natpmp=no")
	} else {
		w("enable_natpmp=yes")
	}
	w("enable_upnp=yes")
	w("secure_mode=yes")
	w("system_uptime=yes")
	w("notify_interval=30")
	w("min_lifetime=10")
	w("uuid=3d3f6e6a-0b5e-4c9b-8c7e-%012x", s.index)
	w("friendly_name=natlab %s", s.cfg.Name)
	w("lease_file=%s", filepath.Join(dir, "leases"))
	w("upnp_table_name=%s", portMapTable)
	w("upnp_nat_table_name=%s", portMapTable)
	w("upnp_forward_chain=miniupnpd")
	w("upnp_nat_chain=prerouting_miniupnpd")
	w("upnp_nat_postrouting_chain=postrouting_miniupnpd")
	// Every lab address is reserved (RFC 5737, RFC 1918), on which
	// miniupnpd refuses to map unless STUN proves the address 1:1.
	w("ext_perform_stun=yes")
	w("ext_stun_host=%s", ServerAddr)
	w("ext_stun_port=%d", portMapSTUNPort)
	w("allow 1024-65535 %s 1024-65535", s.LAN)
	w("deny 0-65535 0.0.0.0/0 0-65535")
	return b.String()
}

// startPortMappers starts miniupnpd on the new sites that ask for it,
// after the lab STUN server it checks its address with.
func (l *Lab) startPortMappers(ctx context.Context, sites []*Site) error {
	var want []*Site
	for _, s := range sites {
		if s.cfg.PortMapping {
			want = append(want, s)
		}
	}
	if len(want) == 0 {
		return nil
	}
	for _, bin := range []string{"miniupnpd", "turnserver"} {
		if _, err := exec.LookPath(bin); err != nil {
			return fmt.Errorf("natlab: port mapping needs %s (Debian: miniupnpd-nftables, coturn): %w", bin, err)
		}
	}
	if err := l.startPortMapSTUN(ctx); err != nil {
		return err
	}
	for _, s := range want {
		m, err := startMiniUPnPd(ctx, s)
		if err != nil {
			return err
		}
		s.linkMu.Lock()
		s.portMapper = m
		s.linkMu.Unlock()
	}
	return nil
}

// startPortMapSTUN runs coturn as a plain RFC 5780 STUN server (no relay,
// no TLS) on the server host's two addresses, once per lab, and waits
// until it answers.
func (l *Lab) startPortMapSTUN(ctx context.Context) error {
	l.mu.Lock()
	running := l.portMapSTUN != nil
	l.mu.Unlock()
	if running {
		return nil
	}
	dir, err := os.MkdirTemp("", "natlab-upnp-stun-")
	if err != nil {
		return err
	}
	l.addTempDir(dir)
	p, err := l.server.Start(context.WithoutCancel(ctx), "turnserver", "-n", "--stun-only",
		"--listening-ip", ServerAddr.String(), "--listening-ip", ServerAltAddr.String(),
		"--listening-port", fmt.Sprint(portMapSTUNPort), "--alt-listening-port", fmt.Sprint(portMapSTUNPort+1),
		"--no-tls", "--no-dtls", "--no-cli", "--log-file", "stdout", "--pidfile", filepath.Join(dir, "pid"),
		"--userdb", filepath.Join(dir, "db"))
	if err != nil {
		return err
	}
	l.mu.Lock()
	l.portMapSTUN = p
	l.mu.Unlock()
	wctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	if err := l.server.awaitSTUN(wctx, netip.AddrPortFrom(ServerAddr, portMapSTUNPort)); err != nil {
		return fmt.Errorf("natlab: the port-mapping STUN server did not answer: %w\n%s", err, tail([]byte(p.Output()), 2048))
	}
	return nil
}

// awaitSTUN sends Binding requests from h to addr until one is answered.
func (h *Host) awaitSTUN(ctx context.Context, addr netip.AddrPort) error {
	c, err := h.ListenPacket(ctx, "udp4", ":0")
	if err != nil {
		return err
	}
	defer c.Close()
	buf := make([]byte, 1500)
	for {
		m, err := stun.Build(stun.TransactionID, stun.BindingRequest)
		if err != nil {
			return err
		}
		if _, err := c.WriteTo(m.Raw, net.UDPAddrFromAddrPort(addr)); err != nil {
			return err
		}
		_ = c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		for {
			n, _, rerr := c.ReadFrom(buf)
			if rerr != nil {
				break
			}
			res := &stun.Message{Raw: buf[:n]}
			if res.Decode() == nil && res.TransactionID == m.TransactionID {
				return nil
			}
		}
		if err := ctx.Err(); err != nil {
			return err
		}
	}
}

// startMiniUPnPd writes the site's configuration and starts miniupnpd in
// the foreground (-d, so it logs to the Process output and dies with it),
// then waits until its STUN check enabled port forwarding.
func startMiniUPnPd(ctx context.Context, s *Site) (*PortMapper, error) {
	dir, err := os.MkdirTemp("", "natlab-upnp-"+s.cfg.Name+"-")
	if err != nil {
		return nil, err
	}
	s.lab.addTempDir(dir)
	conf := filepath.Join(dir, "miniupnpd.conf")
	if err = os.WriteFile(conf, []byte(miniupnpdConf(s, dir)), 0o600); err != nil {
		return nil, err
	}
	p, err := s.Router.Start(context.WithoutCancel(ctx), "miniupnpd", "-d", "-f", conf, "-P", filepath.Join(dir, "pid"))
	if err != nil {
		return nil, err
	}
	m := &PortMapper{site: s, proc: p, dir: dir}
	deadline := time.NewTimer(20 * time.Second)
	defer deadline.Stop()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		out := p.Output()
		switch {
		case strings.Contains(out, "Port forwarding is now disabled") || strings.Contains(out, "Port forwarding is impossible"):
			_ = p.Stop()
			return nil, fmt.Errorf("natlab: %s: miniupnpd disabled port forwarding:\n%s", s.Router.name, tail([]byte(out), 4096))
		case strings.Contains(out, "Port forwarding is now enabled") && (strings.Contains(out, "Listening for NAT-PMP") || s.cfg.PortMapUPnPOnly && strings.Contains(out, "HTTP listening on port")):
			return m, nil
		}
		select {
		case <-p.Done():
			return nil, fmt.Errorf("natlab: %s: miniupnpd exited: %w\n%s", s.Router.name, p.Wait(), tail([]byte(p.Output()), 4096))
		case <-deadline.C:
			_ = p.Stop()
			return nil, fmt.Errorf("natlab: %s: miniupnpd not ready after 20s:\n%s", s.Router.name, tail([]byte(out), 4096))
		case <-ctx.Done():
			_ = p.Stop()
			return nil, ctx.Err()
		case <-tick.C:
		}
	}
}

// addTempDir registers a directory for Close to remove.
func (l *Lab) addTempDir(dir string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.tempDirs = append(l.tempDirs, dir)
}

// removeTempDirs removes the port mappers' directories (after Close has
// stopped the processes).
func (l *Lab) removeTempDirs() error {
	l.mu.Lock()
	dirs := l.tempDirs
	l.tempDirs = nil
	l.mu.Unlock()
	var errs []error
	for _, d := range dirs {
		if err := os.RemoveAll(d); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Gateway is the LAN host's router address (where NAT-PMP, PCP and UPnP
// are asked); invalid for the server and public hosts.
func (h *Host) Gateway() netip.Addr { return h.gw }
