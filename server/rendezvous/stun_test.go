package rendezvous

import (
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pion/stun/v4"

	"github.com/ferrynet/ferry/internal/netaddr"
	"github.com/ferrynet/ferry/internal/testutil"
)

func newSTUNOnly(t *testing.T, conns []net.PacketConn) *Server {
	t.Helper()
	return startServer(t, Config{STUNConns: conns})
}

func bindingRequest(t testing.TB, setters ...stun.Setter) []byte {
	t.Helper()
	m, err := stun.Build(append([]stun.Setter{stun.TransactionID, stun.BindingRequest}, setters...)...)
	if err != nil {
		t.Fatal(err)
	}
	return m.Raw
}

func changeRequest(flags uint32) stun.Setter {
	return stun.RawAttribute{Type: stun.AttrChangeRequest, Value: binary.BigEndian.AppendUint32(nil, flags)}
}

func TestSTUNBinding(t *testing.T) {
	testutil.CheckLeaks(t)
	testutil.Deadline(t, 20*time.Second)
	s := newSTUNOnly(t, []net.PacketConn{listenUDP(t, "127.0.0.1:0")})
	dst := s.STUNAddrs()[0]
	c := listenUDP(t, "127.0.0.1:0")
	defer c.Close()
	local := netaddr.AddrPort(c.LocalAddr())

	for _, fp := range []bool{false, true} {
		var set []stun.Setter
		if fp {
			set = append(set, stun.Fingerprint)
		}
		res, from := stunExchange(t, c, dst, bindingRequest(t, set...), 2*time.Second)
		if res == nil {
			t.Fatal("no answer")
		}
		if res.Type != stun.BindingSuccess || from != dst {
			t.Fatalf("answer %v from %v", res.Type, from)
		}
		var xa stun.XORMappedAddress
		if err := xa.GetFrom(res); err != nil {
			t.Fatal(err)
		}
		if got := netip.AddrPortFrom(netip.MustParseAddr(xa.IP.String()), uint16(xa.Port)); got != local {
			t.Fatalf("XOR-MAPPED-ADDRESS %v, want %v", got, local)
		}
		if err := stun.Fingerprint.Check(res); err != nil {
			t.Fatalf("FINGERPRINT: %v", err)
		}
		for _, a := range []stun.AttrType{stun.AttrOtherAddress, stun.AttrResponseOrigin, stun.AttrMappedAddress} {
			if res.Contains(a) {
				t.Fatalf("basic mode answer has %v", a)
			}
		}
	}
	// Without an alternate address, CHANGE-REQUEST gets 420 (RFC 5780
	// section 6.1), even with no flags set.
	res, _ := stunExchange(t, c, dst, bindingRequest(t, changeRequest(0)), 2*time.Second)
	if res == nil || res.Type != stun.BindingError {
		t.Fatalf("CHANGE-REQUEST without RFC 5780: %v", res)
	}
	var ua stun.UnknownAttributes
	if err := ua.GetFrom(res); err != nil || len(ua) != 1 || ua[0] != stun.AttrChangeRequest {
		t.Fatalf("UNKNOWN-ATTRIBUTES %v (%v)", ua, err)
	}
	waitCount(t, s, STUNAnswered, 2)
}

func TestSTUNRFC5780(t *testing.T) {
	testutil.CheckLeaks(t)
	testutil.Deadline(t, 20*time.Second)
	s := newSTUNOnly(t, rfc5780Conns(t))
	a := s.STUNAddrs() // IP1:P1, IP1:P2, IP2:P1, IP2:P2
	c := listenUDP(t, "127.0.0.1:0")
	defer c.Close()
	local := netaddr.AddrPort(c.LocalAddr())

	for in := range 4 {
		for _, flags := range []uint32{0, changePortFlag, changeIPFlag, changeIPFlag | changePortFlag} {
			want := in
			if flags&changeIPFlag != 0 {
				want ^= 2
			}
			if flags&changePortFlag != 0 {
				want ^= 1
			}
			res, from := stunExchange(t, c, a[in], bindingRequest(t, changeRequest(flags), stun.Fingerprint), 2*time.Second)
			if res == nil {
				t.Fatalf("to %v, flags %#x: no answer", a[in], flags)
			}
			if from != a[want] {
				t.Fatalf("to %v, flags %#x: answer from %v, want %v", a[in], flags, from, a[want])
			}
			var origin stun.ResponseOrigin
			var other stun.OtherAddress
			var mapped stun.MappedAddress
			var xa stun.XORMappedAddress
			for _, g := range []stun.Getter{&origin, &other, &mapped, &xa} {
				if err := g.GetFrom(res); err != nil {
					t.Fatalf("to %v: %T: %v", a[in], g, err)
				}
			}
			check := func(name string, ip net.IP, port int, want netip.AddrPort) {
				t.Helper()
				if got := netip.AddrPortFrom(netip.MustParseAddr(ip.String()), uint16(port)); got != want {
					t.Fatalf("to %v flags %#x: %s %v, want %v", a[in], flags, name, got, want)
				}
			}
			check("RESPONSE-ORIGIN", origin.IP, origin.Port, a[want])
			check("OTHER-ADDRESS", other.IP, other.Port, a[3-in])
			check("MAPPED-ADDRESS", mapped.IP, mapped.Port, local)
			check("XOR-MAPPED-ADDRESS", xa.IP, xa.Port, local)
			if err := stun.Fingerprint.Check(res); err != nil {
				t.Fatal(err)
			}
		}
	}
	waitCount(t, s, STUNChanged, 12)

	// PADDING: the answer is padded but never larger than the request.
	for _, pad := range []int{4, 100, 1500, 8000} {
		req := bindingRequest(t, stun.RawAttribute{Type: stun.AttrPadding, Value: make([]byte, pad)}, stun.Fingerprint)
		res, _ := stunExchange(t, c, a[0], req, 2*time.Second)
		if res == nil {
			t.Fatalf("padding %d: no answer", pad)
		}
		p, err := res.Get(stun.AttrPadding)
		if pad < 100 {
			// The answer's own attributes leave no room for padding.
			if err == nil {
				t.Fatalf("padding %d: answer padded beyond the request", pad)
			}
			continue
		}
		if err != nil {
			t.Fatalf("padding %d: answer without PADDING", pad)
		}
		if len(res.Raw) > len(req) || len(p) == 0 {
			t.Fatalf("padding %d: request %d bytes, answer %d bytes with %d bytes of padding", pad, len(req), len(res.Raw), len(p))
		}
		if pad >= 100 && len(res.Raw) < len(req)-8 {
			t.Fatalf("padding %d: answer %d bytes for a %d-byte request", pad, len(res.Raw), len(req))
		}
	}
}

// TestSTUNBadInput sends what a STUN server must drop or refuse, and checks
// each is counted under its disposition and nothing else is answered.
func TestSTUNBadInput(t *testing.T) {
	testutil.CheckLeaks(t)
	testutil.Deadline(t, 30*time.Second)
	s := newSTUNOnly(t, rfc5780Conns(t))
	dst := s.STUNAddrs()[0]
	c := listenUDP(t, "127.0.0.1:0")
	defer c.Close()

	good := bindingRequest(t, stun.Fingerprint)
	badFP := append([]byte(nil), good...)
	badFP[len(badFP)-1] ^= 1
	longer := append(append([]byte(nil), good...), 0, 0, 0, 0)
	truncatedAttr := bindingRequest(t)
	truncatedAttr = append(truncatedAttr, 0x80, 0x22, 0x00, 0x08) // SOFTWARE claiming 8 bytes, none present
	binary.BigEndian.PutUint16(truncatedAttr[2:4], 4)
	indication, _ := stun.Build(stun.TransactionID, stun.NewType(stun.MethodBinding, stun.ClassIndication))
	allocate, _ := stun.Build(stun.TransactionID, stun.NewType(stun.MethodAllocate, stun.ClassRequest))
	response, _ := stun.Build(stun.TransactionID, stun.BindingSuccess)
	shortChange := bindingRequest(t, stun.RawAttribute{Type: stun.AttrChangeRequest, Value: []byte{0, 0, 4}})

	drops := []struct {
		name, disposition string
		pkt               []byte
	}{
		{"http", STUNNotSTUN, []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n")},
		{"empty", STUNNotSTUN, nil},
		{"one byte", STUNNotSTUN, []byte{0}},
		{"header only, no cookie", STUNNotSTUN, make([]byte, 20)},
		{"length mismatch", STUNMalformed, longer},
		{"truncated attribute", STUNMalformed, truncatedAttr},
		{"bad fingerprint", STUNMalformed, badFP},
		{"short CHANGE-REQUEST", STUNMalformed, shortChange},
		{"binding indication", STUNIndication, indication.Raw},
		{"allocate", STUNUnsupported, allocate.Raw},
		{"a response", STUNUnsupported, response.Raw},
	}
	for _, d := range drops {
		before := stunCount(s, d.disposition)
		if res, _ := stunExchange(t, c, dst, d.pkt, 150*time.Millisecond); res != nil {
			t.Fatalf("%s: answered with %v", d.name, res.Type)
		}
		waitCount(t, s, d.disposition, before+1)
	}
	// An unknown comprehension-required attribute gets 420 naming it; an
	// unknown optional one is ignored. (RESPONSE-PORT is understood here:
	// TestSTUNResponsePort.)
	res, _ := stunExchange(t, c, dst, bindingRequest(t,
		stun.RawAttribute{Type: 0x7777, Value: []byte{1}},
		stun.RawAttribute{Type: 0x7778, Value: []byte{0x12, 0x34, 0, 0}},
		stun.RawAttribute{Type: 0xC777, Value: []byte{1, 2}}), 2*time.Second)
	if res == nil || res.Type != stun.BindingError {
		t.Fatalf("unknown attribute: %v", res)
	}
	var ec stun.ErrorCodeAttribute
	var ua stun.UnknownAttributes
	if ec.GetFrom(res) != nil || ec.Code != stun.CodeUnknownAttribute || ua.GetFrom(res) != nil ||
		len(ua) != 2 || ua[0] != 0x7777 || ua[1] != 0x7778 {
		t.Fatalf("420 answer: %v %v", ec, ua)
	}
	if res, _ := stunExchange(t, c, dst, bindingRequest(t, stun.RawAttribute{Type: 0xC777, Value: []byte{1}}), 2*time.Second); res == nil || res.Type != stun.BindingSuccess {
		t.Fatalf("unknown optional attribute: %v", res)
	}
	// The server still works.
	if res, _ := stunExchange(t, c, dst, good, 2*time.Second); res == nil || res.Type != stun.BindingSuccess {
		t.Fatal("no answer after bad input")
	}
}

// FuzzSTUNHandle runs the STUN request handler on arbitrary datagrams: it
// never panics, and whatever it sends is a well-formed STUN answer.
func FuzzSTUNHandle(f *testing.F) {
	for _, seed := range [][]byte{
		bindingRequest(f), bindingRequest(f, stun.Fingerprint), bindingRequest(f, changeRequest(6)),
		bindingRequest(f, stun.RawAttribute{Type: stun.AttrPadding, Value: make([]byte, 64)}),
		bindingRequest(f, stun.RawAttribute{Type: 0x7777, Value: []byte{1}}),
		[]byte("garbage"),
	} {
		f.Add(seed, uint8(0))
	}
	f.Fuzz(func(t *testing.T, pkt []byte, in uint8) {
		rec := &recordConn{}
		conns := []net.PacketConn{rec, rec, rec, rec}
		l := layout{rfc5780: true, addrs: []netip.AddrPort{
			netip.MustParseAddrPort("192.0.2.1:3478"), netip.MustParseAddrPort("192.0.2.1:3479"),
			netip.MustParseAddrPort("192.0.2.2:3478"), netip.MustParseAddrPort("192.0.2.2:3479"),
		}}
		s := newSTUNServer(conns, l, newMetrics(), discardLogger(), nil)
		w := &stunWorker{}
		s.handle(w, int(in%4), pkt, netip.MustParseAddrPort("198.51.100.7:5000"))
		for _, out := range rec.sent {
			m := &stun.Message{Raw: out}
			if err := m.Decode(); err != nil {
				t.Fatalf("sent a broken answer: %v", err)
			}
			if err := stun.Fingerprint.Check(m); err != nil {
				t.Fatalf("answer fingerprint: %v", err)
			}
			if len(pkt) >= 20 && len(out) > len(pkt)+64 {
				t.Fatalf("answer of %d bytes to %d", len(out), len(pkt))
			}
		}
	})
}

// recordConn is a PacketConn that records what is written to it.
type recordConn struct {
	net.PacketConn
	sent [][]byte
}

func (r *recordConn) WriteTo(b []byte, _ net.Addr) (int, error) {
	r.sent = append(r.sent, append([]byte(nil), b...))
	return len(b), nil
}

func TestSTUNLayoutValidation(t *testing.T) {
	conns := rfc5780Conns(t)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	wild := listenUDP(t, "0.0.0.0:0")
	defer wild.Close()
	tests := []struct {
		name  string
		conns []net.PacketConn
		ext   []netip.Addr
		ok    bool
	}{
		{"one", conns[:1], nil, true},
		{"four", conns, nil, true},
		{"two", conns[:2], nil, false},
		{"swapped", []net.PacketConn{conns[0], conns[2], conns[1], conns[3]}, nil, false},
		{"same IP", []net.PacketConn{conns[0], conns[1], conns[0], conns[1]}, nil, false},
		{"wildcard", []net.PacketConn{wild, wild, wild, wild}, nil, false},
		{"external one", conns[:1], []netip.Addr{netip.MustParseAddr("203.0.113.1")}, true},
		{"external two for four", conns, []netip.Addr{netip.MustParseAddr("203.0.113.1"), netip.MustParseAddr("203.0.113.2")}, true},
		{"external one for four", conns, []netip.Addr{netip.MustParseAddr("203.0.113.1")}, false},
		{"external unspecified", conns[:1], []netip.Addr{netip.IPv4Unspecified()}, false},
		{"external without sockets", nil, []netip.Addr{netip.MustParseAddr("203.0.113.1")}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, err := stunLayout(tt.conns, tt.ext)
			if (err == nil) != tt.ok {
				t.Fatalf("err = %v, want ok %v", err, tt.ok)
			}
			if err == nil && len(tt.ext) == 2 && (l.addrs[1].Addr() != tt.ext[0] || l.addrs[3].Addr() != tt.ext[1]) {
				t.Fatalf("external addresses not applied: %v", l.addrs)
			}
		})
	}
	if _, err := ListenSTUN(context.Background(), ":0", "127.0.0.2:0"); err == nil {
		t.Fatal("ListenSTUN accepted a wildcard primary with an alternate")
	}
}

// TestSTUNNatDiscovery is the RFC 5780 acceptance test against an outside
// client: coturn's turnutils_natdiscovery, run against the server on
// 127.0.0.1 and 127.0.0.2, must find no NAT and endpoint-independent
// mapping and filtering, with and without padding.
func TestSTUNNatDiscovery(t *testing.T) {
	bin := testutil.RequireBinary(t, "turnutils_natdiscovery", "coturn")
	testutil.CheckLeaks(t)
	testutil.Deadline(t, 90*time.Second)
	s := newSTUNOnly(t, rfc5780Conns(t))
	a := s.STUNAddrs()
	for _, padding := range []bool{false, true} {
		args := []string{"-m", "-f", "-L", "127.0.0.1", "-p", strconv.Itoa(int(a[0].Port()))}
		if padding {
			args = append(args, "-P")
		}
		args = append(args, "127.0.0.1")
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		out, err := exec.CommandContext(ctx, bin, args...).CombinedOutput()
		cancel()
		text := string(out)
		t.Logf("turnutils_natdiscovery %s:\n%s", strings.Join(args, " "), text)
		if err != nil {
			t.Fatalf("turnutils_natdiscovery: %v", err)
		}
		for _, want := range []string{
			"No NAT! (Endpoint Independent Mapping)",
			"Endpoint Independent Filtering!",
			"Other addr: : " + a[3].String(),
			"Response origin: : " + a[2].String(), // mapping test II: the alternate IP
			"Response origin: : " + a[3].String(), // filtering test II: change IP and port
			"No ALG: Mapped == XOR-Mapped",
		} {
			if !strings.Contains(text, want) {
				t.Fatalf("turnutils_natdiscovery output lacks %q", want)
			}
		}
		for _, bad := range []string{"Dependent", "error", "Error"} {
			if strings.Contains(text, bad) {
				t.Fatalf("turnutils_natdiscovery output has %q", bad)
			}
		}
	}
	waitCount(t, s, STUNChanged, 2) // filtering test II, twice
}

// waitCount waits until the server has counted want datagrams under
// disposition: it counts after the send, which may come after the client
// has the answer.
func waitCount(t *testing.T, s *Server, disposition string, want float64) {
	t.Helper()
	testutil.WaitFor(t, 5*time.Second, fmt.Sprintf("%v datagrams counted as %s", want, disposition), func() bool {
		got := stunCount(s, disposition)
		if got > want {
			t.Fatalf("%s count %v, want %v", disposition, got, want)
		}
		return got == want
	})
}

// TestSTUNDualStack: on a dual-stack wildcard socket, IPv4 clients (seen as
// IPv4-mapped) get an IPv4 XOR-MAPPED-ADDRESS and IPv6 clients an IPv6 one.
func TestSTUNDualStack(t *testing.T) {
	testutil.CheckLeaks(t)
	testutil.Deadline(t, 20*time.Second)
	conn, err := net.ListenPacket("udp", "[::]:0")
	if err != nil {
		testutil.SkipOrFail(t, "no dual-stack UDP socket on this machine: %v", err)
	}
	s := newSTUNOnly(t, []net.PacketConn{conn})
	port := s.STUNAddrs()[0].Port()
	for _, tc := range []struct{ local, server string }{{"127.0.0.1:0", "127.0.0.1"}, {"[::1]:0", "::1"}} {
		c, err := net.ListenPacket("udp", tc.local)
		if err != nil {
			t.Logf("skipping %s: %v", tc.local, err)
			continue
		}
		local := netaddr.AddrPort(c.LocalAddr())
		res, _ := stunExchange(t, c, netip.AddrPortFrom(netip.MustParseAddr(tc.server), port), bindingRequest(t), 2*time.Second)
		c.Close()
		if res == nil {
			t.Fatalf("%s: no answer", tc.local)
		}
		var xa stun.XORMappedAddress
		if err := xa.GetFrom(res); err != nil {
			t.Fatal(err)
		}
		got := netip.AddrPortFrom(netip.MustParseAddr(xa.IP.String()), uint16(xa.Port))
		if got != local || (len(xa.IP.To4()) == net.IPv4len) != local.Addr().Is4() {
			t.Fatalf("%s: XOR-MAPPED-ADDRESS %v, want %v", tc.local, got, local)
		}
		v, _ := res.Get(stun.AttrXORMappedAddress)
		if fam := v[1]; (fam == 1) != local.Addr().Is4() {
			t.Fatalf("%s: family %d", tc.local, fam)
		}
	}
}

// RESPONSE-PORT (RFC 5780 section 7.5): with behaviour discovery on, the
// answer goes to the given port of the source address; without, the
// attribute is unknown and comprehension-required, so 420.
func TestSTUNResponsePort(t *testing.T) {
	testutil.CheckLeaks(t)
	testutil.Deadline(t, 20*time.Second)
	respPort := func(p uint16) stun.Setter {
		return stun.RawAttribute{Type: stun.AttrResponsePort, Value: binary.BigEndian.AppendUint16(binary.BigEndian.AppendUint16(nil, p), 0)}
	}
	s := newSTUNOnly(t, rfc5780Conns(t))
	sender := listenUDP(t, "127.0.0.1:0")
	defer sender.Close()
	other := listenUDP(t, "127.0.0.1:0")
	defer other.Close()
	otherAP := netaddr.AddrPort(other.LocalAddr())
	req := bindingRequest(t, respPort(otherAP.Port()), stun.Fingerprint)
	if _, err := sender.WriteTo(req, net.UDPAddrFromAddrPort(s.STUNAddrs()[0])); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1500)
	_ = other.SetReadDeadline(time.Now().Add(2 * time.Second))
	n, _, err := other.ReadFrom(buf)
	if err != nil {
		t.Fatalf("no answer on the RESPONSE-PORT: %v", err)
	}
	m := &stun.Message{Raw: buf[:n]}
	if err := m.Decode(); err != nil || m.Type != stun.BindingSuccess {
		t.Fatalf("answer %v %v", m.Type, err)
	}
	var xa stun.XORMappedAddress
	if err := xa.GetFrom(m); err != nil {
		t.Fatal(err)
	}
	if sent := netaddr.AddrPort(sender.LocalAddr()); xa.Port != int(sent.Port()) {
		t.Fatalf("mapped port %d, want the sender's %d", xa.Port, sent.Port())
	}
	// Port 0 is malformed: dropped.
	if res, _ := stunExchange(t, sender, s.STUNAddrs()[0], bindingRequest(t, respPort(0)), 300*time.Millisecond); res != nil {
		t.Fatalf("RESPONSE-PORT 0 answered: %v", res.Type)
	}

	basic := newSTUNOnly(t, []net.PacketConn{listenUDP(t, "127.0.0.1:0")})
	res, _ := stunExchange(t, sender, basic.STUNAddrs()[0], bindingRequest(t, respPort(otherAP.Port())), 2*time.Second)
	var code stun.ErrorCodeAttribute
	if res == nil || res.Type != stun.BindingError || code.GetFrom(res) != nil || code.Code != stun.CodeUnknownAttribute {
		t.Fatalf("basic server: %v, want 420", res)
	}
}
