package icepath

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"

	"github.com/pion/ice/v4"
	"github.com/pion/transport/v5"

	"github.com/ferrynet/ferry/internal/pionlog"
)

// This file holds PortMap: one UDP socket that every agent of a node
// shares for its host candidates, so that a port mapping the gateway holds
// for that socket (sdk/internal/portmap) can be offered as a candidate.
// README.md, "Port-mapped candidate", has the why.

// PortMap is a node's shared ICE socket and the public address its gateway
// mapped to it. Agents given it (Config.PortMap) gather their UDP host
// candidates on its socket (pion's UDPMux, which tells agents apart by
// ICE username) and, while a mapping is held, offer the mapped address as
// a server-reflexive candidate whose base is the socket: the peer's checks
// to it arrive on the socket through the gateway's mapping, whatever the
// NAT's own mapping behaviour. It is safe for concurrent use.
type PortMap struct {
	mux  *ice.UDPMuxDefault
	port uint16

	mu     sync.Mutex
	mapped netip.AddrPort // zero while there is no mapping
	base   netip.Addr     // the local address the mapping points to
}

// NewPortMap shares conn, an IPv4 UDP socket (bound to 0.0.0.0:port or to
// one address), among agents. n lists the local interfaces when conn is
// bound to 0.0.0.0 (nil: the host's). Close closes conn.
func NewPortMap(conn net.PacketConn, n transport.Net, log *slog.Logger) (*PortMap, error) {
	la, ok := conn.LocalAddr().(*net.UDPAddr)
	if !ok || la.IP.To4() == nil || la.Port == 0 {
		return nil, fmt.Errorf("icepath: port map socket %v: want a bound IPv4 UDP socket", conn.LocalAddr())
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	mux := ice.NewUDPMuxDefault(ice.UDPMuxParams{
		UDPConn: conn,
		Net:     n,
		Logger:  pionlog.Factory{L: log}.NewLogger("udpmux"),
	})
	return &PortMap{mux: mux, port: uint16(la.Port)}, nil
}

// Port is the shared socket's port: the one to map.
func (p *PortMap) Port() uint16 { return p.port }

// SetMapped records the gateway's mapping: ext is the public address and
// base the local address it forwards to (the socket's address on the
// gateway's network). A zero ext withdraws the mapping. Agents created
// afterwards offer it; agents already gathering keep what they offered.
func (p *PortMap) SetMapped(ext netip.AddrPort, base netip.Addr) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.mapped, p.base = ext, base.Unmap()
}

// Mapped is the mapped public address, or the zero AddrPort.
func (p *PortMap) Mapped() netip.AddrPort {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.mapped
}

func (p *PortMap) snapshot() (netip.AddrPort, netip.Addr) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.mapped, p.base
}

// Close closes the shared socket; agents still using it lose their host
// candidates.
func (p *PortMap) Close() error {
	err := p.mux.Close()
	if errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}

// agentMux is the shared mux as one agent sees it: its listen addresses
// pass the agent's IPFilter and loopback setting, as pion's own host
// gathering would (pion applies neither to a mux's addresses). Close is
// the PortMap's, not the agent's.
type agentMux struct {
	*ice.UDPMuxDefault
	keep     func(net.IP) bool
	loopback bool
}

func (p *PortMap) forAgent(cfg Config) ice.UDPMux {
	return &agentMux{UDPMuxDefault: p.mux, keep: cfg.IPFilter, loopback: cfg.IncludeLoopback}
}

func (m *agentMux) GetListenAddresses() []net.Addr {
	all := m.UDPMuxDefault.GetListenAddresses()
	out := all[:0:0]
	for _, a := range all {
		ua, ok := a.(*net.UDPAddr)
		if !ok || ua.IP.IsLoopback() && !m.loopback || m.keep != nil && !m.keep(ua.IP) {
			continue
		}
		out = append(out, a)
	}
	return out
}

// Close does nothing: the PortMap owns the socket (pion's agent closes
// only a mux it made itself, but be sure).
func (m *agentMux) Close() error { return nil }

// mappedOffer turns the PortMap's mapping into one extra local candidate
// for an agent: once, after the host candidate at the mapping's base (or,
// if none matched, just before the end of gathering).
type mappedOffer struct {
	pm   *PortMap
	ext  netip.AddrPort
	base netip.Addr
	sent bool
}

func newMappedOffer(pm *PortMap) *mappedOffer {
	if pm == nil {
		return nil
	}
	ext, base := pm.snapshot()
	if !ext.IsValid() {
		return nil
	}
	return &mappedOffer{pm: pm, ext: ext, base: base}
}

// after returns the mapped candidate's SDP text if it should follow c (a
// local candidate pion gathered, or nil at the end of gathering), else "".
// It is called from pion's candidate goroutine only.
func (o *mappedOffer) after(c ice.Candidate) string {
	if o == nil || o.sent {
		return ""
	}
	var rel netip.AddrPort
	switch {
	case c == nil:
		rel = netip.AddrPortFrom(o.base, o.pm.port)
		if !o.base.IsValid() {
			rel = netip.AddrPortFrom(netip.IPv4Unspecified(), o.pm.port)
		}
	case c.Type() == ice.CandidateTypeHost && c.NetworkType() == ice.NetworkTypeUDP4 && c.Port() == int(o.pm.port):
		ip, err := netip.ParseAddr(c.Address())
		if err != nil || o.base.IsValid() && ip != o.base {
			return ""
		}
		rel = netip.AddrPortFrom(ip, o.pm.port)
	default:
		return ""
	}
	o.sent = true
	cand, err := ice.NewCandidateServerReflexive(&ice.CandidateServerReflexiveConfig{
		Network:   "udp",
		Address:   o.ext.Addr().String(),
		Port:      int(o.ext.Port()),
		Component: ice.ComponentRTP,
		RelAddr:   rel.Addr().String(),
		RelPort:   int(rel.Port()),
	})
	if err != nil {
		return ""
	}
	if c != nil {
		// The ufrag and generation extensions pion puts on its own.
		for _, e := range c.Extensions() {
			_ = cand.AddExtension(e)
		}
	}
	return cand.Marshal()
}
