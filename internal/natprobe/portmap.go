package natprobe

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/ferrynet/ferry/internal/netaddr"
)

// Port mapping and port allocation: does the gateway answer UPnP IGD,
// NAT-PMP (RFC 6886) or PCP (RFC 6887), as Tailscale's netcheck reports;
// and does the NAT allocate ports for new mappings in a predictable order,
// which decides whether birthday-paradox punching is needed. Only
// harmless requests are sent: NAT-PMP's external-address request, PCP's
// ANNOUNCE and an SSDP M-SEARCH, all unicast to the gateway.

const (
	natpmpPort = 5351
	ssdpPort   = 1900
	// allocSockets is how many fresh mappings the allocation test opens.
	allocSockets = 5
	// sequentialSpread bounds the port steps between consecutive new
	// mappings that still count as sequential (another host on the LAN
	// may take a port in between).
	sequentialSpread = 16
)

// PortMapping says which port-mapping protocols the gateway answered.
type PortMapping struct {
	Gateway string `json:"gateway"`
	UPnP    bool   `json:"upnp"`
	NATPMP  bool   `json:"nat_pmp"`
	PCP     bool   `json:"pcp"`
	// ExternalAddr is the public address NAT-PMP reported, if it did.
	ExternalAddr string `json:"external_addr,omitempty"`
	Detail       string `json:"detail,omitempty"`
}

// Any reports whether some protocol answered.
func (m *PortMapping) Any() bool { return m != nil && (m.UPnP || m.NATPMP || m.PCP) }

// Summary is the report's one-line form: "UPnP no, NAT-PMP yes, PCP yes".
func (m *PortMapping) Summary() string {
	return fmt.Sprintf("UPnP %s, NAT-PMP %s, PCP %s", yesNo(m.UPnP), yesNo(m.NATPMP), yesNo(m.PCP))
}

// PortAllocation is how the NAT picked the public ports of several new
// mappings made one after another to the same server.
type PortAllocation struct {
	// Pattern is "preserved" (public port = local port), "sequential"
	// (steps of at most 16 in one direction), "random", or "unknown".
	Pattern string `json:"pattern"`
	// Ports are the public ports, in the order the mappings were made.
	Ports []uint16 `json:"ports"`
	// BirthdayPunching says what the pattern means for punching through
	// this NAT when it maps per destination.
	BirthdayPunching string `json:"birthday_punching"`
}

// portMappingTest asks the gateway with the three protocols in parallel.
func (p *prober) portMappingTest(ctx context.Context, gw netip.Addr) *PortMapping {
	return p.portMappingTestAt(ctx, gw, natpmpPort, ssdpPort)
}

// portMappingTestAt is portMappingTest with the ports as parameters, for
// fake gateways in tests.
func (p *prober) portMappingTestAt(ctx context.Context, gw netip.Addr, natpmpPort, ssdpPort uint16) *PortMapping {
	res := &PortMapping{Gateway: gw.String()}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var details []string
	fail := func(proto string, err error) {
		mu.Lock()
		defer mu.Unlock()
		details = append(details, proto+": "+err.Error())
	}
	wg.Go(func() {
		b, err := p.udpAsk(ctx, netip.AddrPortFrom(gw, natpmpPort), []byte{0, 0}, func(b []byte) bool {
			return len(b) >= 12 && b[0] == 0 && b[1] == 128
		})
		if err != nil {
			fail("NAT-PMP", err)
			return
		}
		mu.Lock()
		defer mu.Unlock()
		if code := binary.BigEndian.Uint16(b[2:4]); code != 0 {
			details = append(details, fmt.Sprintf("NAT-PMP: result code %d", code))
		}
		// An answer with an error code still says NAT-PMP is spoken.
		res.NATPMP = true
		if ext := netip.AddrFrom4([4]byte(b[8:12])); binary.BigEndian.Uint16(b[2:4]) == 0 {
			res.ExternalAddr = ext.String()
		}
	})
	wg.Go(func() {
		_, err := p.udpAsk(ctx, netip.AddrPortFrom(gw, natpmpPort), pcpAnnounce(p.local), func(b []byte) bool {
			// Version 2 and the response bit; a NAT-PMP-only gateway
			// answers version 0 ("unsupported version").
			return len(b) >= 24 && b[0] == 2 && b[1] == 0x80
		})
		if err != nil {
			fail("PCP", err)
			return
		}
		mu.Lock()
		res.PCP = true
		mu.Unlock()
	})
	wg.Go(func() {
		req := "M-SEARCH * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\nST: urn:schemas-upnp-org:device:InternetGatewayDevice:1\r\n" +
			"MAN: \"ssdp:discover\"\r\nMX: 2\r\n\r\n"
		_, err := p.udpAsk(ctx, netip.AddrPortFrom(gw, ssdpPort), []byte(req), func(b []byte) bool {
			return bytes.HasPrefix(b, []byte("HTTP/1.1 200")) &&
				bytes.Contains(bytes.ToLower(b), []byte("internetgatewaydevice"))
		})
		if err != nil {
			fail("UPnP", err)
			return
		}
		mu.Lock()
		res.UPnP = true
		mu.Unlock()
	})
	wg.Wait()
	slices.Sort(details)
	res.Detail = strings.Join(details, "; ")
	return res
}

// pcpAnnounce is a PCP ANNOUNCE request (RFC 6887 section 14.1): version
// 2, opcode 0, lifetime 0, and the client's address (IPv4-mapped).
func pcpAnnounce(local netip.Addr) []byte {
	b := make([]byte, 24)
	b[0] = 2
	a := local.Unmap().As16() // an IPv4 address comes out IPv4-mapped
	copy(b[8:], a[:])
	return b
}

// udpAsk sends req to addr from a fresh socket, resending on the RTO
// schedule, until ok accepts an answer from addr or the probe's timeout.
func (p *prober) udpAsk(ctx context.Context, addr netip.AddrPort, req []byte, ok func([]byte) bool) ([]byte, error) {
	pc, err := p.listen(ctx)
	if err != nil {
		return nil, err
	}
	defer pc.Close()
	ctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	stop := context.AfterFunc(ctx, func() { _ = pc.SetReadDeadline(time.Now()) })
	defer stop()
	to := net.UDPAddrFromAddrPort(addr)
	got := make(chan []byte, 1)
	go func() {
		buf := make([]byte, 2048)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				close(got)
				return
			}
			if netaddr.AddrPort(from) == addr && ok(buf[:n]) {
				got <- bytes.Clone(buf[:n])
				return
			}
		}
	}()
	wait := p.rto
	for {
		if _, err := pc.WriteTo(req, to); err != nil {
			cancel()
			<-got
			return nil, err
		}
		t := time.NewTimer(wait)
		select {
		case b, open := <-got:
			t.Stop()
			if !open {
				return nil, ErrNoResponse
			}
			return b, nil
		case <-ctx.Done():
			t.Stop()
			<-got
			return nil, ErrNoResponse
		case <-t.C:
			wait *= 2
		}
	}
}

// allocationTest makes allocSockets new mappings to the server, one after
// another, and classifies the public ports.
func (p *prober) allocationTest(ctx context.Context, server netip.AddrPort) *PortAllocation {
	a := &PortAllocation{Pattern: "unknown", Ports: []uint16{}}
	preserved := true
	for i := range allocSockets {
		pc, err := p.listen(ctx)
		if err != nil {
			p.note("port allocation test: %v", err)
			return a
		}
		r, _, err := p.run(ctx, ordAlloc, fmt.Sprintf("port allocation %d (new socket)", i+1), pc, server, request{}, exactly(server))
		local := netaddr.AddrPort(pc.LocalAddr()).Port()
		pc.Close()
		if err != nil {
			continue // a lost answer: classify what came back
		}
		a.Ports = append(a.Ports, r.xorMapped.Port())
		preserved = preserved && r.xorMapped.Port() == local
	}
	a.Pattern = classifyPorts(a.Ports, preserved)
	a.BirthdayPunching = map[string]string{
		"preserved": "not needed: the NAT keeps local ports, so a peer can aim at the port it was told",
		"sequential": "not needed if the NAT maps per destination: the next public port can be predicted " +
			"(last port plus the step), though Ferry does not predict ports yet",
		"random": "needed against a cone peer if this NAT maps per destination (symmetric): the cone side " +
			"probes random ports while this side opens up to 256 mappings (about 64 % after 256 probes, " +
			"98 % after 1,000); symmetric against symmetric stays on the relay unless one side has a port mapping",
		"unknown": "unknown: too few answers",
	}[a.Pattern]
	return a
}

// classifyPorts: preserved, sequential (monotonic steps of at most
// sequentialSpread, wrapping allowed), random, or unknown (fewer than 3).
func classifyPorts(ports []uint16, preserved bool) string {
	if len(ports) < 3 {
		return "unknown"
	}
	if preserved {
		return "preserved"
	}
	up, down := true, true
	for i := 1; i < len(ports); i++ {
		d := ports[i] - ports[i-1] // wraps: 65535 -> 0 is a step of 1
		up = up && d >= 1 && d <= sequentialSpread
		down = down && -d >= 1 && -d <= sequentialSpread
	}
	if up || down {
		return "sequential"
	}
	return "random"
}
