package portmap

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferrynet/ferry/internal/testutil"
)

// fakeIGD is a UPnP IGD on 127.0.18.N: an SSDP responder on port 1900 and
// an HTTP server with the device description and the SOAP control URL.
// Each field shapes one answer; the zero value answers honestly.
type fakeIGD struct {
	ip       netip.Addr
	httpAddr string
	// ssdp returns the SSDP answer for the description URL.
	ssdp func(descURL string) string
	// desc returns the description for the control URL.
	desc func(ctlURL string) string
	// ctlURL overrides where the description points the control URL.
	ctlURL string
	// ext is GetExternalIPAddress's answer; addFault, if set, is the UPnP
	// error code AddPortMapping answers; soap replaces every SOAP body.
	ext      string
	addFault int
	soap     string
	// conflict, if set, is an external port another client holds (718).
	conflict string

	adds, deletes atomic.Int32
	mu            sync.Mutex
	extPorts      []string // NewExternalPort of each AddPortMapping
}

func honestSSDP(descURL string) string {
	return "HTTP/1.1 200 OK\r\nCACHE-CONTROL: max-age=120\r\nST: urn:schemas-upnp-org:device:InternetGatewayDevice:1\r\n" +
		"USN: uuid:1::urn:schemas-upnp-org:device:InternetGatewayDevice:1\r\nLOCATION: " + descURL + "\r\n\r\n"
}

func honestDesc(ctlURL string) string {
	return `<?xml version="1.0"?>
<root xmlns="urn:schemas-upnp-org:device-1-0"><specVersion><major>1</major><minor>0</minor></specVersion>
<device><deviceType>urn:schemas-upnp-org:device:InternetGatewayDevice:1</deviceType><friendlyName>fake</friendlyName><UDN>uuid:1</UDN>
<deviceList><device><deviceType>urn:schemas-upnp-org:device:WANDevice:1</deviceType><UDN>uuid:2</UDN>
<deviceList><device><deviceType>urn:schemas-upnp-org:device:WANConnectionDevice:1</deviceType><UDN>uuid:3</UDN>
<serviceList><service><serviceType>urn:schemas-upnp-org:service:WANIPConnection:1</serviceType>
<serviceId>urn:upnp-org:serviceId:WANIPConn1</serviceId><controlURL>` + ctlURL + `</controlURL>
<eventSubURL>/evt</eventSubURL><SCPDURL>/scpd.xml</SCPDURL></service></serviceList>
</device></deviceList></device></deviceList></device></root>`
}

const soapOK = `<?xml version="1.0"?><s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" s:encodingStyle="http://schemas.xmlsoap.org/soap/encoding/"><s:Body>%s</s:Body></s:Envelope>`

func newFakeIGD(t *testing.T, shape func(*fakeIGD)) *fakeIGD {
	t.Helper()
	ip := netip.AddrFrom4([4]byte{127, 0, 18, byte(60 + nextFake.Add(1))})
	g := &fakeIGD{ip: ip, ssdp: honestSSDP, desc: honestDesc, ctlURL: "/ctl", ext: "203.0.113.9"}
	if shape != nil {
		shape(g)
	}
	uc, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(ip, ssdpPort)))
	if err != nil {
		t.Skipf("cannot bind the fake IGD at %v:%d: %v", ip, ssdpPort, err)
	}
	ln, err := net.Listen("tcp4", ip.String()+":0")
	if err != nil {
		t.Fatal(err)
	}
	g.httpAddr = ln.Addr().String()
	srv := &http.Server{Handler: http.HandlerFunc(g.serveHTTP), ReadHeaderTimeout: 5 * time.Second}
	var wg sync.WaitGroup
	wg.Go(func() { _ = srv.Serve(ln) })
	wg.Go(func() {
		buf := make([]byte, 2048)
		for {
			n, from, err := uc.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			if strings.HasPrefix(string(buf[:n]), "M-SEARCH") {
				_, _ = uc.WriteToUDPAddrPort([]byte(g.ssdp("http://"+g.httpAddr+"/desc.xml")), from)
			}
		}
	})
	t.Cleanup(func() {
		_ = uc.Close()
		_ = srv.Close()
		wg.Wait()
	})
	return g
}

func (g *fakeIGD) serveHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<16))
	extPort := ""
	if _, after, ok := strings.Cut(string(body), "<NewExternalPort>"); ok {
		extPort, _, _ = strings.Cut(after, "<")
	}
	if r.URL.Path == "/desc.xml" {
		_, _ = io.WriteString(w, g.desc(g.ctlURL))
		return
	}
	if g.soap != "" {
		_, _ = io.WriteString(w, g.soap)
		return
	}
	action := r.Header.Get("SOAPACTION")
	const ns = `xmlns:u="urn:schemas-upnp-org:service:WANIPConnection:1"`
	switch {
	case strings.Contains(action, "#GetExternalIPAddress"):
		fmt.Fprintf(w, soapOK, `<u:GetExternalIPAddressResponse `+ns+`><NewExternalIPAddress>`+g.ext+`</NewExternalIPAddress></u:GetExternalIPAddressResponse>`)
	case strings.Contains(action, "#AddPortMapping"):
		g.adds.Add(1)
		g.mu.Lock()
		g.extPorts = append(g.extPorts, extPort)
		g.mu.Unlock()
		fault := g.addFault
		if g.conflict != "" && extPort == g.conflict {
			fault = 718
		}
		if fault != 0 {
			w.WriteHeader(http.StatusInternalServerError)
			fmt.Fprintf(w, soapOK, fmt.Sprintf(`<s:Fault><faultcode>s:Client</faultcode><faultstring>UPnPError</faultstring><detail><UPnPError xmlns="urn:schemas-upnp-org:control-1-0"><errorCode>%d</errorCode><errorDescription>nope</errorDescription></UPnPError></detail></s:Fault>`, fault))
			return
		}
		fmt.Fprintf(w, soapOK, `<u:AddPortMappingResponse `+ns+`></u:AddPortMappingResponse>`)
	case strings.Contains(action, "#DeletePortMapping"):
		g.deletes.Add(1)
		fmt.Fprintf(w, soapOK, `<u:DeletePortMappingResponse `+ns+`></u:DeletePortMappingResponse>`)
	default:
		http.Error(w, "no such action", http.StatusBadRequest)
	}
}

// decoy counts requests to a server that is not the gateway.
func decoy(t *testing.T) (string, *atomic.Int32) {
	t.Helper()
	var hits atomic.Int32
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		hits.Add(1)
		_, _ = io.WriteString(w, honestDesc("/ctl"))
	}), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return ln.Addr().String(), &hits
}

func startUPnP(t *testing.T, g *fakeIGD) *Mapper {
	t.Helper()
	m, err := Start(Config{Gateway: g.ip, Local: local, Protocols: []string{UPnP}, Timeout: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close() })
	return m
}

func TestUPnPMapRenewDelete(t *testing.T) {
	testutil.CheckLeaks(t)
	testutil.Deadline(t, 30*time.Second)
	g := newFakeIGD(t, nil)
	m, err := Start(Config{Gateway: g.ip, Local: local, Protocols: []string{UPnP}, Lifetime: 3 * time.Second, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	want := netip.MustParseAddrPort("203.0.113.9:40000")
	testutil.WaitFor(t, 10*time.Second, "a mapping", func() bool { return m.Addr() == want })
	if m.Protocol() != UPnP {
		t.Fatalf("protocol %q", m.Protocol())
	}
	testutil.WaitFor(t, 20*time.Second, "a renewal", func() bool { return m.Renewals() >= 2 })
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if g.deletes.Load() != 1 || m.Addr().IsValid() {
		t.Fatalf("after Close: %d deletes, addr %v", g.deletes.Load(), m.Addr())
	}
}

// TestUPnPConflict: when another client holds the external port, the
// Mapper takes a random one, and renews that one.
func TestUPnPConflict(t *testing.T) {
	testutil.CheckLeaks(t)
	testutil.Deadline(t, 30*time.Second)
	g := newFakeIGD(t, func(g *fakeIGD) { g.conflict = "40000" })
	m, err := Start(Config{Gateway: g.ip, Local: local, Protocols: []string{UPnP}, Lifetime: 3 * time.Second, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	testutil.WaitFor(t, 20*time.Second, "a renewal", func() bool { return m.Renewals() >= 2 })
	a := m.Addr()
	if a.Addr() != netip.MustParseAddr("203.0.113.9") || a.Port() == 40000 || a.Port() < 1024 {
		t.Fatalf("mapped %v: want 203.0.113.9 on another port", a)
	}
	g.mu.Lock()
	ports := append([]string(nil), g.extPorts...)
	g.mu.Unlock()
	// 40000 (refused), a random one, then the renewal asks for that one.
	if len(ports) < 3 || ports[0] != "40000" || ports[1] == "40000" || ports[2] != ports[1] {
		t.Fatalf("external ports asked: %q", ports)
	}
}

// TestUPnPBadGateways: garbage, lies and pointers elsewhere never give a
// mapped address, never make a request to anyone but the gateway, and
// never panic; Close sends no delete.
func TestUPnPBadGateways(t *testing.T) {
	testutil.CheckLeaks(t)
	testutil.Deadline(t, 90*time.Second)
	elsewhere, hits := decoy(t)
	huge := strings.Repeat("<a>", 200<<10)
	for _, tc := range []struct {
		name  string
		shape func(*fakeIGD)
	}{
		{"SSDP garbage", func(g *fakeIGD) { g.ssdp = func(string) string { return "\x00\x01 not HTTP at all" } }},
		{"SSDP error status", func(g *fakeIGD) {
			g.ssdp = func(u string) string { return strings.Replace(honestSSDP(u), "200 OK", "404 Not Found", 1) }
		}},
		{"SSDP location elsewhere", func(g *fakeIGD) {
			g.ssdp = func(string) string { return honestSSDP("http://" + elsewhere + "/desc.xml") }
		}},
		{"SSDP location not http", func(g *fakeIGD) { g.ssdp = func(string) string { return honestSSDP("file:///etc/passwd") } }},
		{"description garbage", func(g *fakeIGD) { g.desc = func(string) string { return "<root><device>" } }},
		{"description huge", func(g *fakeIGD) {
			g.desc = func(string) string { return `<root xmlns="urn:schemas-upnp-org:device-1-0">` + huge }
		}},
		{"description without the service", func(g *fakeIGD) {
			g.desc = func(c string) string { return strings.ReplaceAll(honestDesc(c), "WANIPConnection", "Printer") }
		}},
		{"control URL elsewhere", func(g *fakeIGD) { g.ctlURL = "http://" + elsewhere + "/ctl" }},
		{"external address private", func(g *fakeIGD) { g.ext = "192.168.1.7" }},
		{"external address CGNAT", func(g *fakeIGD) { g.ext = "100.64.0.9" }},
		{"external address garbage", func(g *fakeIGD) { g.ext = "not an address" }},
		{"external address IPv6", func(g *fakeIGD) { g.ext = "2001:db8::1" }},
		{"external address unspecified", func(g *fakeIGD) { g.ext = "0.0.0.0" }},
		{"external address ours", func(g *fakeIGD) { g.ext = local.Addr().String() }},
		{"mapping refused", func(g *fakeIGD) { g.addFault = 718 }},
		{"SOAP garbage", func(g *fakeIGD) { g.soap = "<<<>>>" }},
		{"SOAP huge", func(g *fakeIGD) { g.soap = fmt.Sprintf(soapOK, huge) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := newFakeIGD(t, tc.shape)
			m := startUPnP(t, g)
			// The same request the Mapper's first round makes.
			_, _, rerr := m.request(time.Minute)
			if rerr == nil {
				t.Fatal("the answer was believed")
			}
			if a := m.Addr(); a.IsValid() {
				t.Fatalf("mapped %v", a)
			}
			if err := m.Close(); err != nil {
				t.Fatal(err)
			}
			if g.deletes.Load() != 0 || hits.Load() != 0 {
				t.Fatalf("%d deletes, %d requests elsewhere", g.deletes.Load(), hits.Load())
			}
			if strings.HasPrefix(tc.name, "external address") && !errors.Is(rerr, ErrBadAnswer) {
				t.Errorf("refused with %v, want ErrBadAnswer", rerr)
			}
			t.Logf("refused: %v", rerr)
		})
	}
}
