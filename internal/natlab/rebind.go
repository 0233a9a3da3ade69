package natlab

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os/exec"
	"strings"
)

// NAT rebinding: what a home router does to its peers when it reboots or
// its ISP hands it a new address. Both helpers act on the router
// namespace only; the hosts behind it keep their sockets.

// ConntrackProgram is the program FlushMappings runs, and the Debian
// package that provides it.
const (
	ConntrackProgram = "conntrack"
	ConntrackPackage = "conntrack"
)

// errNoRouter is returned for sites of NAT None, which have no mappings.
var errNoRouter = errors.New("natlab: the site has no NAT router (NAT none)")

// FlushMappings makes the site's router forget every mapping it holds, as
// a router restart does: it empties the router namespace's conntrack table
// (`conntrack -F`), where the kernel keeps each flow's SNAT binding and
// the state that lets replies in, and the nftables sets the cone NATs fill
// (@ext: external port → internal endpoint, @contacted: who may send in).
// Packets from outside to an old mapping are dropped from then on; the
// next packet a host sends out creates a new mapping (with Linux's port
// preservation usually on the same external port, as many routers do).
//
// It needs the conntrack program (Debian package conntrack); without it
// the error says so.
func (s *Site) FlushMappings(ctx context.Context) error {
	if s.Router == nil {
		return errNoRouter
	}
	if _, err := exec.LookPath(ConntrackProgram); err != nil {
		return fmt.Errorf("natlab: %s not found in PATH: install it with `apt-get install %s`", ConntrackProgram, ConntrackPackage)
	}
	// The sets first: a packet arriving between the two steps then finds
	// neither a conntrack entry nor a cone DNAT, rather than a DNAT that
	// recreates the entry just flushed.
	if err := runCmd(ctx, flushSetsRuleset, "ip", "netns", "exec", s.Router.ns, "nft", "-f", "-"); err != nil {
		return err
	}
	return runCmd(ctx, "", "ip", "netns", "exec", s.Router.ns, ConntrackProgram, "-F")
}

// flushSetsRuleset empties the cone NAT sets of routerRuleset (they exist
// for every NAT type, unused by some).
const flushSetsRuleset = "flush map ip natlab ext\nflush set ip natlab contacted\n"

// ChangePublicAddr gives the site's router a new WAN address in the
// public /24, as an ISP does when a router reconnects: the NAT rules are
// rebuilt for the new address (their sets start empty), the old address
// is replaced by the new one and every mapping flushed (FlushMappings). Hosts
// behind the router appear from the new address from then on; packets to
// the old one reach nobody. It returns the new address and updates
// PublicAddr and the router's Addrs.
//
// Do not read the site's PublicAddr or the router's Addr concurrently with
// the change. Sites with PortMapping are refused (miniupnpd is bound to
// its address).
func (s *Site) ChangePublicAddr(ctx context.Context) (netip.Addr, error) {
	if s.Router == nil {
		return netip.Addr{}, errNoRouter
	}
	if s.cfg.PortMapping {
		return netip.Addr{}, fmt.Errorf("natlab: site %s runs a port mapper bound to its address; ChangePublicAddr does not support it", s.cfg.Name)
	}
	if _, err := exec.LookPath(ConntrackProgram); err != nil {
		return netip.Addr{}, fmt.Errorf("natlab: %s not found in PATH: install it with `apt-get install %s`", ConntrackProgram, ConntrackPackage)
	}
	l := s.lab
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return netip.Addr{}, errors.New("natlab: lab is closed")
	}
	wan, err := l.allocPublic()
	l.mu.Unlock()
	if err != nil {
		return netip.Addr{}, err
	}
	old := s.PublicAddr
	ns := s.Router.ns
	// Old address out before the new one is in: deleting a primary
	// address deletes the secondaries of its subnet with it (unless
	// promote_secondaries is set), and a rebooting router is offline for
	// a moment anyway.
	if err := runCmd(ctx, routerRuleset(s.cfg.NAT, wan, s.LAN, s.cfg.Hairpin, s.cfg.MappingTimeout), "ip", "netns", "exec", ns, "nft", "-f", "-"); err != nil {
		return netip.Addr{}, err
	}
	if err := ipBatch(ctx, ns, []string{
		fmt.Sprintf("addr del %s/24 dev wan", old),
		fmt.Sprintf("addr add %s/24 dev wan", wan),
	}); err != nil {
		return netip.Addr{}, err
	}
	s.PublicAddr = wan
	s.Router.addrs[0] = wan
	// The rules are new and their sets empty; the conntrack entries still
	// SNAT to the old address, and go now.
	if err := s.FlushMappings(ctx); err != nil {
		return wan, err
	}
	l.log.Debug("site changed its public address", "site", s.cfg.Name, "old", old, "new", wan)
	return wan, nil
}

// Block makes the site's router drop every packet between its LAN and the
// given public addresses, both ways, as a firewall rule or a broken route
// between two networks would, while the rest of the public segment (the
// rendezvous, the relay) stays reachable. Calls add to the set; Unblock
// removes it.
func (s *Site) Block(ctx context.Context, addrs ...netip.Addr) error {
	if s.Router == nil {
		return errNoRouter
	}
	if len(addrs) == 0 {
		return errors.New("natlab: Block needs at least one address")
	}
	var elems []string
	for _, a := range addrs {
		if !a.Is4() {
			return fmt.Errorf("natlab: Block: %v is not an IPv4 address", a)
		}
		elems = append(elems, a.String())
	}
	rules := "table ip natlab_block {\n" +
		"\tset peers { type ipv4_addr; }\n" +
		"\tchain forward {\n" +
		"\t\ttype filter hook forward priority filter - 10; policy accept;\n" +
		"\t\tip saddr @peers drop\n" +
		"\t\tip daddr @peers drop\n" +
		"\t}\n" +
		"}\n" +
		"add element ip natlab_block peers { " + strings.Join(elems, ", ") + " }\n"
	return runCmd(ctx, rules, "ip", "netns", "exec", s.Router.ns, "nft", "-f", "-")
}

// Unblock removes what Block added (nothing if it was not called).
func (s *Site) Unblock(ctx context.Context) error {
	if s.Router == nil {
		return errNoRouter
	}
	return runCmd(ctx, "table ip natlab_block {}\ndelete table ip natlab_block\n", "ip", "netns", "exec", s.Router.ns, "nft", "-f", "-")
}
