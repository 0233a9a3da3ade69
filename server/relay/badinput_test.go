package relay

import (
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/pion/stun/v4"

	"github.com/ferrynet/ferry/internal/testutil"
	"github.com/ferrynet/ferry/internal/tlsconf"
)

// bindingWorks reports whether the server answers a Binding request.
func bindingWorks(t *testing.T, server string) bool {
	t.Helper()
	m, err := stun.Build(stun.TransactionID, stun.BindingRequest, stun.Fingerprint)
	if err != nil {
		t.Fatal(err)
	}
	res := exchange(t, newRawConn(t), server, m)
	return res.Type == stun.BindingSuccess
}

func stunHeader(typ uint16, length int) []byte {
	b := make([]byte, 20)
	binary.BigEndian.PutUint16(b[0:2], typ)
	binary.BigEndian.PutUint16(b[2:4], uint16(length))
	binary.BigEndian.PutUint32(b[4:8], stunMagicCookie)
	return b
}

func TestMalformedUDP(t *testing.T) {
	testutil.CheckLeaks(t)
	testutil.Deadline(t, 60*time.Second)
	s := startServer(t, nil)
	to, _ := net.ResolveUDPAddr("udp", s.udpAddr())
	pc := newRawConn(t)

	badCookie := stunHeader(0x0003, 0)
	badCookie[4] = 0
	overrun := append(stunHeader(0x0003, 8), 0x00, 0x06, 0x00, 0x40, 'a', 'b', 'c', 'd') // attribute longer than the message
	shortLen := append(stunHeader(0x0003, 4), 0, 0, 0, 0, 0, 0, 0, 0)                    // length field smaller than the datagram
	oddLen := append(stunHeader(0x0003, 3), 0, 0, 0)                                     // not a multiple of 4
	response := stunHeader(0x0103, 0)                                                    // a success response from a "client"
	cases := [][]byte{
		{},
		{0x00},
		make([]byte, 19), badCookie, overrun, shortLen, oddLen, response,
		{0xFF, 0xFF, 0xFF, 0xFF}, // neither STUN nor ChannelData
		{0x40, 0x00, 0xFF, 0xFF}, // ChannelData with no allocation
		make([]byte, 60000),      // larger than the read buffer
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 300 {
		b := make([]byte, 1+rng.IntN(1500))
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		if rng.IntN(2) == 0 && len(b) >= 20 { // make half look like STUN
			copy(b, stunHeader(uint16(rng.IntN(0x3FFF)), len(b)-20))
		}
		cases = append(cases, b)
	}
	for _, b := range cases {
		if _, err := pc.WriteTo(b, to); err != nil && len(b) < 1500 {
			t.Fatal(err)
		}
	}
	if !bindingWorks(t, s.udpAddr()) {
		t.Fatal("the server stopped answering after malformed input")
	}
	if v := s.counter(t, "ferry_relay_dropped_packets_total", "reason", DropMalformed); v < 8 {
		t.Errorf("malformed drops = %v, want >= 8", v)
	}
	u, p := RESTCredentials(testSecret, "after", ":", time.Now().Add(time.Hour))
	if c := rawAllocate(t, s.udpAddr(), u, p, testRealm); c != 0 {
		t.Fatalf("Allocate after malformed input: %d", c)
	}
}

func TestChannelDataBadLength(t *testing.T) {
	testutil.CheckLeaks(t)
	testutil.Deadline(t, 60*time.Second)
	s := startServer(t, func(c *Config) { c.AllowPeers = loopback })
	peer := startEcho(t, "udp4", "127.0.0.1:0")
	c := newClient(t, s.udpAddr(), "cd", testSecret)
	relay, err := c.Allocate()
	if err != nil {
		t.Fatal(err)
	}
	defer relay.Close()
	// Bind the channel by relaying until the fast path carries the data.
	for range 20 {
		if err := roundTrip(relay, peer.pc.LocalAddr(), []byte("bind"), 5*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	finder := relay.(interface {
		FindChannelNumberByAddr(net.Addr) (uint16, bool)
	})
	ch, ok := finder.FindChannelNumberByAddr(peer.pc.LocalAddr())
	if !ok {
		t.Fatal("no channel bound")
	}
	server, _ := net.ResolveUDPAddr("udp", s.udpAddr())
	before := peer.received()
	bad := []byte{byte(ch >> 8), byte(ch), 0x01, 0xF4, 'x', 'y', 'z', 'w'} // claims 500 bytes, carries 4
	for range 10 {
		if _, err := c.WriteTo(bad, server); err != nil {
			t.Fatal(err)
		}
	}
	// An unbound channel number from an allocated client goes to pion, which
	// drops it.
	if _, err := c.WriteTo([]byte{0x7F, 0xFE, 0x00, 0x01, 'q', 0, 0, 0}, server); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 5*time.Second, "the 10 bad-length ChannelData drops", func() bool {
		return s.counter(t, "ferry_relay_dropped_packets_total", "reason", DropBadLength) == 10
	})
	if err := roundTrip(relay, peer.pc.LocalAddr(), []byte("still fine"), 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if got := peer.received() - before; got < 1 || got > 3 {
		// the round trip may be retried, but nothing malformed arrived
		t.Errorf("peer received %d datagrams, want the round trip's only", got)
	}
}

func TestUnknownAttributes(t *testing.T) {
	testutil.CheckLeaks(t)
	s := startServer(t, nil)
	u, p := RESTCredentials(testSecret, "attrs", ":", time.Now().Add(time.Hour))
	res := rawAllocateMsg(t, newRawConn(t), s.udpAddr(), u, p, testRealm, rawAttr{0x0077, []byte{1, 2, 3, 4}})
	if code(res) != 420 {
		t.Fatalf("unknown comprehension-required attribute: code %d, want 420", code(res))
	}
	var ua stun.UnknownAttributes
	if err := ua.GetFrom(res); err != nil || len(ua) != 1 || ua[0] != 0x0077 {
		t.Fatalf("UNKNOWN-ATTRIBUTES = %v, %v", ua, err)
	}
	// An unknown comprehension-optional attribute is ignored.
	if c := rawAllocate(t, s.udpAddr(), u, p, testRealm, rawAttr{0x8077, []byte{1}}); c != 0 {
		t.Fatalf("unknown comprehension-optional attribute: code %d, want success", c)
	}
}

func TestAllocateFlood(t *testing.T) {
	testutil.CheckLeaks(t)
	testutil.Deadline(t, 60*time.Second)
	s := startServer(t, func(c *Config) {
		c.UnauthRepliesPerIP = 5 // burst 10
		c.MaxAllocationsPerUser = 4
	})
	to, _ := net.ResolveUDPAddr("udp", s.udpAddr())

	// Unauthenticated: a spoofer's flood gets a bounded number of 401s.
	pc := newRawConn(t)
	var got int
	var mu sync.Mutex
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 1500)
		for {
			_ = pc.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
			if _, _, err := pc.ReadFrom(buf); err != nil {
				return
			}
			mu.Lock()
			got++
			mu.Unlock()
		}
	}()
	start := time.Now()
	const flood = 2000
	for range flood {
		m, err := stun.Build(stun.TransactionID, stun.NewType(stun.MethodAllocate, stun.ClassRequest),
			rawAttr{stun.AttrRequestedTransport, []byte{17, 0, 0, 0}})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := pc.WriteTo(m.Raw, to); err != nil {
			t.Fatal(err)
		}
	}
	<-done
	elapsed := time.Since(start)
	allowed := 10 + int(5*elapsed.Seconds()) + 2
	if got > allowed {
		t.Errorf("%d 401 replies to %d unauthenticated Allocates in %v; the cap allows %d", got, flood, elapsed, allowed)
	}
	if got == 0 {
		t.Error("no 401 reply at all")
	}
	// Some of the flood may be dropped by the kernel before the relay reads
	// it; what the relay read beyond the cap it counted.
	if v := s.counter(t, "ferry_relay_dropped_packets_total", "reason", DropUnauthLimit); v < 100 {
		t.Errorf("unauth_limit drops = %v", v)
	}

	// Authenticated, from many ports of one host: the user's quota bounds
	// the state the flood creates.
	u, p := RESTCredentials(testSecret, "flooder", ":", time.Now().Add(time.Hour))
	var ok, refused int
	for i := range 20 {
		// Another loopback address each time, so that the 401 cap, which
		// 127.0.0.1 exhausted above, lets the challenges through.
		src, err := net.ListenPacket("udp4", fmt.Sprintf("127.0.1.%d:0", i+1))
		if err != nil {
			t.Fatal(err)
		}
		defer src.Close()
		switch code(rawAllocateMsg(t, src, s.udpAddr(), u, p, testRealm)) {
		case 0:
			ok++
		case 486:
			refused++
		}
	}
	if ok != 4 || refused != 16 || s.Allocations() != 4 {
		t.Errorf("20 Allocates with a quota of 4: %d ok, %d refused, %d live", ok, refused, s.Allocations())
	}
}

func selfSignedTLS(t *testing.T) *tls.Config {
	t.Helper()
	cert, _, err := tlsconf.SelfSigned([]string{"127.0.0.1"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
}

// closedWithin reports whether the server closes c within d.
func closedWithin(c net.Conn, d time.Duration) bool {
	_ = c.SetReadDeadline(time.Now().Add(d))
	buf := make([]byte, 512)
	for {
		_, err := c.Read(buf)
		if err == nil {
			continue
		}
		var ne net.Error
		return !errors.As(err, &ne) || !ne.Timeout()
	}
}

func TestTCPGarbageAndSilence(t *testing.T) {
	testutil.CheckLeaks(t)
	testutil.Deadline(t, 60*time.Second)
	s := startServer(t, func(c *Config) {
		c.ListenTCP = []string{"127.0.0.1:0"}
		c.ListenTLS = []string{"127.0.0.1:0"}
		c.TLSConfig = selfSignedTLS(t)
		c.FirstMessageTimeout = 300 * time.Millisecond
	})
	tcpAddr, tlsAddr := s.TCPAddrs()[0].String(), s.TCPAddrs()[1].String()
	dial := func(addr string) net.Conn {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
		return c
	}
	hugeHeader := stunHeader(0x0003, 65000)

	for name, tc := range map[string]struct {
		addr string
		send []byte
	}{
		"tcp garbage":           {tcpAddr, []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n")},
		"tcp silence":           {tcpAddr, nil},
		"tcp partial header":    {tcpAddr, []byte{0x00, 0x01, 0x00}},
		"tcp huge frame":        {tcpAddr, append(hugeHeader, make([]byte, 100)...)},
		"tcp bad padding":       {tcpAddr, stunHeader(0x0001, 3)},
		"tls silence":           {tlsAddr, nil},
		"tls garbage handshake": {tlsAddr, []byte("\x16\x03\x01\x00\x05hello-not-tls")},
	} {
		t.Run(name, func(t *testing.T) {
			c := dial(tc.addr)
			if tc.send != nil {
				if _, err := c.Write(tc.send); err != nil {
					t.Fatal(err)
				}
			}
			if !closedWithin(c, 5*time.Second) {
				t.Fatal("the server kept the connection open")
			}
		})
	}

	// Many silent connections are all closed, and nothing is left behind.
	var conns []net.Conn
	for range 100 {
		conns = append(conns, dial(tcpAddr))
	}
	for _, c := range conns {
		if !closedWithin(c, 5*time.Second) {
			t.Fatal("a silent connection was kept open")
		}
	}
	testutil.WaitFor(t, 5*time.Second, "no active TCP connections", func() bool { return s.counter(t, "ferry_relay_tcp_connections_active") == 0 })

	// Once a connection has spoken, the first-message deadline no longer
	// applies: a silent witness accepted after c is closed by its own
	// deadline, which is no earlier than c's would have been, and c still
	// answers after that.
	c := dial(tcpAddr)
	witness := dial(tcpAddr)
	for i := range 2 {
		m, _ := stun.Build(stun.TransactionID, stun.BindingRequest, stun.Fingerprint)
		if _, err := c.Write(m.Raw); err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		buf := make([]byte, 512)
		if _, err := io.ReadAtLeast(c, buf, 20); err != nil {
			t.Fatalf("Binding #%d over TCP: %v", i, err)
		}
		if i == 0 && !closedWithin(witness, 5*time.Second) {
			t.Fatal("the silent witness connection was kept open")
		}
	}
}

func TestTCPConnectionCap(t *testing.T) {
	testutil.CheckLeaks(t)
	testutil.Deadline(t, 30*time.Second)
	s := startServer(t, func(c *Config) {
		c.ListenTCP = []string{"127.0.0.1:0"}
		c.FirstMessageTimeout = 3 * time.Second
		c.MaxConns = 5
	})
	var conns []net.Conn
	for range 8 {
		c, err := net.Dial("tcp", s.TCPAddrs()[0].String())
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	defer func() {
		for _, c := range conns {
			_ = c.Close()
		}
	}()
	// At the cap, each new connection makes room by closing the oldest one
	// without an allocation: the first three go, the last five stay.
	testutil.WaitFor(t, 5*time.Second, "3 evicted TCP connections", func() bool { return s.counter(t, "ferry_relay_tcp_connections_evicted_total") == 3 })
	if v := s.counter(t, "ferry_relay_tcp_connections_active"); v != 5 {
		t.Errorf("active TCP connections = %v, want 5", v)
	}
	for i, c := range conns[:3] {
		if !closedWithin(c, 5*time.Second) {
			t.Errorf("connection %d, among the oldest, was kept open", i)
		}
	}
	m, _ := stun.Build(stun.TransactionID, stun.BindingRequest, stun.Fingerprint)
	for i, c := range conns[3:] {
		if _, err := c.Write(m.Raw); err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.ReadAtLeast(c, make([]byte, 512), 20); err != nil {
			t.Errorf("connection %d, among the newest, does not answer: %v", i+3, err)
		}
	}
	if v := s.counter(t, "ferry_relay_tcp_connections_rejected_total"); v != 0 {
		t.Errorf("rejected connections = %v, want 0 (there was always one to evict)", v)
	}
}

// TestEvictionSparesAllocations: at MaxConns, connections that hold an
// allocation are never evicted; with none left to evict, new ones are
// refused.
func TestEvictionSparesAllocations(t *testing.T) {
	testutil.CheckLeaks(t)
	testutil.Deadline(t, 30*time.Second)
	s := startServer(t, func(c *Config) {
		c.ListenTCP = []string{"127.0.0.1:0"}
		c.MaxConns = 2
	})
	server := s.TCPAddrs()[0].String()
	var owners []*tcpSTUN
	for i := range 2 {
		x := newTCPSTUN(t, dialFrom(t, "127.0.0.1", server), "owner"+strconv.Itoa(i))
		if res := x.do(stun.MethodAllocate, transportUDP); code(res) != 0 {
			t.Fatalf("Allocate %d: code %d", i, code(res))
		}
		owners = append(owners, x)
	}
	late := dialFrom(t, "127.0.0.1", server)
	if !closedWithin(late, 5*time.Second) {
		t.Fatal("a connection beyond the cap was accepted")
	}
	if v := s.counter(t, "ferry_relay_tcp_connections_rejected_total"); v != 1 {
		t.Errorf("rejected = %v, want 1", v)
	}
	if v := s.counter(t, "ferry_relay_tcp_connections_evicted_total"); v != 0 {
		t.Errorf("evicted = %v, want 0", v)
	}
	for i, x := range owners {
		if res := x.do(stun.MethodRefresh, lifetimeAttr(600)); code(res) != 0 {
			t.Errorf("owner %d after the refusal: code %d", i, code(res))
		}
	}
}
