package natlab

import (
	"fmt"
	"net/netip"
	"strings"
	"time"
)

// routerRuleset returns the nftables ruleset of a NAT router with a "wan"
// and a "lan" interface.
//
// How each behaviour is made (see README.md for the reasoning):
//   - Mapping. `snat to WAN` keeps the source port when it can and reuses
//     the mapping for every destination: endpoint-independent mapping (EIM).
//     `masquerade random,fully-random` picks a new random port per
//     destination: address-and-port-dependent mapping (APDM).
//   - Filtering. conntrack alone lets in only replies from the exact remote
//     endpoint: APDF. Endpoint-independent (EIF) and address-dependent (ADF)
//     filtering need a DNAT in prerouting for packets conntrack does not
//     know, gated by sets that outgoing packets fill after SNAT:
//     @ext maps external port -> internal address . port (every mapping),
//     @contacted holds remote address . external port (ADF).
//   - Hairpin. Packets from the LAN to the WAN address are DNATed through
//     @ext to the owner of the mapping and SNATed to the WAN address.
//   - UDP blocked. The forward chain drops all UDP; TCP is SNATed (EIM).
func routerRuleset(nat NAT, wan netip.Addr, lan netip.Prefix, hairpin bool, mappingTimeout time.Duration) string {
	timeout := "120s"
	if mappingTimeout > 0 {
		timeout = fmt.Sprintf("%ds", int(mappingTimeout.Round(time.Second)/time.Second))
	}
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }

	// Replace any earlier version atomically: create-if-missing, delete,
	// define, all in one nft transaction.
	w("table ip natlab {}")
	w("delete table ip natlab")
	w("table ip natlab {")
	w("\tset contacted {")
	w("\t\ttype ipv4_addr . inet_service")
	w("\t\tflags dynamic,timeout")
	w("\t\ttimeout %s", timeout)
	w("\t}")
	w("\tmap ext {")
	w("\t\ttype inet_service : ipv4_addr . inet_service")
	w("\t\tflags dynamic,timeout")
	w("\t\ttimeout %s", timeout)
	w("\t}")

	// Destination NAT for packets conntrack does not know.
	w("\tchain pre {")
	w("\t\ttype nat hook prerouting priority dstnat; policy accept;")
	switch nat {
	case FullCone:
		w("\t\tiifname \"wan\" udp dport @ext dnat ip to udp dport map @ext")
	case RestrictedCone:
		w("\t\tiifname \"wan\" ip saddr . udp dport @contacted dnat ip to udp dport map @ext")
	}
	if hairpin && nat != UDPBlocked {
		w("\t\tiifname \"lan\" ip daddr %s udp dport @ext dnat ip to udp dport map @ext", wan)
	}
	w("\t}")

	// Source NAT.
	w("\tchain post {")
	w("\t\ttype nat hook postrouting priority srcnat; policy accept;")
	if nat == Symmetric {
		w("\t\toifname \"wan\" masquerade random,fully-random")
	} else {
		w("\t\toifname \"wan\" snat ip to %s", wan)
	}
	if hairpin {
		w("\t\toifname \"lan\" ct status dnat ip saddr %s snat ip to %s", lan, wan)
	}
	w("\t}")

	// Record mappings after SNAT: the reply tuple's destination port is
	// the external port. Only original-direction packets of SNATed flows
	// count (a DNATed flow's reply tuple says nothing about mappings).
	if nat != UDPBlocked {
		w("\tchain track {")
		w("\t\ttype filter hook postrouting priority srcnat + 10; policy accept;")
		w("\t\toifname \"wan\" meta l4proto udp ct direction original ct status snat update @ext { ct reply proto-dst : ct original ip saddr . ct original proto-src }")
		if nat == RestrictedCone {
			w("\t\toifname \"wan\" meta l4proto udp ct direction original ct status snat update @contacted { ip daddr . ct reply proto-dst }")
		}
		w("\t}")
	}

	// Forwarding policy: LAN out, replies in, and what the DNAT let in.
	w("\tchain forwarding {")
	w("\t\ttype filter hook forward priority filter; policy drop;")
	if nat == UDPBlocked {
		w("\t\tmeta l4proto udp drop")
	}
	w("\t\tct state established,related accept")
	w("\t\tiifname \"lan\" oifname \"wan\" accept")
	w("\t\tct status dnat accept")
	w("\t}")

	// The router itself answers pings and nothing else from outside, and
	// silently drops UDP to its public address from the LAN that no
	// hairpin rule took (no ICMP port unreachable).
	w("\tchain in {")
	w("\t\ttype filter hook input priority filter; policy accept;")
	w("\t\tiifname \"wan\" ct state established,related accept")
	w("\t\tiifname \"wan\" icmp type echo-request accept")
	w("\t\tiifname \"wan\" drop")
	w("\t\tiifname \"lan\" ip daddr %s meta l4proto udp drop", wan)
	w("\t}")
	w("}")
	return b.String()
}

// lossRuleset returns a table for the switch's namespace that drops loss
// percent of the IPv4 frames entering and leaving the switch port, or
// deletes the table when loss is 0. Dropping at the switch (netdev ingress
// and egress hooks) is silent for both ends, like a lossy wire: a drop in
// the sender's own output path would fail its sendto with EPERM.
func lossRuleset(port string, loss float64) string {
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	table := "natlab_loss_" + port
	w("table netdev %s {}", table)
	w("delete table netdev %s", table)
	if loss <= 0 {
		return b.String()
	}
	n := int(loss*100 + 0.5) // basis points
	cond := fmt.Sprintf("numgen random mod 10000 < %d ", n)
	if n >= 10000 {
		cond = ""
	}
	w("table netdev %s {", table)
	w("\tchain from_site {")
	w("\t\ttype filter hook ingress device %q priority -500; policy accept;", port)
	w("\t\tmeta protocol ip %sdrop", cond)
	w("\t}")
	w("\tchain to_site {")
	w("\t\ttype filter hook egress device %q priority -500; policy accept;", port)
	w("\t\tmeta protocol ip %sdrop", cond)
	w("\t}")
	w("}")
	return b.String()
}
