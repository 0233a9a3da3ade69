package natprobe

import (
	"github.com/ferrynet/ferry/internal/nattype"
)

// Result is what a probe found. Its JSON form is natprobe's stable output:
// the fields up to NeedsRelayWith are the ones scripts should rely on; the
// rest explain them.
type Result struct {
	// NATType is the classic name: open, full-cone, restricted-cone,
	// port-restricted-cone, symmetric, udp-blocked; or "firewalled" (no
	// NAT, but filtering), or "unknown" (basic mode).
	NATType string `json:"nat_type"`
	// Mapping is one of endpoint-independent, address-dependent,
	// address-and-port-dependent, no-nat, or unknown.
	Mapping nattype.Behaviour `json:"mapping"`
	// Filtering is one of endpoint-independent, address-dependent,
	// address-and-port-dependent, or unknown.
	Filtering nattype.Behaviour `json:"filtering"`
	// PublicAddr is the mapped address the server saw (ip:port), over UDP,
	// or over TCP when UDP is blocked; empty if none.
	PublicAddr string `json:"public_addr"`
	// LocalAddr is the socket address the mapping tests ran from.
	LocalAddr string `json:"local_addr"`
	// Hairpinning: a packet sent to our own public address came back.
	Hairpinning bool `json:"hairpinning"`
	// PortPreserved: the NAT kept the local port in the mapping.
	PortPreserved bool `json:"port_preserved"`
	// ALGDetected: MAPPED-ADDRESS and XOR-MAPPED-ADDRESS differ, so
	// something on the path rewrites addresses inside packets.
	ALGDetected bool `json:"alg_detected"`
	// UDPBlocked: the server never answered over UDP.
	UDPBlocked bool `json:"udp_blocked"`
	// DirectReachableWith lists the peer NAT types (classic names) Ferry
	// expects to reach directly from here.
	DirectReachableWith []string `json:"direct_reachable_with"`
	// NeedsRelayWith lists the peer NAT types that need Ferry's relay.
	NeedsRelayWith []string `json:"needs_relay_with"`

	// Server is the STUN server address probed.
	Server string `json:"server"`
	// RFC5780 is true when the server supports the RFC 5780 tests.
	RFC5780 bool `json:"rfc5780"`
	// Mode is "rfc5780" (full tests), "basic" (server without RFC 5780:
	// public address and hints only), "udp-blocked", or "unreachable"
	// (nothing answered; Probe also returns ErrServerUnreachable).
	Mode string `json:"mode"`
	// OtherAddr is the server's alternate address (OTHER-ADDRESS).
	OtherAddr string `json:"other_addr,omitempty"`
	// RelayTransport says which relay transport Ferry would use here:
	// "udp", or "tcp/tls" when UDP is blocked ("" when unreachable).
	RelayTransport string `json:"relay_transport"`
	// STUNOverTCP reports whether the server answered over TCP (only
	// tested when UDP is blocked).
	STUNOverTCP *bool `json:"stun_over_tcp,omitempty"`
	// MappingLifetime is the estimate of --lifetime.
	MappingLifetime *Lifetime `json:"mapping_lifetime,omitempty"`
	// PortMapping says which port-mapping protocols the gateway
	// (Config.Gateway) answered; nil when not checked.
	PortMapping *PortMapping `json:"port_mapping,omitempty"`
	// PortAllocation is how the NAT picks ports for new mappings; nil
	// without a NAT or when UDP is blocked.
	PortAllocation *PortAllocation `json:"port_allocation,omitempty"`
	// TURN lists the TURN reachability checks.
	TURN []TURNCheck `json:"turn,omitempty"`
	// Tests are the individual tests, in order, for the curious.
	Tests []Test `json:"tests"`
	// Notes explain caveats in plain words.
	Notes []string `json:"notes,omitempty"`
}

// Test is one RFC 5780 test as run.
type Test struct {
	Name     string `json:"name"`
	Socket   string `json:"socket"` // local address
	To       string `json:"to"`
	Response bool   `json:"response"`
	From     string `json:"from,omitempty"`
	Mapped   string `json:"mapped,omitempty"`
	Detail   string `json:"detail,omitempty"`
}

// Lifetime bounds the idle lifetime of a UDP mapping, in seconds.
// MaxSeconds is nil when the mapping outlived every period tested.
type Lifetime struct {
	MinSeconds float64  `json:"min_seconds"`
	MaxSeconds *float64 `json:"max_seconds"`
	Detail     string   `json:"detail,omitempty"`
}

// TURNCheck is one TURN server reachability check.
type TURNCheck struct {
	URL       string `json:"url"`
	Transport string `json:"transport"` // tcp or tls
	Address   string `json:"address"`
	Reachable bool   `json:"reachable"`
	Detail    string `json:"detail,omitempty"`
}

// peerClass maps measured behaviours to the lab type whose hole-punching
// rules apply (a firewall without NAT punches like the cone NAT with the
// same filtering).
func peerClass(m, f nattype.Behaviour, udpBlocked bool) (nattype.Type, bool) {
	if udpBlocked {
		return nattype.UDPBlocked, true
	}
	switch m {
	case nattype.AddressDependent, nattype.AddressAndPortDependent:
		return nattype.Symmetric, true
	case nattype.NoNAT, nattype.EndpointIndependent:
		switch f {
		case nattype.EndpointIndependent:
			if m == nattype.NoNAT {
				return nattype.None, true
			}
			return nattype.FullCone, true
		case nattype.AddressDependent:
			return nattype.RestrictedCone, true
		case nattype.AddressAndPortDependent:
			return nattype.PortRestrictedCone, true
		}
	}
	return "", false
}

// fillVerdict sets NATType and the Ferry path lists from the behaviours.
func (r *Result) fillVerdict() {
	r.DirectReachableWith, r.NeedsRelayWith = []string{}, []string{}
	r.RelayTransport = "udp"
	if r.Mode == "unreachable" {
		// Nothing answered at all: no verdict.
		r.NATType, r.RelayTransport = "unknown", ""
		return
	}
	if r.UDPBlocked {
		r.NATType = nattype.UDPBlocked.ClassicName()
		r.RelayTransport = "tcp/tls"
	} else {
		r.NATType = nattype.Classify(r.Mapping, r.Filtering)
	}
	self, ok := peerClass(r.Mapping, r.Filtering, r.UDPBlocked)
	if !ok {
		return
	}
	for _, peer := range nattype.All() {
		if nattype.ExpectedPath(self, peer) == nattype.Direct {
			r.DirectReachableWith = append(r.DirectReachableWith, peer.ClassicName())
		} else {
			r.NeedsRelayWith = append(r.NeedsRelayWith, peer.ClassicName())
		}
	}
}
