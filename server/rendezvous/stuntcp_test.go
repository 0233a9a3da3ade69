package rendezvous

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/pion/stun/v4"

	"github.com/ferrynet/ferry/internal/netaddr"
	"github.com/ferrynet/ferry/internal/testutil"
)

// startSTUNTCP runs a STUN server on a UDP socket (or the RFC 5780 four)
// and a TCP listener; cfg's other fields are kept.
func startSTUNTCP(t *testing.T, cfg Config) (*Server, string) {
	t.Helper()
	if len(cfg.STUNConns) == 0 {
		cfg.STUNConns = []net.PacketConn{listenUDP(t, "127.0.0.1:0")}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg.STUNListener = ln
	return startServer(t, cfg), ln.Addr().String()
}

func dialTCP(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	return c
}

// readSTUN reads one framed STUN message from a stream.
func readSTUN(t *testing.T, c net.Conn) *stun.Message {
	t.Helper()
	h := make([]byte, 20)
	if _, err := io.ReadFull(c, h); err != nil {
		t.Fatalf("read header: %v", err)
	}
	b := make([]byte, 20+int(binary.BigEndian.Uint16(h[2:4])))
	copy(b, h)
	if _, err := io.ReadFull(c, b[20:]); err != nil {
		t.Fatalf("read body: %v", err)
	}
	m := &stun.Message{Raw: b}
	if err := m.Decode(); err != nil {
		t.Fatal(err)
	}
	return m
}

// wantClosed checks that the server closes c without answering.
func wantClosed(t *testing.T, c net.Conn) {
	t.Helper()
	n, err := c.Read(make([]byte, 64))
	if n != 0 || err == nil || errors.Is(err, net.ErrClosed) {
		t.Fatalf("read %d bytes, %v; want the server to close the connection", n, err)
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("connection still open: %v", err)
	}
}

// TestSTUNOverTCP: Binding over TCP answers with the connection's source
// address, serves several requests on one connection (two in one write),
// and refuses behaviour discovery with a 420 even on an RFC 5780 server.
func TestSTUNOverTCP(t *testing.T) {
	testutil.CheckLeaks(t)
	testutil.Deadline(t, 30*time.Second)
	for _, rfc := range []bool{false, true} {
		var cfg Config
		if rfc {
			cfg.STUNConns = rfc5780Conns(t)
		}
		s, addr := startSTUNTCP(t, cfg)
		c := dialTCP(t, addr)
		local := netaddr.AddrPort(c.LocalAddr())
		r1, r2 := bindingRequest(t, stun.Fingerprint), bindingRequest(t)
		if _, err := c.Write(append(append([]byte{}, r1...), r2...)); err != nil {
			t.Fatal(err)
		}
		for i, req := range [][]byte{r1, r2} {
			res := readSTUN(t, c)
			if res.Type != stun.BindingSuccess || !bytes.Equal(res.TransactionID[:], req[8:20]) {
				t.Fatalf("rfc5780=%v answer %d: %v", rfc, i, res)
			}
			var xa stun.XORMappedAddress
			if err := xa.GetFrom(res); err != nil {
				t.Fatal(err)
			}
			if got := netip.AddrPortFrom(netip.MustParseAddr(xa.IP.String()), uint16(xa.Port)); got != local {
				t.Fatalf("XOR-MAPPED-ADDRESS %v, want %v", got, local)
			}
			if res.Contains(stun.AttrOtherAddress) {
				t.Fatalf("rfc5780=%v: OTHER-ADDRESS over TCP", rfc)
			}
		}
		for _, set := range []stun.Setter{changeRequest(changeIPFlag | changePortFlag), stun.RawAttribute{Type: stun.AttrResponsePort, Value: []byte{0x12, 0x34, 0, 0}}} {
			if _, err := c.Write(bindingRequest(t, set)); err != nil {
				t.Fatal(err)
			}
			res := readSTUN(t, c)
			var ec stun.ErrorCodeAttribute
			if res.Type != stun.BindingError || ec.GetFrom(res) != nil || ec.Code != stun.CodeUnknownAttribute {
				t.Fatalf("rfc5780=%v: behaviour discovery over TCP answered %v", rfc, res)
			}
		}
		waitCount(t, s, STUNAnswered, 2)
		waitCount(t, s, STUNUnknownAttribute, 2)
	}
}

// TestSTUNOverTCPBadInput: garbage, an oversized or truncated message and
// an idle client each lose their connection, counted; the server goes on
// answering.
func TestSTUNOverTCPBadInput(t *testing.T) {
	testutil.CheckLeaks(t)
	testutil.Deadline(t, 30*time.Second)
	s, addr := startSTUNTCP(t, Config{stunTCPIdle: 200 * time.Millisecond})

	huge := bindingRequest(t)
	binary.BigEndian.PutUint16(huge[2:4], 60000) // a length over the cap
	badLen := bindingRequest(t)
	binary.BigEndian.PutUint16(badLen[2:4], 6) // not a multiple of 4
	for _, tc := range []struct {
		name        string
		send        []byte
		halfClose   bool
		disposition string
		want        float64
	}{
		{"http", []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), false, STUNNotSTUN, 1},
		{"oversized", huge, false, STUNMalformed, 1},
		{"length not a multiple of 4", badLen, false, STUNMalformed, 2},
		{"truncated header", bindingRequest(t)[:10], true, STUNMalformed, 3},
		{"truncated body", bindingRequest(t, stun.Fingerprint)[:24], true, STUNMalformed, 4},
		{"response", func() []byte { b := bindingRequest(t); b[0], b[1] = 0x01, 0x01; return b }(), false, STUNUnsupported, 1},
		{"idle", nil, false, STUNMalformed, 4},
	} {
		c := dialTCP(t, addr)
		if _, err := c.Write(tc.send); err != nil {
			t.Fatal(err)
		}
		if tc.halfClose {
			_ = c.(*net.TCPConn).CloseWrite()
		}
		if tc.name == "response" {
			// Dropped but not fatal to the stream: a Binding after it
			// is answered.
			if _, err := c.Write(bindingRequest(t)); err != nil {
				t.Fatal(err)
			}
			if res := readSTUN(t, c); res.Type != stun.BindingSuccess {
				t.Fatalf("after a dropped response: %v", res)
			}
			continue
		}
		wantClosed(t, c)
		waitCount(t, s, tc.disposition, tc.want)
	}
	c := dialTCP(t, addr)
	if _, err := c.Write(bindingRequest(t)); err != nil {
		t.Fatal(err)
	}
	if res := readSTUN(t, c); res.Type != stun.BindingSuccess {
		t.Fatalf("after bad input: %v", res)
	}
}

// TestSTUNOverTCPCaps: connections over the per-IP cap are closed at once
// and counted, a slot frees when a connection ends, the STUN rate limit
// applies over TCP too, and Close closes open connections.
func TestSTUNOverTCPCaps(t *testing.T) {
	testutil.CheckLeaks(t)
	testutil.Deadline(t, 30*time.Second)
	s, addr := startSTUNTCP(t, Config{STUNTCPConnsPerIP: 2, STUNRate: 1e-9, STUNBurst: 3})
	a, b := dialTCP(t, addr), dialTCP(t, addr)
	for _, c := range []net.Conn{a, b} { // admitted: both answered
		if _, err := c.Write(bindingRequest(t)); err != nil {
			t.Fatal(err)
		}
		if res := readSTUN(t, c); res.Type != stun.BindingSuccess {
			t.Fatal(res)
		}
	}
	wantClosed(t, dialTCP(t, addr))
	waitCount(t, s, STUNTCPRefused, 1)
	a.Close()
	testutil.WaitFor(t, 10*time.Second, "a slot after a close", func() bool {
		c := dialTCP(t, addr)
		defer c.Close()
		if _, err := c.Write(bindingRequest(t)); err != nil {
			return false
		}
		_ = c.SetReadDeadline(time.Now().Add(time.Second))
		_, err := io.ReadFull(c, make([]byte, 20))
		return err == nil
	})
	// The burst of 3 is spent (two on a and b, one on the new one): b's
	// next request is dropped, not answered, and b stays open.
	if _, err := b.Write(bindingRequest(t)); err != nil {
		t.Fatal(err)
	}
	waitCount(t, s, STUNRateLimited, 1)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	_ = b.SetReadDeadline(time.Now().Add(10 * time.Second))
	wantClosed(t, b)
}

func TestSTUNOverTCPNeedsUDP(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, err = New(Config{STUNListener: ln, InsecureListener: nil, Listener: nil})
	if !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("New: %v, want ErrInvalidConfig", err)
	}
}
