package icepath

import (
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"sync/atomic"

	"github.com/pion/stun/v4"
	"github.com/pion/transport/v5"
)

// This file holds turnNet: the sockets pion's TURN clients reach the relay
// through, which refuse at once to ask the relay for a permission it
// refuses (README, "Relay permissions").

// errRelayRefuses is the write error for a permission the relay would
// refuse.
var errRelayRefuses = errors.New("icepath: no relay permission for a non-public peer address")

// turnNet is the agent's network with the sockets that pion's TURN clients
// open (ListenPacket for a UDP relay, DialTCP for TCP and, below its TLS,
// for TLS) wrapped: a CreatePermission or ChannelBind request, to a relay
// at a public address, for a peer address that is not public fails there,
// without a round trip. A relay at a private or loopback address (a test,
// a relay inside a private network) is asked for everything.
//
// pion/turn creates a permission inside the relayed candidate's WriteTo,
// which pion's ICE event loop calls for every check: it waits for the
// relay's answer (a round trip to the relay), and after a refusal it asks
// again on the next check. Every relayed candidate is paired with the
// peer's private host candidates, which a relay on the public network
// refuses (Ferry's relay does, by default: server/relay/acl.go), so
// without this each check round stalled the event loop, checks and
// answers to the peer's checks alike, for a round trip to the relay
// (100 ms per 25 ms round on a 200 ms link).
//
// The sockets also count the application bytes (what is not an ICE check
// or TURN's own traffic) that cross the relay through them, into relayed
// (Info.RelayBytes): both ways over UDP; over TCP only what this side
// sends (reads come as a stream); over TLS nothing (the records are
// sealed).
type turnNet struct {
	transport.Net
	relayed *atomic.Int64
}

// ListenPacket opens the socket of a UDP TURN client (pion's host and
// server-reflexive sockets come from ListenUDP).
func (n turnNet) ListenPacket(network, address string) (net.PacketConn, error) {
	c, err := n.Net.ListenPacket(network, address)
	if err != nil {
		return nil, err
	}
	return turnPacketConn{c, n.relayed}, nil
}

// DialTCP opens the connection of a TCP TURN client (and the one under a
// TLS TURN client, whose records it cannot read: those pass unchanged).
func (n turnNet) DialTCP(network string, laddr, raddr *net.TCPAddr) (transport.TCPConn, error) {
	c, err := n.Net.DialTCP(network, laddr, raddr)
	if err != nil {
		return nil, err
	}
	return turnTCPConn{c, n.relayed}, nil
}

type turnPacketConn struct {
	net.PacketConn
	relayed *atomic.Int64
}

func (c turnPacketConn) WriteTo(b []byte, addr net.Addr) (int, error) {
	if publicAddr(addr) && refusedPermission(b) {
		return 0, errRelayRefuses
	}
	n, err := c.PacketConn.WriteTo(b, addr)
	if err == nil {
		c.relayed.Add(int64(appPayload(b)))
	}
	return n, err
}

func (c turnPacketConn) ReadFrom(b []byte) (int, net.Addr, error) {
	n, addr, err := c.PacketConn.ReadFrom(b)
	if n > 0 {
		c.relayed.Add(int64(appPayload(b[:n])))
	}
	return n, addr, err
}

// turnTCPConn sees one STUN message per Write (pion/turn's STUNConn writes
// each whole).
type turnTCPConn struct {
	transport.TCPConn
	relayed *atomic.Int64
}

func (c turnTCPConn) Write(b []byte) (int, error) {
	if publicAddr(c.RemoteAddr()) && refusedPermission(b) {
		return 0, errRelayRefuses
	}
	n, err := c.TCPConn.Write(b)
	if err == nil {
		c.relayed.Add(int64(appPayload(b)))
	}
	return n, err
}

// appPayload returns the length of the application data in b, one message
// between a TURN client and its relay: the payload of a ChannelData
// message or of a Send or Data indication, unless it is itself a STUN
// message (an ICE check); 0 for anything else.
func appPayload(b []byte) int {
	var data []byte
	switch {
	case len(b) >= 4 && b[0]&0xc0 == 0x40: // ChannelData: channel 0x4000-0x7fff, length
		n := int(binary.BigEndian.Uint16(b[2:4]))
		if len(b) < 4+n {
			return 0
		}
		data = b[4 : 4+n]
	case len(b) >= 2 && b[0] == 0 && (b[1] == 0x16 || b[1] == 0x17) && stun.IsMessage(b): // Send, Data indication
		m := &stun.Message{Raw: append([]byte(nil), b...)}
		if m.Decode() != nil {
			return 0
		}
		v, err := m.Get(stun.AttrData)
		if err != nil {
			return 0
		}
		data = v
	default:
		return 0
	}
	if stun.IsMessage(data) {
		return 0
	}
	return len(data)
}

// refusedPermission reports whether b is a CreatePermission or ChannelBind
// request with a peer address that is not public. Anything else (data,
// other STUN messages, TLS records, bytes that do not parse) is not.
func refusedPermission(b []byte) bool {
	// Requests of the two methods: types 0x0008 and 0x0009.
	if len(b) < 2 || b[0] != 0 || b[1] != 0x08 && b[1] != 0x09 || !stun.IsMessage(b) {
		return false
	}
	m := &stun.Message{Raw: append([]byte(nil), b...)}
	if err := m.Decode(); err != nil {
		return false
	}
	found := false
	for _, a := range m.Attributes {
		if a.Type != stun.AttrXORPeerAddress {
			continue
		}
		// XORMappedAddress reads the first attribute of its type: give it
		// each on its own (IPv6 addresses are XORed with the transaction
		// ID, so that goes too).
		one := &stun.Message{TransactionID: m.TransactionID}
		one.Add(a.Type, a.Value)
		var pa stun.XORMappedAddress
		if err := pa.GetFromAs(one, stun.AttrXORPeerAddress); err != nil {
			return false
		}
		ip, ok := netip.AddrFromSlice(pa.IP)
		if !ok || public(ip.Unmap()) {
			return false // a public address in the request: the relay decides
		}
		found = true
	}
	return found
}

// publicAddr reports whether a is a UDP or TCP address at a public IP.
func publicAddr(a net.Addr) bool {
	var ip net.IP
	switch a := a.(type) {
	case *net.UDPAddr:
		ip = a.IP
	case *net.TCPAddr:
		ip = a.IP
	default:
		return false
	}
	addr, ok := netip.AddrFromSlice(ip)
	return ok && public(addr.Unmap())
}

// public reports whether a relay on the public network could relay to ip:
// a global unicast address outside the private, shared (CGNAT) and
// unique-local ranges.
func public(ip netip.Addr) bool {
	if !ip.IsGlobalUnicast() || ip.IsPrivate() {
		return false
	}
	return !netip.MustParsePrefix("100.64.0.0/10").Contains(ip)
}
