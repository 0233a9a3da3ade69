// Package nattype names NAT behaviours once for the whole module: the six
// NAT types the lab builds and natprobe reports, their RFC 4787 mapping and
// filtering behaviours, and the path Ferry expects between two peers behind
// them (direct, relay, or relay over TCP/TLS).
//
// The NAT lab (internal/natlab), the probe (internal/natprobe) and the
// SDK's NAT matrix all read their expectations from here, so a rule such as
// "symmetric facing port-restricted cone needs the relay" is written once.
package nattype

import (
	"fmt"
	"strings"
)

// Type is a NAT type in the lab's vocabulary. Its String form is the name
// the lab CLI accepts; ClassicName gives the name natprobe reports.
type Type string

// The six NAT types. Their behaviours are listed in Behaviour.
const (
	None               Type = "none"                 // routed public host, no NAT, no filtering
	FullCone           Type = "full-cone"            // EIM / EIF
	RestrictedCone     Type = "restricted-cone"      // EIM / ADF
	PortRestrictedCone Type = "port-restricted-cone" // EIM / APDF
	Symmetric          Type = "symmetric"            // APDM / APDF, random ports
	UDPBlocked         Type = "udp-blocked"          // no UDP at all; TCP through an EIM NAT
)

// All returns the six types in a stable order (least to most restrictive).
func All() []Type {
	return []Type{None, FullCone, RestrictedCone, PortRestrictedCone, Symmetric, UDPBlocked}
}

// Parse accepts a type's name, its classic name ("open") and a few common
// aliases ("public", "port-restricted", "blocked"), case-insensitively.
func Parse(s string) (Type, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "none", "open", "public", "no-nat":
		return None, nil
	case "full-cone", "fullcone", "full":
		return FullCone, nil
	case "restricted-cone", "restricted", "address-restricted-cone":
		return RestrictedCone, nil
	case "port-restricted-cone", "port-restricted", "portrestricted":
		return PortRestrictedCone, nil
	case "symmetric", "sym":
		return Symmetric, nil
	case "udp-blocked", "blocked", "udpblocked":
		return UDPBlocked, nil
	}
	return "", fmt.Errorf("nattype: unknown NAT type %q (want one of %s)", s, strings.Join(names(), ", "))
}

func names() []string {
	var out []string
	for _, t := range All() {
		out = append(out, string(t))
	}
	return out
}

// String returns the lab name.
func (t Type) String() string { return string(t) }

// Short is a compact name for site and subtest names: open, fc, rc, prc,
// sym, blk.
func (t Type) Short() string {
	switch t {
	case None:
		return "open"
	case FullCone:
		return "fc"
	case RestrictedCone:
		return "rc"
	case PortRestrictedCone:
		return "prc"
	case Symmetric:
		return "sym"
	case UDPBlocked:
		return "blk"
	}
	return string(t)
}

// Valid reports whether t is one of the six types.
func (t Type) Valid() bool {
	for _, k := range All() {
		if t == k {
			return true
		}
	}
	return false
}

// ClassicName is the RFC 3489-era name that natprobe reports in nat_type:
// "open" for None, the lab name for the others.
func (t Type) ClassicName() string {
	if t == None {
		return "open"
	}
	return string(t)
}

// Behaviour is a mapping or filtering behaviour in RFC 4787 terms.
type Behaviour string

// RFC 4787 behaviours, spelled as natprobe's JSON spells them. NoNAT is a
// mapping only: the public address is the local address.
const (
	NoNAT                   Behaviour = "no-nat"
	EndpointIndependent     Behaviour = "endpoint-independent"
	AddressDependent        Behaviour = "address-dependent"
	AddressAndPortDependent Behaviour = "address-and-port-dependent"
	// Unknown is what a probe reports when it cannot tell, for example
	// against a server without RFC 5780 support or with UDP blocked.
	Unknown Behaviour = "unknown"
)

// Short is the RFC 4787 abbreviation: EIM/EIF, ADM/ADF, APDM/APDF, with
// suffix "M" or "F".
func (b Behaviour) Short(suffix string) string {
	switch b {
	case EndpointIndependent:
		return "EI" + suffix
	case AddressDependent:
		return "AD" + suffix
	case AddressAndPortDependent:
		return "APD" + suffix
	case NoNAT:
		return "no NAT"
	}
	return string(b)
}

// Behaviour returns the mapping and filtering behaviour the lab builds for
// t. UDPBlocked has none (Unknown, Unknown): UDP never gets through.
func (t Type) Behaviour() (mapping, filtering Behaviour) {
	switch t {
	case None:
		return NoNAT, EndpointIndependent
	case FullCone:
		return EndpointIndependent, EndpointIndependent
	case RestrictedCone:
		return EndpointIndependent, AddressDependent
	case PortRestrictedCone:
		return EndpointIndependent, AddressAndPortDependent
	case Symmetric:
		return AddressAndPortDependent, AddressAndPortDependent
	}
	return Unknown, Unknown
}

// Classify turns measured behaviours into a classic name. It returns
// "open" for no NAT and no filtering, "firewalled" for no NAT with
// filtering (RFC 3489's "symmetric UDP firewall"), one of the cone names
// for endpoint-independent mapping, "symmetric" for any address- or
// port-dependent mapping, and "unknown" when either behaviour is unknown.
func Classify(mapping, filtering Behaviour) string {
	switch mapping {
	case NoNAT:
		switch filtering {
		case EndpointIndependent:
			return None.ClassicName()
		case AddressDependent, AddressAndPortDependent:
			return "firewalled"
		}
	case EndpointIndependent:
		switch filtering {
		case EndpointIndependent:
			return string(FullCone)
		case AddressDependent:
			return string(RestrictedCone)
		case AddressAndPortDependent:
			return string(PortRestrictedCone)
		}
	case AddressDependent, AddressAndPortDependent:
		return string(Symmetric)
	}
	return "unknown"
}

// Path is the kind of path Ferry expects between two peers.
type Path string

// Paths, as the NAT matrix names them.
const (
	Direct   Path = "direct"    // hole-punched (or plain routed) UDP
	Relay    Path = "relay"     // TURN over UDP
	RelayTCP Path = "relay-tcp" // TURN over TCP or TLS: a side has no UDP
)

// ExpectedPath is the path Ferry must get between peers behind a and b
// (issue 6): relay over TCP/TLS whenever a side is udp-blocked; relay for
// symmetric facing port-restricted cone or symmetric; direct otherwise.
// It is symmetric in its arguments.
func ExpectedPath(a, b Type) Path {
	if a == UDPBlocked || b == UDPBlocked {
		return RelayTCP
	}
	hard := func(x, y Type) bool {
		return x == Symmetric && (y == Symmetric || y == PortRestrictedCone)
	}
	if hard(a, b) || hard(b, a) {
		return Relay
	}
	return Direct
}
