package natlab

import (
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"time"

	"github.com/ferrynet/ferry/internal/nattype"
)

// NAT is the behaviour of a site's router; see package nattype.
type NAT = nattype.Type

// The NAT types, re-exported for convenience.
const (
	None               = nattype.None
	FullCone           = nattype.FullCone
	RestrictedCone     = nattype.RestrictedCone
	PortRestrictedCone = nattype.PortRestrictedCone
	Symmetric          = nattype.Symmetric
	UDPBlocked         = nattype.UDPBlocked
)

// Link shapes one link between a site (or the server) and the public
// segment. Delay and Jitter apply in each direction; a round trip across
// one link costs 2*Delay. Loss is the percentage of IP packets dropped in
// each direction (nftables `numgen random`), with 0.01 % resolution.
//
// Delay and jitter need a userspace stage (the kernel here has no netem):
// a namespace that bridges two veths with AF_PACKET sockets served by
// goroutines of the process that built the lab. Frames keep their order;
// jitter delays each frame by Delay plus a uniform value in [-Jitter,
// +Jitter], but never lets it overtake the frame before it.
type Link struct {
	Delay  time.Duration
	Jitter time.Duration
	Loss   float64
}

// NeedsStage reports whether the link needs the userspace delay stage.
func (l Link) NeedsStage() bool { return l.Delay > 0 || l.Jitter > 0 }

// Validate checks the ranges.
func (l Link) Validate() error {
	if l.Delay < 0 || l.Delay > 10*time.Second {
		return fmt.Errorf("natlab: delay %v out of range [0, 10s]", l.Delay)
	}
	if l.Jitter < 0 || l.Jitter > 10*time.Second {
		return fmt.Errorf("natlab: jitter %v out of range [0, 10s]", l.Jitter)
	}
	if l.Loss < 0 || l.Loss > 100 {
		return fmt.Errorf("natlab: loss %v%% out of range [0, 100]", l.Loss)
	}
	return nil
}

// SiteConfig describes one site: a NAT router with a LAN of hosts, or, for
// NAT None, hosts attached straight to the public segment.
type SiteConfig struct {
	// Name is 1-12 characters of [a-z0-9], unique in the lab. It becomes
	// part of namespace names ("<prefix><name>-nat", "<prefix><name>1").
	Name string
	// NAT is the router's behaviour.
	NAT NAT
	// Hosts is the number of hosts on the LAN; 0 means 1, at most 20.
	Hosts int
	// Hairpin makes the router deliver packets that LAN hosts send to its
	// own public address to the LAN host that owns the mapping, with the
	// sender's public address as source (RFC 4787 REQ-9). Hairpinned
	// packets are not filtered: LAN hosts are trusted, as on most home
	// routers. Off, such packets are dropped.
	Hairpin bool
	// MappingTimeout is how long an idle UDP mapping lives (both the
	// conntrack UDP timeouts and the cone mapping sets). 0 keeps the kernel
	// defaults: 30 s before a reply is seen, 120 s after.
	MappingTimeout time.Duration
	// WAN shapes the link between the router (or the public host) and the
	// public segment.
	WAN Link
	// DelayStage builds the userspace delay stage on the WAN link even
	// when WAN has no delay or jitter, so that Site.SetWAN can add them
	// later (a clean run and a 20 ms run of a matrix on one lab).
	DelayStage bool
	// PortMapping runs miniupnpd (UPnP IGD, NAT-PMP and PCP, nftables
	// backend) on the router, started by the lab and stopped at Close;
	// Site.PortMapper reads its state. It needs a NAT other than none and
	// the miniupnpd and turnserver programs (Debian: miniupnpd-nftables,
	// coturn).
	PortMapping bool
	// PortMapUPnPOnly, with PortMapping, turns miniupnpd's NAT-PMP and
	// PCP off: only UPnP IGD answers.
	PortMapUPnPOnly bool
}

// Config describes a lab. The zero value is a server on the public segment
// with no sites; add sites here or later with Lab.AddSites.
type Config struct {
	// Prefix starts every namespace name. Empty means a unique one,
	// "natlab-<pid>-<random>-", which lets parallel test processes share
	// the machine and lets Sweep find labs whose process died. A custom
	// prefix must be 1-40 characters of [a-z0-9-] and should end in "-".
	Prefix string
	// Sites to build at once (faster than adding them one at a time).
	Sites []SiteConfig
	// ServerLink shapes the server host's link to the public segment.
	ServerLink Link
	// ReadyTimeout bounds the check, after building, that every host can
	// reach the server (which also warms the ARP caches through the delay
	// stages). 0 means 10 s.
	ReadyTimeout time.Duration
	// Logger receives build steps at debug level. nil discards them.
	Logger *slog.Logger
}

var (
	siteNameRE = regexp.MustCompile(`^[a-z0-9]{1,12}$`)
	prefixRE   = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,39}$`)
)

// MaxHosts is the largest number of hosts one site may have.
const MaxHosts = 20

// Validate checks one site.
func (s SiteConfig) Validate() error {
	if !siteNameRE.MatchString(s.Name) {
		return fmt.Errorf("natlab: site name %q must be 1-12 characters of [a-z0-9]", s.Name)
	}
	if !s.NAT.Valid() {
		return fmt.Errorf("natlab: site %s: unknown NAT type %q", s.Name, s.NAT)
	}
	if s.Hosts < 0 || s.Hosts > MaxHosts {
		return fmt.Errorf("natlab: site %s: %d hosts out of range [0, %d]", s.Name, s.Hosts, MaxHosts)
	}
	if s.MappingTimeout < 0 || (s.MappingTimeout > 0 && s.MappingTimeout < time.Second) {
		return fmt.Errorf("natlab: site %s: mapping timeout %v must be 0 or at least 1s", s.Name, s.MappingTimeout)
	}
	if s.PortMapUPnPOnly && !s.PortMapping {
		return fmt.Errorf("natlab: site %s: PortMapUPnPOnly needs PortMapping", s.Name)
	}
	if s.PortMapping && s.NAT == None {
		return fmt.Errorf("natlab: site %s: port mapping needs a NAT router (type %s has none)", s.Name, s.NAT)
	}
	if s.Hairpin && s.NAT == None {
		return fmt.Errorf("natlab: site %s: hairpin needs a NAT (type %s has none)", s.Name, s.NAT)
	}
	if err := s.WAN.Validate(); err != nil {
		return fmt.Errorf("site %s: %w", s.Name, err)
	}
	return nil
}

func (s SiteConfig) hosts() int {
	if s.Hosts == 0 {
		return 1
	}
	return s.Hosts
}

// Validate checks the whole configuration.
func (c Config) Validate() error {
	if c.Prefix != "" && !prefixRE.MatchString(c.Prefix) {
		return fmt.Errorf("natlab: prefix %q must be 1-40 characters of [a-z0-9-]", c.Prefix)
	}
	if err := c.ServerLink.Validate(); err != nil {
		return fmt.Errorf("server link: %w", err)
	}
	if c.ReadyTimeout < 0 {
		return errors.New("natlab: negative ReadyTimeout")
	}
	return validateSites(nil, c.Sites)
}

func validateSites(existing map[string]*Site, sites []SiteConfig) error {
	seen := map[string]bool{}
	for n := range existing {
		seen[n] = true
	}
	for _, s := range sites {
		if err := s.Validate(); err != nil {
			return err
		}
		if seen[s.Name] {
			return fmt.Errorf("natlab: duplicate site name %q", s.Name)
		}
		seen[s.Name] = true
	}
	return nil
}
