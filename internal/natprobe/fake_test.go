package natprobe

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"sync"
	"testing"

	"github.com/pion/stun/v4"
)

// fakeServer is an in-process STUN server on loopback with four sockets:
// two addresses (127.0.0.1, 127.0.0.2) times two ports, like an RFC 5780
// server. Its misbehaviours are switched on by mode.
type fakeServer struct {
	t     *testing.T
	mode  string
	socks map[netip.AddrPort]*net.UDPConn
	prim  netip.AddrPort
	alt   netip.AddrPort // other address and port
	wg    sync.WaitGroup
	mu    sync.Mutex
	seen  int
}

var (
	ip1 = netip.MustParseAddr("127.0.0.1")
	ip2 = netip.MustParseAddr("127.0.0.2")
)

func newFakeServer(t *testing.T, mode string) *fakeServer {
	t.Helper()
	f := &fakeServer{t: t, mode: mode}
	for attempt := 0; ; attempt++ {
		socks, p1, p2, err := openFour()
		if err == nil {
			f.socks = socks
			f.prim = netip.AddrPortFrom(ip1, p1)
			f.alt = netip.AddrPortFrom(ip2, p2)
			break
		}
		if attempt == 20 {
			t.Fatalf("cannot open the fake server's sockets: %v", err)
		}
	}
	for at, c := range f.socks {
		f.wg.Add(1)
		go f.serve(at, c)
	}
	t.Cleanup(func() {
		for _, c := range f.socks {
			c.Close()
		}
		f.wg.Wait()
	})
	return f
}

func openFour() (map[netip.AddrPort]*net.UDPConn, uint16, uint16, error) {
	first, err := net.ListenUDP("udp4", &net.UDPAddr{IP: ip1.AsSlice()})
	if err != nil {
		return nil, 0, 0, err
	}
	p1 := uint16(first.LocalAddr().(*net.UDPAddr).Port)
	second, err := net.ListenUDP("udp4", &net.UDPAddr{IP: ip1.AsSlice()})
	if err != nil {
		first.Close()
		return nil, 0, 0, err
	}
	p2 := uint16(second.LocalAddr().(*net.UDPAddr).Port)
	socks := map[netip.AddrPort]*net.UDPConn{
		netip.AddrPortFrom(ip1, p1): first,
		netip.AddrPortFrom(ip1, p2): second,
	}
	for _, ap := range []netip.AddrPort{netip.AddrPortFrom(ip2, p1), netip.AddrPortFrom(ip2, p2)} {
		c, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(ap))
		if err != nil {
			for _, s := range socks {
				s.Close()
			}
			return nil, 0, 0, err
		}
		socks[ap] = c
	}
	return socks, p1, p2, nil
}

func (f *fakeServer) requests() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.seen
}

func (f *fakeServer) serve(at netip.AddrPort, c *net.UDPConn) {
	defer f.wg.Done()
	buf := make([]byte, 2048)
	for {
		n, from, err := c.ReadFromUDPAddrPort(buf)
		if err != nil {
			return
		}
		req := &stun.Message{Raw: append([]byte(nil), buf[:n]...)}
		if req.Decode() != nil || req.Type != stun.BindingRequest {
			continue
		}
		f.mu.Lock()
		f.seen++
		f.mu.Unlock()
		f.answer(at, from, req)
	}
}

func (f *fakeServer) answer(at, from netip.AddrPort, req *stun.Message) {
	from = netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
	// Where the answer goes out from, honouring CHANGE-REQUEST.
	src := at
	if v, err := req.Get(stun.AttrChangeRequest); err == nil && len(v) == 4 && f.mode != "ignore-change" {
		flags := binary.BigEndian.Uint32(v)
		ip, port := at.Addr(), at.Port()
		if flags&0x04 != 0 {
			ip = other(ip, ip1, ip2)
		}
		if flags&0x02 != 0 {
			port = other(port, f.prim.Port(), f.alt.Port())
		}
		src = netip.AddrPortFrom(ip, port)
	}
	dst := from
	if v, err := req.Get(stun.AttrResponsePort); err == nil && len(v) == 4 && f.mode != "no-response-port" {
		dst = netip.AddrPortFrom(from.Addr(), binary.BigEndian.Uint16(v))
	}
	txid := req.TransactionID
	var raw []byte
	switch f.mode {
	case "silent":
		return
	case "wrong-txid":
		_, _ = rand.Read(txid[:])
	case "wrong-source":
		// Always answer from the alternate port of the same address.
		src = netip.AddrPortFrom(at.Addr(), other(at.Port(), f.prim.Port(), f.alt.Port()))
	case "garbage":
		raw = make([]byte, 37)
		_, _ = rand.Read(raw)
	case "short-xor":
		// XOR-MAPPED-ADDRESS of length 1: the input that panics old
		// pion/stun versions.
		m := stun.New()
		m.Type = stun.BindingSuccess
		m.TransactionID = txid
		m.WriteHeader()
		m.Add(stun.AttrXORMappedAddress, []byte{1})
		raw = m.Raw
	case "error":
		m, _ := stun.Build(stun.NewTransactionIDSetter(txid), stun.BindingError,
			&stun.ErrorCodeAttribute{Code: stun.CodeBadRequest, Reason: []byte("go away")})
		raw = m.Raw
	}
	if raw == nil {
		setters := []stun.Setter{
			stun.NewTransactionIDSetter(txid), stun.BindingSuccess,
			&stun.XORMappedAddress{IP: from.Addr().AsSlice(), Port: int(from.Port())},
		}
		mapped := from
		if f.mode == "alg" {
			mapped = netip.AddrPortFrom(netip.MustParseAddr("192.0.2.99"), 1234)
		}
		setters = append(setters, &stun.MappedAddress{IP: mapped.Addr().AsSlice(), Port: int(mapped.Port())})
		if f.mode != "basic" {
			setters = append(setters,
				&stun.OtherAddress{IP: f.alt.Addr().AsSlice(), Port: int(f.alt.Port())},
				&stun.ResponseOrigin{IP: src.Addr().AsSlice(), Port: int(src.Port())})
		}
		m, err := stun.Build(setters...)
		if err != nil {
			f.t.Errorf("fake server: %v", err)
			return
		}
		raw = m.Raw
		if f.mode == "truncated" {
			raw = raw[:len(raw)-7]
		}
	}
	out := f.socks[src]
	if out == nil {
		f.t.Errorf("fake server: no socket %s", src)
		return
	}
	_, err := out.WriteToUDPAddrPort(raw, dst)
	if err != nil && !errors.Is(err, net.ErrClosed) {
		f.t.Logf("fake server: %v", err)
	}
}

func other[T comparable](v, a, b T) T {
	if v == a {
		return b
	}
	return a
}
