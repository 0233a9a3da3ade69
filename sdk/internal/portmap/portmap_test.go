package portmap

import (
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferrynet/ferry/internal/testutil"
)

// fakeGateway is a NAT-PMP server on 127.0.18.N:5351 whose answers a
// test shapes.
type fakeGateway struct {
	addr    netip.Addr
	mu      sync.Mutex
	answer  func(req []byte) []byte // nil answer: silence
	maps    atomic.Int32            // map requests with a lifetime
	deletes atomic.Int32            // map requests with lifetime 0
}

var nextFake atomic.Uint32

func newFakeGateway(t *testing.T, answer func(req []byte) []byte) *fakeGateway {
	t.Helper()
	ip := netip.AddrFrom4([4]byte{127, 0, 18, byte(10 + nextFake.Add(1))})
	c, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(ip, 5351)))
	if err != nil {
		t.Skipf("cannot bind the fake gateway at %v:5351: %v", ip, err)
	}
	g := &fakeGateway{addr: ip, answer: answer}
	var wg sync.WaitGroup
	wg.Go(func() {
		buf := make([]byte, 64)
		for {
			n, from, err := c.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			req := buf[:n]
			if n == 12 && req[1] == 1 {
				if binary.BigEndian.Uint32(req[8:12]) == 0 {
					g.deletes.Add(1)
				} else {
					g.maps.Add(1)
				}
			}
			g.mu.Lock()
			a := g.answer(req)
			g.mu.Unlock()
			if a != nil {
				_, _ = c.WriteToUDPAddrPort(a, from)
			}
		}
	})
	t.Cleanup(func() { c.Close(); wg.Wait() })
	return g
}

// honest answers like a real gateway with external address ext, granting
// lifetime seconds, with result code 0.
func honest(ext [4]byte, lifetime uint32) func([]byte) []byte {
	return func(req []byte) []byte {
		switch {
		case len(req) == 2 && req[1] == 0:
			r := []byte{0, 128, 0, 0, 0, 0, 0, 1}
			return append(r, ext[:]...)
		case len(req) == 12 && req[1] == 1:
			r := []byte{0, 129, 0, 0, 0, 0, 0, 1}
			r = append(r, req[4:6]...) // internal port
			r = append(r, req[4:6]...) // external = internal
			lt := lifetime
			if binary.BigEndian.Uint32(req[8:12]) == 0 {
				lt = 0
			}
			return binary.BigEndian.AppendUint32(r, lt)
		}
		return nil
	}
}

var local = netip.MustParseAddrPort("10.1.0.11:40000")

func TestMapRenewDelete(t *testing.T) {
	testutil.CheckLeaks(t)
	testutil.Deadline(t, 30*time.Second)
	g := newFakeGateway(t, honest([4]byte{203, 0, 113, 9}, 2)) // 2 s: renew at minRenew
	changes := make(chan netip.AddrPort, 8)
	m, err := Start(Config{Gateway: g.addr, Local: local, Timeout: time.Second, OnChange: func(a netip.AddrPort) { changes <- a }})
	if err != nil {
		t.Fatal(err)
	}
	want := netip.MustParseAddrPort("203.0.113.9:40000")
	if got := <-changes; got != want {
		t.Fatalf("mapped %v, want %v", got, want)
	}
	testutil.WaitFor(t, 20*time.Second, "a renewal", func() bool { return m.Renewals() >= 2 })
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if g.deletes.Load() != 1 || m.Addr().IsValid() {
		t.Fatalf("after Close: %d deletes, addr %v", g.deletes.Load(), m.Addr())
	}
	if got := <-changes; got.IsValid() {
		t.Fatalf("OnChange after Close: %v, want the zero address", got)
	}
	if err := m.Close(); err != nil || g.deletes.Load() != 1 {
		t.Fatalf("second Close: %v, %d deletes", err, g.deletes.Load())
	}
}

// TestBadGateways: garbage, silence and lies never give a mapped address,
// never panic, and Close is prompt and sends no delete for a mapping that
// was never believed.
func TestBadGateways(t *testing.T) {
	testutil.CheckLeaks(t)
	testutil.Deadline(t, 60*time.Second)
	lie := func(mut func(r []byte)) func([]byte) []byte {
		h := honest([4]byte{203, 0, 113, 9}, 60)
		return func(req []byte) []byte {
			r := h(req)
			if r != nil {
				mut(r)
			}
			return r
		}
	}
	extIs := func(ip [4]byte) func([]byte) []byte {
		return lie(func(r []byte) {
			if len(r) == 12 {
				copy(r[8:], ip[:])
			}
		})
	}
	for _, tc := range []struct {
		name   string
		answer func([]byte) []byte
	}{
		{"silent", func([]byte) []byte { return nil }},
		{"garbage", func([]byte) []byte { return []byte("not NAT-PMP at all") }},
		{"truncated", func([]byte) []byte { return []byte{0, 128, 0} }},
		{"PCP version", func([]byte) []byte { return make([]byte, 24) }},
		{"error code", lie(func(r []byte) { r[3] = 3 })},
		{"unspecified external", extIs([4]byte{0, 0, 0, 0})},
		{"loopback external", extIs([4]byte{127, 0, 0, 1})},
		{"private external (double NAT)", extIs([4]byte{10, 9, 0, 1})},
		{"CGNAT external", extIs([4]byte{100, 64, 1, 1})},
		{"multicast external", extIs([4]byte{224, 0, 0, 1})},
		{"port 0", lie(func(r []byte) {
			if len(r) == 16 {
				r[10], r[11] = 0, 0
			}
		})},
		{"lifetime 0", lie(func(r []byte) {
			if len(r) == 16 {
				copy(r[12:], []byte{0, 0, 0, 0})
			}
		})},
		{"other internal port", lie(func(r []byte) {
			if len(r) == 16 {
				r[8]++
			}
		})},
		{"wrong opcode", lie(func(r []byte) { r[1] = 200 })},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := newFakeGateway(t, tc.answer)
			m, err := Start(Config{Gateway: g.addr, Local: local, Timeout: 300 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			// One failed attempt is enough to know it was refused: the
			// next is retryBackoff (5 s) away.
			time.Sleep(400 * time.Millisecond)
			_, _, rerr := m.request(time.Minute)
			if rerr == nil {
				t.Fatal("the answer was believed")
			}
			if a := m.Addr(); a.IsValid() {
				t.Fatalf("mapped %v", a)
			}
			start := time.Now()
			if err := m.Close(); err != nil {
				t.Fatal(err)
			}
			if d := time.Since(start); d > 5*time.Second || g.deletes.Load() != 0 {
				t.Fatalf("Close took %v and sent %d deletes", d, g.deletes.Load())
			}
			t.Logf("refused: %v", rerr)
		})
	}
}

func TestStartChecksConfig(t *testing.T) {
	for _, cfg := range []Config{
		{Local: local},
		{Gateway: netip.MustParseAddr("::1"), Local: local},
		{Gateway: netip.MustParseAddr("10.1.0.1")},
		{Gateway: netip.MustParseAddr("10.1.0.1"), Local: netip.MustParseAddrPort("10.1.0.11:0")},
		{Gateway: netip.MustParseAddr("10.1.0.1"), Local: local, Lifetime: -1},
		{Gateway: netip.MustParseAddr("10.1.0.1"), Local: local, Lifetime: time.Millisecond},
		{Gateway: netip.MustParseAddr("10.1.0.1"), Local: local, Protocols: []string{}},
		{Gateway: netip.MustParseAddr("10.1.0.1"), Local: local, Protocols: []string{"pcp"}},
	} {
		if m, err := Start(cfg); err == nil {
			m.Close()
			t.Errorf("Start(%+v) accepted", cfg)
		}
	}
	if !errors.Is(fmtBad(), ErrBadAnswer) {
		t.Error("ErrBadAnswer not wrapped")
	}
}

func fmtBad() error {
	m := &Mapper{cfg: Config{Local: local, Gateway: netip.MustParseAddr("10.1.0.1")}}
	return m.plausible(answer{ext: netip.MustParseAddr("0.0.0.0"), extPort: 1, intPort: local.Port(), lifetime: time.Minute})
}
