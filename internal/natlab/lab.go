package natlab

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"
)

// Addresses of the lab. The public segment is the documentation range
// 203.0.113.0/24; site LANs are 10.<site index>.0.0/24.
var (
	PublicPrefix    = netip.MustParsePrefix("203.0.113.0/24")
	ServerAddr      = netip.MustParseAddr("203.0.113.2") // primary
	ServerAltAddr   = netip.MustParseAddr("203.0.113.3") // RFC 5780 alternate
	firstPublicHost = 10                                 // 203.0.113.10 onwards: site WANs and public hosts
)

// Lab is a running topology. Build it with New (or natlabtest.New in tests), add
// sites with AddSites, and remove everything with Close.
type Lab struct {
	cfg    Config
	prefix string
	log    *slog.Logger
	reaper *reaper

	mu         sync.Mutex
	closed     bool
	namespaces []string // every namespace created, in creation order
	server     *Host
	sites      map[string]*Site
	order      []*Site
	nextPublic int // next host byte in 203.0.113.0/24
	nextLAN    int // next site index for 10.<n>.0.0/24
	nextPort   int // next switch port number
	procs      map[*Process]bool
	stages     []*delayStage
	// Port mapping (portmap.go): the lab STUN server miniupnpd checks
	// with, and the directories of the daemons' files.
	portMapSTUN *Process
	tempDirs    []string
}

// Site is a NAT router and its LAN hosts (or, for NAT None, public hosts).
type Site struct {
	cfg   SiteConfig
	index int
	// Router is the NAT router; nil for NAT None.
	Router *Host
	// Hosts are the site's hosts, in order (Hosts[0] is "<name>1").
	Hosts []*Host
	// PublicAddr is the router's WAN address (for NAT None: the first
	// host's address).
	PublicAddr netip.Addr
	// LAN is the site's LAN prefix (invalid for NAT None).
	LAN netip.Prefix

	lab    *Lab
	links  []*linkEnd
	linkMu sync.Mutex
	// portMapper is miniupnpd on the router (SiteConfig.PortMapping).
	portMapper *PortMapper
}

// linkEnd is one link from the site to the public segment: the device in
// the site's namespace, the port on the switch, and the delay stage if any.
type linkEnd struct {
	ns, dev    string
	swNS, port string
	stage      *delayStage
	cfg        Link
}

// Name is the site's name.
func (s *Site) Name() string { return s.cfg.Name }

// NAT is the site's NAT type.
func (s *Site) NAT() NAT { return s.cfg.NAT }

// Config is the configuration the site was built with (WAN reflects the
// latest SetWAN).
func (s *Site) Config() SiteConfig {
	s.linkMu.Lock()
	defer s.linkMu.Unlock()
	return s.cfg
}

// Host returns the i-th host (0-based). It panics on a bad index like a
// slice would; tests index hosts they configured.
func (s *Site) Host(i int) *Host { return s.Hosts[i] }

// New builds a lab: the public segment, the server host with two
// addresses, and cfg.Sites. If anything fails, whatever was built is
// removed before New returns. Call Close when done.
//
// New needs root and the ip, nft and ethtool programs; see
// CheckPrerequisites.
func New(ctx context.Context, cfg Config) (lab *Lab, err error) {
	if err = cfg.Validate(); err != nil {
		return nil, err
	}
	if err = CheckPrerequisites(); err != nil {
		return nil, err
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.ReadyTimeout == 0 {
		cfg.ReadyTimeout = 10 * time.Second
	}
	sweepOnce.Do(func() {
		// Labs of processes killed with their reapers (a machine or
		// container restart) would otherwise stay until `natlab sweep`.
		if removed, serr := Sweep(); len(removed) > 0 || serr != nil {
			cfg.Logger.Info("removed stale labs of dead processes", "namespaces", len(removed), "err", serr)
		}
	})
	prefix := cfg.Prefix
	if prefix == "" {
		prefix = UniquePrefix()
	}
	if err = checkPrefixFree(prefix); err != nil {
		return nil, err
	}
	l := &Lab{
		cfg:        cfg,
		prefix:     prefix,
		log:        cfg.Logger.With("lab", strings.TrimSuffix(prefix, "-")),
		sites:      map[string]*Site{},
		procs:      map[*Process]bool{},
		nextPublic: firstPublicHost,
		nextLAN:    1,
		nextPort:   1,
	}
	defer func() {
		if err != nil {
			err = errors.Join(err, l.Close())
			lab = nil
		}
	}()
	if !strings.HasPrefix(prefix, CLIPrefix) {
		// A lab owned by a process gets a reaper that removes it if the
		// process dies without Close. CLI labs outlive their process.
		if l.reaper, err = startReaper(ctx, prefix); err != nil {
			return nil, err
		}
	}
	start := time.Now()
	if err = l.build(ctx, true, cfg.Sites); err != nil {
		return nil, err
	}
	l.log.Debug("lab built", "sites", len(cfg.Sites), "namespaces", len(l.namespaces), "took", time.Since(start))
	return l, nil
}

// sweepOnce runs Sweep before a process's first lab.
var sweepOnce sync.Once

// UniquePrefix returns "natlab-<pid>-<4 random chars>-", the default
// prefix: unique across processes and findable by Sweep once the process
// is gone.
func UniquePrefix() string {
	const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return fmt.Sprintf("natlab-%d-%s-", os.Getpid(), b)
}

func checkPrefixFree(prefix string) error {
	names, err := listNamespaces()
	if err != nil {
		return fmt.Errorf("natlab: list namespaces: %w", err)
	}
	for _, n := range names {
		if strings.HasPrefix(n, prefix) {
			return fmt.Errorf("natlab: namespaces with prefix %q already exist (%s); remove them with `natlab down` first", prefix, n)
		}
	}
	return nil
}

// Prefix is the prefix of every namespace of this lab.
func (l *Lab) Prefix() string { return l.prefix }

// Server is the server host on the public segment. Its two addresses are
// ServerAddr and ServerAltAddr, for RFC 5780 servers.
func (l *Lab) Server() *Host { return l.server }

// Site returns the named site, or nil.
func (l *Lab) Site(name string) *Site {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.sites[name]
}

// Sites returns the sites in the order they were added.
func (l *Lab) Sites() []*Site {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]*Site(nil), l.order...)
}

// Namespaces lists the lab's namespaces, sorted.
func (l *Lab) Namespaces() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := append([]string(nil), l.namespaces...)
	sort.Strings(out)
	return out
}

// AddSites builds more sites into a running lab, all at once. On error
// the lab stays usable; namespaces of the failed sites are removed at
// Close.
func (l *Lab) AddSites(ctx context.Context, sites ...SiteConfig) error {
	l.mu.Lock()
	err := validateSites(l.sites, sites)
	closed := l.closed
	l.mu.Unlock()
	if err != nil {
		return err
	}
	if closed {
		return errors.New("natlab: lab is closed")
	}
	return l.build(ctx, false, sites)
}

// Close stops everything the lab runs (processes, delay stages), removes
// every namespace it created, and waits. It is idempotent and safe to call
// after a failed build.
func (l *Lab) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	procs := make([]*Process, 0, len(l.procs))
	for p := range l.procs {
		procs = append(procs, p)
	}
	stages := l.stages
	names := append([]string(nil), l.namespaces...)
	l.mu.Unlock()

	var errs []error
	for _, p := range procs {
		_ = p.Stop() // a killed process's error is not the lab's
	}
	for _, s := range stages {
		if err := s.close(); err != nil {
			errs = append(errs, err)
		}
	}
	if err := deleteNamespaces(names); err != nil {
		errs = append(errs, err)
	}
	if err := l.removeTempDirs(); err != nil {
		errs = append(errs, err)
	}
	if err := l.reaper.stop(); err != nil {
		errs = append(errs, err)
	}
	l.log.Debug("lab closed", "namespaces", len(names))
	return errors.Join(errs...)
}

func (l *Lab) track(p *Process) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return errors.New("natlab: lab is closed")
	}
	l.procs[p] = true
	return nil
}

func (l *Lab) untrack(p *Process) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.procs, p)
}

// SetWAN changes the shaping of the site's WAN link(s) at run time. Loss
// can always change; delay and jitter need the delay stage, which exists
// only if the site was built with a WAN delay or jitter, or DelayStage.
func (s *Site) SetWAN(ctx context.Context, link Link) error {
	if err := link.Validate(); err != nil {
		return err
	}
	s.linkMu.Lock()
	defer s.linkMu.Unlock()
	for _, le := range s.links {
		if link.NeedsStage() && le.stage == nil {
			return fmt.Errorf("natlab: site %s was built without a delay stage; set SiteConfig.DelayStage (or a WAN delay) at build time", s.cfg.Name)
		}
	}
	var errs []error
	for _, le := range s.links {
		if le.stage != nil {
			le.stage.set(link)
		}
		if err := runCmd(ctx, lossRuleset(le.port, link.Loss), "ip", "netns", "exec", le.swNS, "nft", "-f", "-"); err != nil {
			errs = append(errs, err)
		}
		le.cfg = link
	}
	s.cfg.WAN = link
	return errors.Join(errs...)
}

// DelayDrops reports how many frames the site's delay stages dropped
// (queue overflow or oversized frames); for diagnostics.
func (s *Site) DelayDrops() uint64 {
	s.linkMu.Lock()
	defer s.linkMu.Unlock()
	var n uint64
	for _, le := range s.links {
		if le.stage != nil {
			n += le.stage.drops.Load()
		}
	}
	return n
}

// ---- building ----

// plan collects everything one build step needs, so that the whole batch of
// sites costs a handful of `ip` invocations rather than dozens per site.
type plan struct {
	newNS   []string
	sysctls map[string][][2]string
	links   []string            // root `ip -batch` lines creating veth pairs
	perNS   map[string][]string // `ip -n NS -batch` lines
	ports   map[string][]string // bridge ports, enslaved after perNS
	ethtool map[string][]string // devices per namespace
	nft     map[string]string
	delays  []*pendingStage
	probes  []*Host // hosts that must reach the server before we return
}

type pendingStage struct {
	ns   string
	link Link
	end  *linkEnd
}

func newPlan() *plan {
	return &plan{
		sysctls: map[string][][2]string{},
		perNS:   map[string][]string{},
		ports:   map[string][]string{},
		ethtool: map[string][]string{},
		nft:     map[string]string{},
	}
}

func (p *plan) ns(name string, extra ...[2]string) {
	p.newNS = append(p.newNS, name)
	// No IPv6 in the lab: it would add link-local addresses, router
	// solicitations and DAD noise on every link (and through delay stages).
	//
	// Bridges (the public switch, router LANs) must not run frames through
	// the IP hooks: with br_netfilter loaded, a hairpin DNAT would be
	// handled at layer 2 and the frame dropped at its ingress port.
	p.sysctls[name] = append([][2]string{
		{"net.ipv6.conf.all.disable_ipv6", "1"},
		{"net.ipv6.conf.default.disable_ipv6", "1"},
		{"?net.bridge.bridge-nf-call-iptables", "0"},
		{"?net.bridge.bridge-nf-call-ip6tables", "0"},
		{"?net.bridge.bridge-nf-call-arptables", "0"},
	}, extra...)
	p.perNS[name] = append(p.perNS[name], "link set lo up")
}

// veth creates a pair between two namespaces and turns off the offloads
// that would leave frames with unfinished checksums or as GSO super-frames
// when a delay stage copies them.
func (p *plan) veth(nsA, devA, nsB, devB string) {
	p.links = append(p.links, fmt.Sprintf("link add %s netns %s type veth peer name %s netns %s", devA, nsA, devB, nsB))
	p.ethtool[nsA] = append(p.ethtool[nsA], devA)
	p.ethtool[nsB] = append(p.ethtool[nsB], devB)
}

// enslave plans a bridge-port line for after every link is up: a port
// enslaved before its veth peer is up stays disabled until the kernel's
// link watcher notices the carrier, which can take a second.
func (p *plan) enslave(ns, format string, args ...any) {
	p.ports[ns] = append(p.ports[ns], fmt.Sprintf(format, args...))
}

func (p *plan) cmd(ns, format string, args ...any) {
	p.perNS[ns] = append(p.perNS[ns], fmt.Sprintf(format, args...))
}

func (l *Lab) nsName(short string) string { return l.prefix + short }

// publicLink plans the link from (ns, dev) to the public switch, through a
// delay namespace when the link has delay or jitter.
func (l *Lab) publicLink(p *plan, ns, dev, stageName string, link Link, forceStage bool) *linkEnd {
	sw := l.nsName("sw")
	port := fmt.Sprintf("p%d", l.nextPort)
	l.nextPort++
	end := &linkEnd{ns: ns, dev: dev, swNS: sw, port: port, cfg: link}
	if link.NeedsStage() || forceStage {
		dly := l.nsName(stageName)
		p.ns(dly)
		p.veth(ns, dev, dly, "in")
		p.veth(dly, "out", sw, port)
		p.cmd(dly, "link set in up")
		p.cmd(dly, "link set out up")
		p.delays = append(p.delays, &pendingStage{ns: dly, link: link, end: end})
	} else {
		p.veth(ns, dev, sw, port)
	}
	p.cmd(sw, "link set %s up", port)
	p.enslave(sw, "link set %s master br0", port)
	if link.Loss > 0 {
		p.nft[sw] += lossRuleset(port, link.Loss)
	}
	return end
}

func (l *Lab) allocPublic() (netip.Addr, error) {
	if l.nextPublic > 254 {
		return netip.Addr{}, errors.New("natlab: public segment full (245 public addresses)")
	}
	a := netip.AddrFrom4([4]byte{203, 0, 113, byte(l.nextPublic)})
	l.nextPublic++
	return a, nil
}

// build creates the core (first build only) and the given sites.
func (l *Lab) build(ctx context.Context, core bool, sites []SiteConfig) error {
	l.mu.Lock()
	p := newPlan()
	var newSites []*Site
	err := func() error {
		if core {
			sw := l.nsName("sw")
			p.ns(sw)
			p.cmd(sw, "link add br0 type bridge")
			p.cmd(sw, "link set br0 up")
			srv := l.nsName("srv")
			p.ns(srv)
			l.server = &Host{lab: l, name: "srv", ns: srv, addrs: []netip.Addr{ServerAddr, ServerAltAddr}}
			l.publicLink(p, srv, "eth0", "srv-dly", l.cfg.ServerLink, false)
			p.cmd(srv, "addr add %s/24 dev eth0", ServerAddr)
			p.cmd(srv, "addr add %s/24 dev eth0", ServerAltAddr)
			p.cmd(srv, "link set eth0 up")
		}
		for _, sc := range sites {
			s, err := l.planSite(p, sc)
			if err != nil {
				return err
			}
			newSites = append(newSites, s)
		}
		// Register names first: from here on Close removes them.
		l.namespaces = append(l.namespaces, p.newNS...)
		return nil
	}()
	l.mu.Unlock()
	if err != nil {
		return err
	}

	step := func(name string, t0 time.Time) { l.log.Debug("build step", "step", name, "took", time.Since(t0)) }
	t0 := time.Now()
	var lines []string
	for _, n := range p.newNS {
		lines = append(lines, "netns add "+n)
	}
	if err := ipBatch(ctx, "", lines); err != nil {
		return err
	}
	step("netns add", t0)

	t0 = time.Now()
	if err := forEach(ctx, p.newNS, func(ns string) error { return writeSysctls(ns, p.sysctls[ns]) }); err != nil {
		return err
	}
	step("sysctl", t0)

	t0 = time.Now()
	if err := ipBatch(ctx, "", p.links); err != nil {
		return err
	}
	step("veth", t0)

	t0 = time.Now()
	// The switch comes first: every other batch may enslave ports to br0.
	nsList := slices.Collect(maps.Keys(p.perNS))
	if err := forEach(ctx, nsList, func(ns string) error { return ipBatch(ctx, ns, p.perNS[ns]) }); err != nil {
		return err
	}
	portNS := slices.Collect(maps.Keys(p.ports))
	if err := forEach(ctx, portNS, func(ns string) error { return ipBatch(ctx, ns, p.ports[ns]) }); err != nil {
		return err
	}
	step("ip config", t0)

	t0 = time.Now()
	ethNS := slices.Collect(maps.Keys(p.ethtool))
	if err := forEach(ctx, ethNS, func(ns string) error {
		var script []string
		for _, dev := range p.ethtool[ns] {
			script = append(script, fmt.Sprintf("ethtool -K %s tx off sg off tso off gso off gro off >/dev/null", dev))
		}
		return runCmd(ctx, "", "ip", "netns", "exec", ns, "sh", "-ec", strings.Join(script, "\n"))
	}); err != nil {
		return err
	}
	step("ethtool", t0)

	t0 = time.Now()
	nftNS := slices.Collect(maps.Keys(p.nft))
	if err := forEach(ctx, nftNS, func(ns string) error {
		return runCmd(ctx, p.nft[ns], "ip", "netns", "exec", ns, "nft", "-f", "-")
	}); err != nil {
		return err
	}
	step("nft", t0)

	t0 = time.Now()
	stageNS := make([]string, len(p.delays))
	byNS := map[string]*pendingStage{}
	for i, ps := range p.delays {
		stageNS[i], byNS[ps.ns] = ps.ns, ps
	}
	if err := forEach(ctx, stageNS, func(ns string) error {
		ps := byNS[ns]
		st, err := startDelayStage(ps.ns, ps.link)
		if err != nil {
			return err
		}
		l.mu.Lock()
		defer l.mu.Unlock()
		ps.end.stage = st
		l.stages = append(l.stages, st)
		return nil
	}); err != nil {
		return err
	}
	step("delay stages", t0)

	t0 = time.Now()
	if err := l.waitReady(ctx, p.probes); err != nil {
		return err
	}
	step("ready", t0)

	t0 = time.Now()
	if err := l.startPortMappers(ctx, newSites); err != nil {
		return err
	}
	step("port mappers", t0)

	l.mu.Lock()
	for _, s := range newSites {
		l.sites[s.cfg.Name] = s
		l.order = append(l.order, s)
	}
	l.mu.Unlock()
	return nil
}

// forEach runs fn for every item with bounded parallelism (the machine may
// be small; `ip` and `nft` are quick but exec is not free).
func forEach(ctx context.Context, items []string, fn func(string) error) error {
	g, _ := errgroup.WithContext(ctx)
	g.SetLimit(4)
	for _, it := range items {
		g.Go(func() error { return fn(it) })
	}
	return g.Wait()
}

// planSite allocates addresses and plans one site. Called with l.mu held.
func (l *Lab) planSite(p *plan, sc SiteConfig) (*Site, error) {
	if sc.Name == "srv" || sc.Name == "sw" {
		return nil, fmt.Errorf("natlab: site name %q is reserved", sc.Name)
	}
	s := &Site{cfg: sc, lab: l}
	if sc.NAT == None {
		for i := 1; i <= sc.hosts(); i++ {
			addr, err := l.allocPublic()
			if err != nil {
				return nil, err
			}
			short := fmt.Sprintf("%s%d", sc.Name, i)
			ns := l.nsName(short)
			p.ns(ns)
			h := &Host{lab: l, site: s, name: short, ns: ns, addrs: []netip.Addr{addr}}
			stage := fmt.Sprintf("%s-dly%d", sc.Name, i)
			if i == 1 {
				stage = sc.Name + "-dly"
			}
			s.links = append(s.links, l.publicLink(p, ns, "eth0", stage, sc.WAN, sc.DelayStage))
			p.cmd(ns, "addr add %s/24 dev eth0", addr)
			p.cmd(ns, "link set eth0 up")
			s.Hosts = append(s.Hosts, h)
			p.probes = append(p.probes, h)
		}
		s.PublicAddr = s.Hosts[0].Addr()
		return s, nil
	}

	if l.nextLAN > 250 {
		return nil, errors.New("natlab: too many sites (250)")
	}
	s.index = l.nextLAN
	l.nextLAN++
	wan, err := l.allocPublic()
	if err != nil {
		return nil, err
	}
	s.PublicAddr = wan
	s.LAN = netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(s.index), 0, 0}), 24)
	gw := netip.AddrFrom4([4]byte{10, byte(s.index), 0, 1})

	rshort := sc.Name + "-nat"
	rns := l.nsName(rshort)
	sysctls := [][2]string{
		{"net.ipv4.ip_forward", "1"},
		{"net.ipv4.conf.all.send_redirects", "0"},
		{"net.ipv4.conf.default.send_redirects", "0"},
	}
	if sc.MappingTimeout > 0 {
		secs := fmt.Sprint(int(sc.MappingTimeout.Round(time.Second) / time.Second))
		sysctls = append(sysctls,
			[2]string{"net.netfilter.nf_conntrack_udp_timeout", secs},
			[2]string{"net.netfilter.nf_conntrack_udp_timeout_stream", secs})
	}
	p.ns(rns, sysctls...)
	s.Router = &Host{lab: l, site: s, name: rshort, ns: rns, addrs: []netip.Addr{wan, gw}}
	s.links = append(s.links, l.publicLink(p, rns, "wan", sc.Name+"-dly", sc.WAN, sc.DelayStage))
	p.cmd(rns, "addr add %s/24 dev wan", wan)
	p.cmd(rns, "link set wan up")
	p.cmd(rns, "link add lan type bridge")
	p.cmd(rns, "addr add %s/24 dev lan", gw)
	p.cmd(rns, "link set lan up")
	p.nft[rns] = routerRuleset(sc.NAT, wan, s.LAN, sc.Hairpin, sc.MappingTimeout) + p.nft[rns]
	if sc.PortMapping {
		p.nft[rns] += portMapRuleset(wan)
	}

	for i := 1; i <= sc.hosts(); i++ {
		short := fmt.Sprintf("%s%d", sc.Name, i)
		ns := l.nsName(short)
		addr := netip.AddrFrom4([4]byte{10, byte(s.index), 0, byte(10 + i)})
		p.ns(ns, [2]string{"net.ipv4.conf.all.accept_redirects", "0"})
		port := fmt.Sprintf("lan%d", i)
		p.veth(ns, "eth0", rns, port)
		p.cmd(rns, "link set %s up", port)
		p.enslave(rns, "link set %s master lan", port)
		p.cmd(ns, "addr add %s/24 dev eth0", addr)
		p.cmd(ns, "link set eth0 up")
		// Only lab subnets: the public segment through the router, and
		// the LAN itself. No default route, so nothing leaves the lab.
		p.cmd(ns, "route add %s via %s", PublicPrefix, gw)
		h := &Host{lab: l, site: s, name: short, ns: ns, addrs: []netip.Addr{addr}, gw: gw}
		s.Hosts = append(s.Hosts, h)
		p.probes = append(p.probes, h)
	}
	return s, nil
}
