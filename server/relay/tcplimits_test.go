package relay

import (
	"encoding/binary"
	"io"
	"net"
	"net/netip"
	"strconv"
	"testing"
	"time"

	"github.com/pion/stun/v4"

	"github.com/ferrynet/ferry/internal/netaddr"
	"github.com/ferrynet/ferry/internal/testutil"
)

// tcpSTUN speaks raw STUN over one TCP connection, with REST credentials
// for user.
type tcpSTUN struct {
	t                  *testing.T
	c                  net.Conn
	username, password string
	nonce              stun.Nonce
}

// dialFrom connects to server from the loopback address src, closed at
// cleanup.
func dialFrom(t *testing.T, src, server string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	c, err := d.Dial("tcp", server)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func newTCPSTUN(t *testing.T, c net.Conn, user string) *tcpSTUN {
	u, p := RESTCredentials(testSecret, user, ":", time.Now().Add(time.Hour))
	return &tcpSTUN{t: t, c: c, username: u, password: p}
}

// build returns a request of method with attrs, authenticated once a nonce
// is known.
func (x *tcpSTUN) build(method stun.Method, attrs ...stun.Setter) *stun.Message {
	x.t.Helper()
	setters := []stun.Setter{stun.TransactionID, stun.NewType(method, stun.ClassRequest)}
	setters = append(setters, attrs...)
	if x.nonce != nil {
		setters = append(setters, stun.NewUsername(x.username), stun.NewRealm(testRealm), x.nonce,
			stun.NewLongTermIntegrity(x.username, testRealm, x.password))
	}
	m, err := stun.Build(append(setters, stun.Fingerprint)...)
	if err != nil {
		x.t.Fatal(err)
	}
	return m
}

// read returns the next STUN message from the connection.
func (x *tcpSTUN) read() *stun.Message {
	x.t.Helper()
	_ = x.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	hdr := make([]byte, stunHeaderSize)
	if _, err := io.ReadFull(x.c, hdr); err != nil {
		x.t.Fatalf("reading a STUN header: %v", err)
	}
	body := make([]byte, binary.BigEndian.Uint16(hdr[2:4]))
	if _, err := io.ReadFull(x.c, body); err != nil {
		x.t.Fatalf("reading a STUN body: %v", err)
	}
	m := &stun.Message{Raw: append(hdr, body...)}
	if err := m.Decode(); err != nil {
		x.t.Fatal(err)
	}
	return m
}

// do sends a request and returns the response, learning the nonce from a
// 401 first if it has none.
func (x *tcpSTUN) do(method stun.Method, attrs ...stun.Setter) *stun.Message {
	x.t.Helper()
	for range 2 {
		m := x.build(method, attrs...)
		if _, err := x.c.Write(m.Raw); err != nil {
			x.t.Fatal(err)
		}
		res := x.read()
		if code(res) == 401 && x.nonce == nil {
			var n stun.Nonce
			if err := n.GetFrom(res); err != nil {
				x.t.Fatal(err)
			}
			x.nonce = n
			continue
		}
		return res
	}
	x.t.Fatal("no nonce")
	return nil
}

func lifetimeAttr(secs uint32) rawAttr {
	v := make([]byte, 4)
	binary.BigEndian.PutUint32(v, secs)
	return rawAttr{stun.AttrLifetime, v}
}

var (
	transportUDP = rawAttr{stun.AttrRequestedTransport, []byte{17, 0, 0, 0}}
	transportTCP = rawAttr{stun.AttrRequestedTransport, []byte{6, 0, 0, 0}}
)

// TestRefusedConnectionBindKeepsChecks is finding 7 of issue 11: a
// ConnectionBind that pion refuses must not switch the connection to raw
// pass-through, or the relay's own checks stop (here the lifetime bound:
// the old code granted 3000s against a 120s maximum).
func TestRefusedConnectionBindKeepsChecks(t *testing.T) {
	testutil.CheckLeaks(t)
	testutil.Deadline(t, 30*time.Second)
	s := startServer(t, func(c *Config) {
		c.ListenTCP = []string{"127.0.0.1:0"}
		c.AllocationLifetime = time.Minute
		c.MaxAllocationLifetime = 2 * time.Minute
	})
	x := newTCPSTUN(t, dialFrom(t, "127.0.0.1", s.TCPAddrs()[0].String()), "binder")
	res := x.do(stun.MethodConnectionBind, rawAttr{stun.AttrConnectionID, []byte{0, 0, 0x12, 0x34}})
	if code(res) == 0 {
		t.Fatal("a ConnectionBind for no connection succeeded")
	}
	res = x.do(stun.MethodAllocate, transportUDP, lifetimeAttr(3000))
	if code(res) != 0 {
		t.Fatalf("Allocate after the refused ConnectionBind: code %d", code(res))
	}
	v, err := res.Get(stun.AttrLifetime)
	if err != nil || len(v) != 4 {
		t.Fatalf("no LIFETIME in %v", res)
	}
	if got := binary.BigEndian.Uint32(v); got > 120 {
		t.Fatalf("granted %ds against a maximum of 120s: the relay stopped inspecting after a refused ConnectionBind", got)
	}
}

// TestConnectionBindWithData: an RFC 6062 data connection whose first
// ConnectionBind is refused (401) and whose second is accepted passes the
// bytes that follow the accepted one, even in the same write, to the peer.
func TestConnectionBindWithData(t *testing.T) {
	testutil.CheckLeaks(t)
	testutil.Deadline(t, 30*time.Second)
	s := startServer(t, func(c *Config) {
		c.ListenTCP = []string{"127.0.0.1:0"}
		c.RelayIPs = []netip.Addr{netip.MustParseAddr("127.0.0.1")}
		c.AllowPeers = loopback
	})
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	got := make(chan string, 1)
	go func() {
		defer close(got)
		c, aerr := ln.Accept()
		if aerr != nil {
			return
		}
		defer c.Close()
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		buf := make([]byte, 5)
		if _, rerr := io.ReadFull(c, buf); rerr == nil {
			got <- string(buf)
		}
	}()
	server := s.TCPAddrs()[0].String()
	ctrl := newTCPSTUN(t, dialFrom(t, "127.0.0.1", server), "rfc6062")
	if res := ctrl.do(stun.MethodAllocate, transportTCP); code(res) != 0 {
		t.Fatalf("TCP Allocate: code %d", code(res))
	}
	res := ctrl.do(stun.MethodConnect, xorPeer(netaddr.AddrPort(ln.Addr())))
	if code(res) != 0 {
		t.Fatalf("Connect: code %d", code(res))
	}
	id, err := res.Get(stun.AttrConnectionID)
	if err != nil {
		t.Fatal(err)
	}
	data := newTCPSTUN(t, dialFrom(t, "127.0.0.1", server), "rfc6062")
	// The first ConnectionBind, unauthenticated, is refused with 401 (the
	// old relay went raw on it); the second carries the peer data in the
	// same write.
	if res = data.do(stun.MethodBinding); code(res) != 0 {
		t.Fatalf("Binding: code %d", code(res))
	}
	m := data.build(stun.MethodConnectionBind, rawAttr{stun.AttrConnectionID, id})
	if _, err = data.c.Write(m.Raw); err != nil {
		t.Fatal(err)
	}
	res = data.read()
	var nonce stun.Nonce
	if code(res) != 401 || nonce.GetFrom(res) != nil {
		t.Fatalf("unauthenticated ConnectionBind: code %d", code(res))
	}
	data.nonce = nonce
	m = data.build(stun.MethodConnectionBind, rawAttr{stun.AttrConnectionID, id})
	if _, err = data.c.Write(append(m.Raw, "hello"...)); err != nil {
		t.Fatal(err)
	}
	if res = data.read(); code(res) != 0 {
		t.Fatalf("ConnectionBind: code %d", code(res))
	}
	if g := <-got; g != "hello" {
		t.Fatalf("peer got %q", g)
	}
}

// TestPerIPAllocationCap is the acceptance of issue 11: from one source IP,
// allocations with many distinct valid REST usernames stop at the per-IP
// default, and another source still gets in.
func TestPerIPAllocationCap(t *testing.T) {
	testutil.CheckLeaks(t)
	testutil.Deadline(t, 120*time.Second)
	s := startServer(t, nil)
	exp := time.Now().Add(time.Hour)
	for i := range DefaultMaxAllocationsPerIP {
		u, p := RESTCredentials(testSecret, "mint"+strconv.Itoa(i), ":", exp)
		if c := rawAllocate(t, s.udpAddr(), u, p, testRealm); c != 0 {
			t.Fatalf("allocation %d of %d: code %d", i+1, DefaultMaxAllocationsPerIP, c)
		}
	}
	u, p := RESTCredentials(testSecret, "one-more", ":", exp)
	if c := rawAllocate(t, s.udpAddr(), u, p, testRealm); c != 486 {
		t.Fatalf("allocation %d from one IP: code %d, want 486", DefaultMaxAllocationsPerIP+1, c)
	}
	if v := s.counter(t, "ferry_relay_quota_rejections_total", "reason", QuotaIP); v != 1 {
		t.Errorf("per-IP quota rejections = %v, want 1", v)
	}
	other, err := net.ListenPacket("udp4", "127.0.0.2:0")
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if c := code(rawAllocateMsg(t, other, s.udpAddr(), u, p, testRealm)); c != 0 {
		t.Fatalf("another source IP: code %d", c)
	}
	if got := s.Allocations(); got != DefaultMaxAllocationsPerIP+1 {
		t.Fatalf("Allocations() = %d", got)
	}
}

// TestUnallocatedTimeout is finding 3 of issue 11: a TCP connection that
// holds no allocation is closed after UnallocatedTimeout even when it keeps
// talking (the old relay dropped every deadline after the first message, so
// three idle connections locked TURN over TCP when the cap was 3); one that
// holds an allocation is not.
func TestUnallocatedTimeout(t *testing.T) {
	testutil.CheckLeaks(t)
	testutil.Deadline(t, 60*time.Second)
	s := startServer(t, func(c *Config) {
		c.ListenTCP = []string{"127.0.0.1:0"}
		c.UnallocatedTimeout = 2 * time.Second
	})
	server := s.TCPAddrs()[0].String()
	// The connection with an allocation comes first, so that its
	// deadline, if it had one, would pass before the idle one's.
	owner := newTCPSTUN(t, dialFrom(t, "127.0.0.1", server), "owner")
	if res := owner.do(stun.MethodAllocate, transportUDP); code(res) != 0 {
		t.Fatalf("Allocate: code %d", code(res))
	}
	idle := newTCPSTUN(t, dialFrom(t, "127.0.0.1", server), "idle")
	if res := idle.do(stun.MethodBinding); code(res) != 0 {
		t.Fatalf("Binding: code %d", code(res))
	}
	// It keeps talking: unauthenticated requests do not extend the timeout.
	if res := idle.do(stun.MethodBinding); code(res) != 0 {
		t.Fatalf("second Binding: code %d", code(res))
	}
	if !closedWithin(idle.c, 10*time.Second) {
		t.Fatal("a connection without an allocation was kept open")
	}
	if res := owner.do(stun.MethodRefresh, lifetimeAttr(600)); code(res) != 0 {
		t.Fatalf("Refresh on the connection that holds an allocation: code %d", code(res))
	}
	// When the allocation ends, the timeout starts again.
	if res := owner.do(stun.MethodRefresh, lifetimeAttr(0)); code(res) != 0 {
		t.Fatalf("Refresh(0): code %d", code(res))
	}
	if !closedWithin(owner.c, 10*time.Second) {
		t.Fatal("a connection whose allocation ended was kept open")
	}
}

// TestIdleConnectionsDoNotLockOut is the acceptance of issue 11: while a
// source holds idle TCP connections up to its cap, further ones from it are
// refused, a legitimate client from elsewhere still allocates, and the idle
// ones are closed after the unallocated timeout.
func TestIdleConnectionsDoNotLockOut(t *testing.T) {
	testutil.CheckLeaks(t)
	testutil.Deadline(t, 60*time.Second)
	s := startServer(t, func(c *Config) {
		c.ListenTCP = []string{"127.0.0.1:0"}
		c.MaxConns = 6
		c.MaxConnsPerIP = 3
		c.UnallocatedTimeout = 2 * time.Second
	})
	server := s.TCPAddrs()[0].String()
	var idle []net.Conn
	for range 3 {
		c := dialFrom(t, "127.0.0.2", server)
		x := newTCPSTUN(t, c, "idler")
		if res := x.do(stun.MethodBinding); code(res) != 0 {
			t.Fatalf("Binding: code %d", code(res))
		}
		idle = append(idle, c)
	}
	extra := dialFrom(t, "127.0.0.2", server)
	if !closedWithin(extra, 5*time.Second) {
		t.Fatal("a fourth connection from one source was accepted")
	}
	if v := s.counter(t, "ferry_relay_tcp_connections_rejected_total"); v != 1 {
		t.Errorf("rejected connections = %v, want 1", v)
	}
	legit := newTCPSTUN(t, dialFrom(t, "127.0.0.1", server), "legit")
	if res := legit.do(stun.MethodAllocate, transportUDP); code(res) != 0 {
		t.Fatalf("a legitimate client while idle connections are held: code %d", code(res))
	}
	for i, c := range idle {
		if !closedWithin(c, 10*time.Second) {
			t.Fatalf("idle connection %d was kept open", i)
		}
	}
	testutil.WaitFor(t, 5*time.Second, "one active TCP connection", func() bool {
		return s.counter(t, "ferry_relay_tcp_connections_active") == 1
	})
	if res := legit.do(stun.MethodRefresh, lifetimeAttr(600)); code(res) != 0 {
		t.Fatalf("the legitimate client after the idle ones went: code %d", code(res))
	}
}
