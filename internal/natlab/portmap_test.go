package natlab_test

import (
	"context"
	"encoding/binary"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/ferrynet/ferry/internal/natlab"
	"github.com/ferrynet/ferry/internal/natlab/natlabtest"
	"github.com/ferrynet/ferry/internal/testutil"
)

// natpmp sends one NAT-PMP request (RFC 6886) from c to the gateway and
// returns the answer, retrying every 250 ms.
func natpmp(t *testing.T, c net.PacketConn, gw netip.Addr, req []byte) []byte {
	t.Helper()
	to := net.UDPAddrFromAddrPort(netip.AddrPortFrom(gw, natlab.NATPMPPort))
	buf := make([]byte, 1100)
	for range 20 {
		if _, err := c.WriteTo(req, to); err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(250 * time.Millisecond))
		n, _, err := c.ReadFrom(buf)
		if err == nil && n >= 8 && buf[1] == req[1]+128 {
			return buf[:n]
		}
	}
	t.Fatalf("no NAT-PMP answer to op %d from %v", req[1], gw)
	return nil
}

// TestSelfCheckPortMapping proves the lab's port-mapping router for each
// NAT type: miniupnpd answers NAT-PMP with the site's public address, a
// UDP mapping appears as a DNAT rule in its nftables table, a packet from
// the server to the mapped port reaches the host (even behind the
// symmetric NAT, whose ports are otherwise random), and deleting the
// mapping removes the rule.
func TestSelfCheckPortMapping(t *testing.T) {
	t.Parallel()
	testutil.RequireRoot(t)
	testutil.RequireBinary(t, "miniupnpd", "miniupnpd-nftables")
	testutil.RequireBinary(t, "turnserver", "coturn")
	testutil.Deadline(t, 2*time.Minute)
	lab := natlabtest.New(t, natlab.Config{Sites: []natlab.SiteConfig{
		{Name: "s", NAT: natlab.Symmetric, PortMapping: true},
		{Name: "p", NAT: natlab.PortRestrictedCone, PortMapping: true},
		{Name: "n", NAT: natlab.PortRestrictedCone},
	}})
	if lab.Site("n").PortMapper() != nil {
		t.Fatal("a site without PortMapping has a port mapper")
	}
	ctx := context.Background()
	for _, name := range []string{"s", "p"} {
		t.Run(name, func(t *testing.T) {
			site := lab.Site(name)
			pm := site.PortMapper()
			if pm == nil {
				t.Fatal("no port mapper")
			}
			h := site.Host(0)
			c, err := h.ListenPacket(ctx, "udp4", ":0")
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			res := natpmp(t, c, h.Gateway(), []byte{0, 0})
			if len(res) != 12 || binary.BigEndian.Uint16(res[2:4]) != 0 {
				t.Fatalf("external address answer % x\n%s", res, pm.Output())
			}
			if ext := netip.AddrFrom4([4]byte(res[8:12])); ext != site.PublicAddr {
				t.Fatalf("NAT-PMP external address %v, want %v", ext, site.PublicAddr)
			}

			data, err := h.ListenPacket(ctx, "udp4", ":0")
			if err != nil {
				t.Fatal(err)
			}
			defer data.Close()
			port := uint16(data.LocalAddr().(*net.UDPAddr).Port)
			req := []byte{0, 1, 0, 0}
			req = binary.BigEndian.AppendUint16(req, port)
			req = binary.BigEndian.AppendUint16(req, port)
			req = binary.BigEndian.AppendUint32(req, 60)
			res = natpmp(t, c, h.Gateway(), req)
			if len(res) != 16 || binary.BigEndian.Uint16(res[2:4]) != 0 {
				t.Fatalf("map answer % x\n%s", res, pm.Output())
			}
			ext := binary.BigEndian.Uint16(res[10:12])
			rules, err := pm.Mappings(ctx)
			if err != nil {
				t.Fatal(err)
			}
			want := "to " + netip.AddrPortFrom(h.Addr(), port).String()
			if len(rules) != 1 || !strings.Contains(rules[0], want) {
				t.Fatalf("mappings %q, want one with %q", rules, want)
			}

			// Unsolicited, from the server, to the mapped port.
			srv, err := lab.Server().ListenPacket(ctx, "udp4", natlab.ServerAddr.String()+":0")
			if err != nil {
				t.Fatal(err)
			}
			defer srv.Close()
			natlabtest.SendUntilHeard(t, srv, netip.AddrPortFrom(site.PublicAddr, ext), data, "mapped", 20*time.Second)

			// Lifetime 0 deletes the mapping.
			del := append(append([]byte{}, req[:8]...), 0, 0, 0, 0)
			binary.BigEndian.PutUint16(del[6:8], 0)
			if res = natpmp(t, c, h.Gateway(), del); binary.BigEndian.Uint16(res[2:4]) != 0 {
				t.Fatalf("delete answer % x", res)
			}
			if rules, err = pm.Mappings(ctx); err != nil || len(rules) != 0 {
				t.Fatalf("after delete: %q %v", rules, err)
			}
		})
	}
}

func TestPortMappingNeedsNAT(t *testing.T) {
	err := natlab.SiteConfig{Name: "x", NAT: natlab.None, PortMapping: true}.Validate()
	if err == nil || !strings.Contains(err.Error(), "port mapping needs a NAT") {
		t.Fatalf("Validate: %v", err)
	}
}
