package sdk

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ferrynet/ferry/sdk/internal/icepath"
	"github.com/ferrynet/ferry/sdk/internal/portmap"
)

// This file holds WithPortMapping: the node asks its gateway (NAT-PMP or
// UPnP IGD) to map one UDP port to it and offers the mapping as an ICE
// candidate. DESIGN.md, "Port mapping", has the why and why it is off by
// default.

// PortMapping configures WithPortMapping. The zero value asks the default
// route's gateway for a mapping of the default lifetime.
type PortMapping struct {
	// Gateway is the router to ask; zero means the IPv4 default route's
	// gateway (read from the routing table, Linux only).
	Gateway netip.Addr
	// Lifetime asked for; 0 means 2 h (RFC 6886's recommendation). The
	// mapping is renewed at half of what the gateway grants. At least 1 s.
	Lifetime time.Duration
	// Do runs each call that opens a socket to the gateway, for a node
	// whose sockets must be made somewhere special (a test network
	// namespace, with WithNetwork); nil runs it directly.
	Do func(func() error) error
	// OnEvent, if set, is called for each request's outcome, from the
	// mapper's goroutine: it must not block.
	OnEvent func(PortMapEvent)
}

// PortMapEventKind says what a port-mapping request did.
type PortMapEventKind string

// Port-mapping event kinds.
const (
	// PortMapObtained: the gateway granted a mapping (a first one, or
	// one at a new address).
	PortMapObtained PortMapEventKind = "obtained"
	// PortMapRenewed: the held mapping was granted again.
	PortMapRenewed PortMapEventKind = "renewed"
	// PortMapFailed: no gateway answered, or its answer was refused (an
	// error, or an implausible address); no mapped candidate is offered
	// until a later request succeeds.
	PortMapFailed PortMapEventKind = "failed"
	// PortMapDeleted: Close released the mapping.
	PortMapDeleted PortMapEventKind = "deleted"
)

// PortMapEvent is one port-mapping request's outcome.
type PortMapEvent struct {
	Time time.Time
	Kind PortMapEventKind
	// Addr is the mapped public address (zero for PortMapFailed).
	Addr netip.AddrPort
	// Protocol is the protocol the gateway answered ("nat-pmp" or
	// "upnp"), empty when none did.
	Protocol string
	Err      error
}

// PortMapStatus is the node's port mapping now, with counts since New.
type PortMapStatus struct {
	// Enabled reports whether WithPortMapping was given.
	Enabled bool
	// Addr is the mapped public address offered as a candidate, or zero.
	Addr     netip.AddrPort
	Protocol string
	// LocalPort is the node's shared UDP port that the gateway maps.
	LocalPort uint16
	// Obtained, Renewed and Failed count requests by outcome.
	Obtained, Renewed, Failed int
	// LastErr is the last failure, nil once a request succeeds again.
	LastErr error
}

// WithPortMapping makes the node ask its gateway for a UDP port mapping
// (NAT-PMP, then UPnP IGD), renew it, offer the mapped address as an ICE
// candidate, and release it on Close. Its ICE host candidates then all use
// one IPv4 UDP socket (the mapped one) instead of a socket per
// connection. It helps a node behind a symmetric NAT whose router maps
// ports: peers behind every NAT type reach it directly. Off by default.
func WithPortMapping(pm PortMapping) NodeOption {
	return nodeOpt(func(c *config) { p := pm; c.node.portMapping = &p })
}

// portMapState is a node's port mapping; nil without WithPortMapping.
type portMapState struct {
	ice     *icepath.PortMap
	mapper  *portmap.Mapper // nil when no gateway was found
	onEvent func(PortMapEvent)

	mu     sync.Mutex
	status PortMapStatus
}

// PortMapping reports the node's port mapping.
func (n *Node) PortMapping() PortMapStatus {
	p := n.pmap
	if p == nil {
		return PortMapStatus{}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.status
}

// startPortMap finds the gateway, opens the shared ICE socket and starts
// the mapper. A missing gateway is a failure reported in the status, not
// an error of New: the node then works as without the option.
func (n *Node) startPortMap() error {
	pm := n.cfg.node.portMapping
	if pm == nil {
		return nil
	}
	if pm.Lifetime < 0 || pm.Lifetime > 0 && pm.Lifetime < time.Second {
		return fmt.Errorf("sdk: port mapping lifetime %v: want 0 or at least 1s", pm.Lifetime)
	}
	if gw := pm.Gateway.Unmap(); gw.IsValid() && (!gw.Is4() || gw.IsUnspecified()) {
		return fmt.Errorf("sdk: port mapping gateway %v: want an IPv4 address", pm.Gateway)
	}
	do := pm.Do
	if do == nil {
		do = func(f func() error) error { return f() }
	}
	gw, local, err := gatewayAndLocal(pm.Gateway, do)
	if err != nil {
		// No gateway: the node gathers as without the option.
		st := &portMapState{onEvent: pm.OnEvent, status: PortMapStatus{Enabled: true}}
		n.pmap = st
		st.record(portmap.Event{Kind: portmap.Failed, Err: err})
		n.log.Info("port mapping: no gateway", "err", err)
		return nil
	}
	var conn net.PacketConn
	err = do(func() error {
		var lerr error
		if n.cfg.node.icenet != nil {
			conn, lerr = n.cfg.node.icenet.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4zero})
		} else {
			conn, lerr = net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4zero})
		}
		return lerr
	})
	if err != nil {
		return fmt.Errorf("sdk: port mapping socket: %w", err)
	}
	ip, err := icepath.NewPortMap(conn, n.cfg.node.icenet, n.log)
	if err != nil {
		_ = conn.Close()
		return err
	}
	st := &portMapState{ice: ip, onEvent: pm.OnEvent, status: PortMapStatus{Enabled: true, LocalPort: ip.Port()}}
	n.pmap = st
	m, err := portmap.Start(portmap.Config{
		Gateway:  gw,
		Local:    netip.AddrPortFrom(local, ip.Port()),
		Lifetime: pm.Lifetime,
		Do:       do,
		OnChange: func(a netip.AddrPort) { ip.SetMapped(a, local) },
		OnEvent:  st.record,
		Logger:   n.log,
	})
	if err != nil {
		_ = ip.Close()
		n.pmap = nil
		return fmt.Errorf("sdk: port mapping: %w", err)
	}
	st.mapper = m
	return nil
}

// record keeps the status and passes the event on.
func (p *portMapState) record(e portmap.Event) {
	ev := PortMapEvent{Time: time.Now(), Addr: e.Addr, Protocol: e.Protocol, Err: e.Err}
	p.mu.Lock()
	switch e.Kind {
	case portmap.Obtained:
		ev.Kind = PortMapObtained
		p.status.Obtained++
		p.status.Addr, p.status.Protocol, p.status.LastErr = e.Addr, ev.Protocol, nil
	case portmap.Renewed:
		ev.Kind = PortMapRenewed
		p.status.Renewed++
		p.status.Addr, p.status.Protocol, p.status.LastErr = e.Addr, ev.Protocol, nil
	case portmap.Failed:
		ev.Kind, ev.Protocol = PortMapFailed, ""
		p.status.Failed++
		p.status.Addr, p.status.Protocol, p.status.LastErr = netip.AddrPort{}, "", e.Err
	case portmap.Deleted:
		ev.Kind = PortMapDeleted
		p.status.Addr = netip.AddrPort{}
	}
	f := p.onEvent
	p.mu.Unlock()
	if f != nil && ev.Kind != "" {
		f(ev)
	}
}

// stopPortMap releases the mapping (one request, bounded) and closes the
// shared socket. The connections must be closed first.
func (n *Node) stopPortMap() {
	p := n.pmap
	if p == nil {
		return
	}
	if p.mapper != nil {
		if err := p.mapper.Close(); err != nil {
			n.log.Debug("port mapping: delete", "err", err)
		}
	}
	if p.ice != nil {
		_ = p.ice.Close()
	}
}

// gatewayAndLocal returns the gateway to ask (gw, or the default route's)
// and the local address that reaches it.
func gatewayAndLocal(gw netip.Addr, do func(func() error) error) (netip.Addr, netip.Addr, error) {
	var local netip.Addr
	err := do(func() error {
		if !gw.IsValid() {
			var err error
			if gw, err = defaultGateway(); err != nil {
				return err
			}
		}
		// Connecting a UDP socket sends nothing; it picks the route.
		c, err := net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(netip.AddrPortFrom(gw.Unmap(), natPMPPort)))
		if err != nil {
			return fmt.Errorf("no route to gateway %v: %w", gw, err)
		}
		local = c.LocalAddr().(*net.UDPAddr).AddrPort().Addr().Unmap()
		return c.Close()
	})
	return gw.Unmap(), local, err
}

// natPMPPort is where a gateway answers NAT-PMP (RFC 6886); dialing it
// only picks the route.
const natPMPPort = 5351

// errNoGateway: the routing table has no IPv4 default route.
var errNoGateway = errors.New("no IPv4 default route")

// defaultGateway reads the IPv4 default route's gateway from the calling
// thread's routing table (Linux; the thread's, so that a caller's Do can
// move it into another network namespace).
func defaultGateway() (netip.Addr, error) {
	f, err := os.Open("/proc/thread-self/net/route")
	if err != nil {
		if f, err = os.Open("/proc/net/route"); err != nil {
			return netip.Addr{}, fmt.Errorf("%w: cannot read the routing table: %w", errNoGateway, err)
		}
	}
	defer f.Close()
	return parseRoutes(f)
}

// parseRoutes reads /proc/net/route text: the first route to 0.0.0.0/0
// with a gateway wins.
func parseRoutes(r io.Reader) (netip.Addr, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 4096), 64<<10)
	for sc.Scan() {
		// Iface Destination Gateway Flags RefCnt Use Metric Mask ...
		f := strings.Fields(sc.Text())
		if len(f) < 8 || f[1] != "00000000" || f[7] != "00000000" {
			continue
		}
		v, err := strconv.ParseUint(f[2], 16, 32)
		if err != nil || v == 0 {
			continue
		}
		// The kernel prints the network-order word as a host integer.
		var b [4]byte
		binary.NativeEndian.PutUint32(b[:], uint32(v))
		return netip.AddrFrom4(b), nil
	}
	return netip.Addr{}, errNoGateway
}
