package sdk

import (
	"errors"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferrynet/ferry/internal/testutil"
)

func TestParseRoutes(t *testing.T) {
	const table = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n" +
		"eth0\t0000010A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n" +
		"eth0\t00000000\t0100010A\t0003\t0\t0\t0\t00000000\t0\t0\t0\n"
	gw, err := parseRoutes(strings.NewReader(table))
	if err != nil || gw != netip.MustParseAddr("10.1.0.1") {
		t.Fatalf("default gateway %v, %v; want 10.1.0.1", gw, err)
	}
	for _, bad := range []string{
		"",
		"Iface\tDestination\tGateway\n",
		"eth0\t0000010A\t00000000\t0001\t0\t0\t0\t00FFFFFF\n", // no default route
		"eth0\t00000000\tZZZZZZZZ\t0003\t0\t0\t0\t00000000\n", // garbage gateway
		"eth0\t00000000\t00000000\t0001\t0\t0\t0\t00000000\n", // default route, no gateway
		strings.Repeat("x", 200<<10),                          // one huge line
	} {
		if gw, err := parseRoutes(strings.NewReader(bad)); err == nil {
			t.Errorf("parseRoutes(%.40q) = %v, want an error", bad, gw)
		}
	}
}

func TestPortMappingOptionChecks(t *testing.T) {
	ctx := ctxT(t, 10*time.Second)
	for _, l := range []time.Duration{-time.Second, 500 * time.Millisecond} {
		if n, err := New(ctx, WithRendezvous("wss://127.0.0.1:1/"), WithPortMapping(PortMapping{Lifetime: l})); err == nil {
			_ = n.Close()
			t.Errorf("lifetime %v accepted", l)
		}
	}
	for _, gw := range []string{"::1", "0.0.0.0"} {
		if n, err := New(ctx, WithRendezvous("wss://127.0.0.1:1/"), WithPortMapping(PortMapping{Gateway: netip.MustParseAddr(gw)})); err == nil {
			_ = n.Close()
			t.Errorf("gateway %v accepted", gw)
		}
	}
}

// lyingGateway answers NAT-PMP on 127.0.18.N:5351 with well-formed
// answers whose external address is private (a double NAT's inside), or
// with garbage.
func lyingGateway(t *testing.T, garbage bool) (netip.Addr, *atomic.Int32) {
	t.Helper()
	ip := netip.AddrFrom4([4]byte{127, 0, 18, byte(100 + nextGateway.Add(1))})
	c, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(ip, 5351)))
	if err != nil {
		t.Skipf("cannot bind a fake gateway at %v:5351: %v", ip, err)
	}
	var deletes atomic.Int32
	var wg sync.WaitGroup
	wg.Go(func() {
		buf := make([]byte, 64)
		for {
			n, from, err := c.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			req := buf[:n]
			var r []byte
			switch {
			case garbage:
				r = []byte("\x00\x80garbage, not NAT-PMP")
			case n == 2 && req[1] == 0:
				r = []byte{0, 128, 0, 0, 0, 0, 0, 1, 10, 9, 0, 1}
			case n == 12 && req[1] == 1:
				if req[8]|req[9]|req[10]|req[11] == 0 {
					deletes.Add(1)
				}
				r = append([]byte{0, 129, 0, 0, 0, 0, 0, 1}, req[4:8]...)
				r = append(r, req[8:12]...)
			}
			if r != nil {
				_, _ = c.WriteToUDPAddrPort(r, from)
			}
		}
	})
	t.Cleanup(func() { _ = c.Close(); wg.Wait() })
	return ip, &deletes
}

var nextGateway atomic.Uint32

// TestPortMappingBadGateway: a node whose gateway lies about its external
// address, or answers garbage, offers no mapped candidate, reports the
// failures, still connects, and sends no delete on Close.
func TestPortMappingBadGateway(t *testing.T) {
	testutil.CheckLeaks(t)
	testutil.Deadline(t, 90*time.Second)
	in := newInfra(t)
	for _, garbage := range []bool{false, true} {
		gw, deletes := lyingGateway(t, garbage)
		var mu sync.Mutex
		var kinds []PortMapEventKind
		a := in.node(t, WithPortMapping(PortMapping{Gateway: gw, OnEvent: func(e PortMapEvent) {
			mu.Lock()
			kinds = append(kinds, e.Kind)
			mu.Unlock()
		}}))
		b := in.node(t)
		testutil.WaitFor(t, 20*time.Second, "a failed request", func() bool { return a.PortMapping().Failed >= 1 })
		st := a.PortMapping()
		if !st.Enabled || st.Addr.IsValid() || st.Obtained != 0 || st.LastErr == nil || st.LocalPort == 0 {
			t.Fatalf("garbage %v: status %+v", garbage, st)
		}
		if !garbage && !strings.Contains(st.LastErr.Error(), "private") {
			t.Errorf("the lie was refused for %v, want its private address named", st.LastErr)
		}
		ca, cb := nodePair(t, a, b)
		for _, c := range []*Conn{ca, cb} {
			if p := c.Path(); p.Kind() == "none" {
				t.Fatalf("no path: %+v", p)
			}
		}
		_ = ca.Close()
		_ = cb.Close()
		if err := a.Close(); err != nil {
			t.Fatal(err)
		}
		if deletes.Load() != 0 {
			t.Fatalf("%d deletes for a mapping never believed", deletes.Load())
		}
		mu.Lock()
		for _, k := range kinds {
			if k != PortMapFailed {
				t.Errorf("event %q from a bad gateway", k)
			}
		}
		mu.Unlock()
	}
}

// TestPortMappingNoGateway: with no gateway to be found the node gathers
// as without the option and says why.
func TestPortMappingNoGateway(t *testing.T) {
	_, _, err := gatewayAndLocal(netip.Addr{}, func(func() error) error { return errNoGateway })
	if !errors.Is(err, errNoGateway) {
		t.Fatalf("err %v", err)
	}
	in := newInfra(t)
	a := in.node(t, WithPortMapping(PortMapping{Do: func(func() error) error { return errNoGateway }}))
	st := a.PortMapping()
	if !st.Enabled || st.Failed != 1 || !errors.Is(st.LastErr, errNoGateway) || st.LocalPort != 0 {
		t.Fatalf("status %+v", st)
	}
	b := in.node(t)
	ca, cb := nodePair(t, a, b)
	_ = ca.Close()
	_ = cb.Close()
}
