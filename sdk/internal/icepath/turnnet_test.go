package icepath

import (
	"encoding/binary"
	"errors"
	"net"
	"sync/atomic"
	"testing"

	"github.com/pion/stun/v4"
)

func permRequest(t *testing.T, method stun.Method, class stun.MessageClass, peers ...string) []byte {
	t.Helper()
	setters := []stun.Setter{stun.NewType(method, class), stun.TransactionID}
	for _, p := range peers {
		ip := net.ParseIP(p)
		if ip == nil {
			t.Fatalf("bad test IP %q", p)
		}
		setters = append(setters, peerAddr{ip})
	}
	m, err := stun.Build(setters...)
	if err != nil {
		t.Fatal(err)
	}
	return m.Raw
}

type peerAddr struct{ ip net.IP }

func (p peerAddr) AddTo(m *stun.Message) error {
	return stun.XORMappedAddress{IP: p.ip, Port: 4000}.AddToAs(m, stun.AttrXORPeerAddress)
}

func TestRefusedPermission(t *testing.T) {
	cp, cb := stun.MethodCreatePermission, stun.MethodChannelBind
	req := stun.ClassRequest
	cases := []struct {
		name string
		b    []byte
		want bool
	}{
		{"private v4", permRequest(t, cp, req, "10.1.0.11"), true},
		{"192.168 v4", permRequest(t, cp, req, "192.168.1.2"), true},
		{"loopback", permRequest(t, cp, req, "127.0.0.1"), true},
		{"link-local", permRequest(t, cp, req, "169.254.169.254"), true},
		{"CGNAT", permRequest(t, cp, req, "100.64.1.1"), true},
		{"ULA v6", permRequest(t, cp, req, "fd00::1"), true},
		{"channel bind private", permRequest(t, cb, req, "172.16.0.9"), true},
		{"public v4", permRequest(t, cp, req, "203.0.113.11"), false},
		{"public v6", permRequest(t, cp, req, "2001:db8::1"), false},
		{"private and public", permRequest(t, cp, req, "10.0.0.1", "198.51.100.7"), false},
		{"no peer address", permRequest(t, cp, req), false},
		{"a response, not a request", permRequest(t, cp, stun.ClassErrorResponse, "10.0.0.1"), false},
		{"send indication", permRequest(t, stun.MethodSend, stun.ClassIndication, "10.0.0.1"), false},
		{"allocate", permRequest(t, stun.MethodAllocate, req, "10.0.0.1"), false},
		{"channel data", []byte{0x40, 0x00, 0x00, 0x04, 1, 2, 3, 4}, false},
		{"truncated", permRequest(t, cp, req, "10.0.0.1")[:24], false},
		{"empty", nil, false},
		{"one byte", []byte{0}, false},
	}
	for _, c := range cases {
		if got := refusedPermission(c.b); got != c.want {
			t.Errorf("%s: refusedPermission = %v, want %v", c.name, got, c.want)
		}
	}
}

// recordConn is a net.PacketConn that records what is written to it.
type recordConn struct {
	net.PacketConn
	wrote int
}

func (r *recordConn) WriteTo(b []byte, _ net.Addr) (int, error) { r.wrote++; return len(b), nil }

func TestTURNSocketRefusesWithoutSending(t *testing.T) {
	rec := &recordConn{}
	c := turnPacketConn{rec, new(atomic.Int64)}
	relay := &net.UDPAddr{IP: net.ParseIP("203.0.113.3"), Port: 3478}
	if _, err := c.WriteTo(permRequest(t, stun.MethodCreatePermission, stun.ClassRequest, "10.2.0.11"), relay); !errors.Is(err, errRelayRefuses) {
		t.Fatalf("private peer: err = %v, want errRelayRefuses", err)
	}
	if rec.wrote != 0 {
		t.Fatalf("private peer: %d writes reached the socket, want 0", rec.wrote)
	}
	if _, err := c.WriteTo(permRequest(t, stun.MethodCreatePermission, stun.ClassRequest, "203.0.113.11"), relay); err != nil {
		t.Fatalf("public peer: %v", err)
	}
	if _, err := c.WriteTo([]byte{0x40, 0, 0, 1, 9}, relay); err != nil {
		t.Fatalf("channel data: %v", err)
	}
	if rec.wrote != 2 {
		t.Fatalf("%d writes reached the socket, want 2", rec.wrote)
	}
	// A relay on loopback or a private network is asked for everything.
	for _, ip := range []string{"127.0.0.1", "10.0.0.3"} {
		local := &net.UDPAddr{IP: net.ParseIP(ip), Port: 3478}
		if _, err := c.WriteTo(permRequest(t, stun.MethodCreatePermission, stun.ClassRequest, "10.2.0.11"), local); err != nil {
			t.Fatalf("relay at %s: %v", ip, err)
		}
	}
	if rec.wrote != 4 {
		t.Fatalf("%d writes reached the socket, want 4", rec.wrote)
	}
}

func channelData(payload []byte) []byte {
	b := make([]byte, 4, 4+len(payload)+3)
	binary.BigEndian.PutUint16(b, 0x4001)
	binary.BigEndian.PutUint16(b[2:], uint16(len(payload)))
	b = append(b, payload...)
	for len(b)%4 != 0 { // padded, as over TCP
		b = append(b, 0)
	}
	return b
}

func indication(t *testing.T, method stun.Method, data []byte) []byte {
	t.Helper()
	m, err := stun.Build(stun.NewType(method, stun.ClassIndication), stun.TransactionID, peerAddr{net.ParseIP("203.0.113.11")}, stun.RawAttribute{Type: stun.AttrData, Value: data})
	if err != nil {
		t.Fatal(err)
	}
	return m.Raw
}

func TestAppPayload(t *testing.T) {
	quic := []byte{0xc3, 0, 0, 0, 1, 8, 1, 2, 3, 4, 5, 6, 7, 8, 9} // a QUIC long header, 15 bytes
	check, err := stun.Build(stun.BindingRequest, stun.TransactionID)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		b    []byte
		want int
	}{
		{"channel data", channelData(quic), len(quic)},
		{"channel data carrying a check", channelData(check.Raw), 0},
		{"send indication", indication(t, stun.MethodSend, quic), len(quic)},
		{"data indication", indication(t, stun.MethodData, quic), len(quic)},
		{"data indication carrying a check", indication(t, stun.MethodData, check.Raw), 0},
		{"channel data shorter than it says", channelData(quic)[:10], 0},
		{"a TURN request", permRequest(t, stun.MethodCreatePermission, stun.ClassRequest, "203.0.113.11"), 0},
		{"empty", nil, 0},
		{"junk", []byte{0xff, 0xff, 0xff}, 0},
	}
	for _, c := range cases {
		if got := appPayload(c.b); got != c.want {
			t.Errorf("%s: appPayload = %d, want %d", c.name, got, c.want)
		}
	}
}

// fixedConn reads one packet.
type fixedConn struct {
	net.PacketConn
	pkt []byte
}

func (f *fixedConn) ReadFrom(b []byte) (int, net.Addr, error) { return copy(b, f.pkt), nil, nil }

func (f *fixedConn) WriteTo(b []byte, _ net.Addr) (int, error) { return len(b), nil }

func TestTURNSocketCountsRelayedBytes(t *testing.T) {
	quic := make([]byte, 1200)
	quic[0] = 0x40 | 0x01 // a QUIC short header (not STUN: the top bits are not 00)
	var n atomic.Int64
	c := turnPacketConn{&fixedConn{pkt: channelData(quic)}, &n}
	relay := &net.UDPAddr{IP: net.ParseIP("203.0.113.3"), Port: 3478}
	if _, err := c.WriteTo(channelData(quic), relay); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1500)
	if _, _, err := c.ReadFrom(buf); err != nil {
		t.Fatal(err)
	}
	if _, err := c.WriteTo(permRequest(t, stun.MethodCreatePermission, stun.ClassRequest, "203.0.113.11"), relay); err != nil {
		t.Fatal(err)
	}
	if got := n.Load(); got != 2*1200 {
		t.Fatalf("counted %d bytes, want %d (one packet each way, no TURN request)", got, 2*1200)
	}
}
