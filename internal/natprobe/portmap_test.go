package natprobe

import (
	"context"
	"encoding/binary"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/ferrynet/ferry/internal/netaddr"
	"github.com/ferrynet/ferry/internal/testutil"
)

func TestClassifyPorts(t *testing.T) {
	for _, tc := range []struct {
		ports     []uint16
		preserved bool
		want      string
	}{
		{[]uint16{1, 2}, false, "unknown"},
		{[]uint16{40000, 40001, 40002}, true, "preserved"},
		{[]uint16{40000, 40001, 40003, 40004}, false, "sequential"},
		{[]uint16{65534, 65535, 0, 1}, false, "sequential"},
		{[]uint16{40010, 40008, 40001}, false, "sequential"},
		{[]uint16{40000, 40001, 40000}, false, "random"},
		{[]uint16{40000, 40000, 40000}, false, "random"},
		{[]uint16{12345, 61000, 3000, 45000}, false, "random"},
		{[]uint16{40000, 40100, 40200}, false, "random"},
	} {
		if got := classifyPorts(tc.ports, tc.preserved); got != tc.want {
			t.Errorf("classifyPorts(%v, %v) = %s, want %s", tc.ports, tc.preserved, got, tc.want)
		}
	}
}

// fakeGateway answers NAT-PMP/PCP and SSDP on loopback: well ("good"),
// with garbage and truncated answers ("garbage"), or lying ("liar": a
// NAT-PMP error code, a PCP answer in NAT-PMP's version, SSDP for
// another device type).
func fakeGateway(t *testing.T, mode string) (pmp, ssdp uint16) {
	t.Helper()
	listen := func() *net.UDPConn {
		c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	pc, sc := listen(), listen()
	serve := func(c *net.UDPConn, answer func([]byte) [][]byte) {
		go func() {
			buf := make([]byte, 2048)
			for {
				n, from, err := c.ReadFromUDPAddrPort(buf)
				if err != nil {
					return
				}
				for _, a := range answer(buf[:n]) {
					_, _ = c.WriteToUDPAddrPort(a, from)
				}
			}
		}()
	}
	serve(pc, func(req []byte) [][]byte {
		switch mode {
		case "garbage":
			return [][]byte{{0}, {0, 128}, {2, 0x80, 0, 0}, []byte("garbage garbage garbage garbage")}
		case "liar":
			if req[0] == 2 {
				return [][]byte{{0, 0x80, 0, 1, 0, 0, 0, 0}} // version 0: "unsupported version"
			}
			return [][]byte{{0, 128, 0, 3, 0, 0, 0, 1, 0, 0, 0, 0}} // result 3: network failure
		}
		if req[0] == 2 {
			r := make([]byte, 24)
			r[0], r[1] = 2, 0x80
			return [][]byte{r}
		}
		r := []byte{0, 128, 0, 0, 0, 0, 0, 1}
		return [][]byte{binary.BigEndian.AppendUint32(r, 0xcb007109)} // 203.0.113.9
	})
	serve(sc, func([]byte) [][]byte {
		switch mode {
		case "garbage":
			return [][]byte{[]byte("HTTP/1.1 200"), {0xff, 0xfe}}
		case "liar":
			return [][]byte{[]byte("HTTP/1.1 200 OK\r\nST: urn:schemas-upnp-org:device:MediaServer:1\r\n\r\n")}
		}
		return [][]byte{[]byte("HTTP/1.1 200 OK\r\nST: urn:schemas-upnp-org:device:InternetGatewayDevice:1\r\nLOCATION: http://127.0.0.1:1/\r\n\r\n")}
	})
	return netaddr.AddrPort(pc.LocalAddr()).Port(), netaddr.AddrPort(sc.LocalAddr()).Port()
}

func TestPortMappingFakeGateway(t *testing.T) {
	testutil.CheckLeaks(t)
	testutil.Deadline(t, 30*time.Second)
	lo := netip.MustParseAddr("127.0.0.1")
	p := &prober{
		cfg: Config{ListenPacket: func(ctx context.Context, network, address string) (net.PacketConn, error) {
			var lc net.ListenConfig
			return lc.ListenPacket(ctx, network, address)
		}},
		rto: 50 * time.Millisecond, timeout: 600 * time.Millisecond,
		log: slog.New(slog.DiscardHandler), network: "udp4", local: lo,
	}
	for _, tc := range []struct {
		mode      string
		want      PortMapping
		wantEmpty bool // no details expected
	}{
		{"good", PortMapping{UPnP: true, NATPMP: true, PCP: true, ExternalAddr: "203.0.113.9"}, true},
		{"garbage", PortMapping{}, false},
		{"liar", PortMapping{NATPMP: true}, false},
	} {
		pmp, ssdp := fakeGateway(t, tc.mode)
		got := p.portMappingTestAt(context.Background(), lo, pmp, ssdp)
		if got.UPnP != tc.want.UPnP || got.NATPMP != tc.want.NATPMP || got.PCP != tc.want.PCP || got.ExternalAddr != tc.want.ExternalAddr {
			t.Errorf("%s: %+v, want %+v", tc.mode, got, tc.want)
		}
		if (got.Detail == "") != tc.wantEmpty {
			t.Errorf("%s: detail %q", tc.mode, got.Detail)
		}
		if got.Any() != (tc.want.UPnP || tc.want.NATPMP || tc.want.PCP) {
			t.Errorf("%s: Any %v", tc.mode, got.Any())
		}
	}
	// A silent gateway costs one timeout, not three in a row.
	start := time.Now()
	silent, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	port := netaddr.AddrPort(silent.LocalAddr()).Port()
	if got := p.portMappingTestAt(context.Background(), lo, port, port); got.Any() {
		t.Errorf("silent gateway: %+v", got)
	}
	t.Logf("silent gateway took %v", time.Since(start))
}

func TestGatewayFor(t *testing.T) {
	table := `Iface	Destination	Gateway 	Flags	RefCnt	Use	Metric	Mask		MTU	Window	IRTT
eth0	00000000	0101A8C0	0003	0	0	0	00000000	0	0	0
eth0	0000A8C0	00000000	0001	0	0	0	00FFFFFF	0	0	0
eth1	007100CB	0100010A	0003	0	0	0	00FFFFFF	0	0	0
bad	zz	zz	zz	0	0	0	zz	0	0	0
short line
`
	for _, tc := range []struct{ dst, want string }{
		{"203.0.113.2", "10.1.0.1"},     // the more specific route
		{"198.51.100.7", "192.168.1.1"}, // the default route
		{"192.168.0.9", ""},             // on-link: no gateway
		{"2001:db8::1", ""},             // IPv6: not read
	} {
		got, err := gatewayFor(strings.NewReader(table), netip.MustParseAddr(tc.dst))
		if tc.want == "" {
			if err == nil {
				t.Errorf("%s: gateway %v, want none", tc.dst, got)
			}
			continue
		}
		if err != nil || got.String() != tc.want {
			t.Errorf("%s: %v %v, want %s", tc.dst, got, err, tc.want)
		}
	}
}
