//go:build linux

package relay

import (
	"bytes"
	"net"
	"net/netip"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ferrynet/ferry/internal/netaddr"
)

func udpPair(t *testing.T) (*net.UDPConn, *net.UDPConn) {
	t.Helper()
	a, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	b, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.Close(); _ = b.Close() })
	return a, b
}

func datagram(i, size int) []byte {
	b := bytes.Repeat([]byte{byte(i)}, size)
	b[0] = byte(i)
	return b
}

func expect(t *testing.T, c *net.UDPConn, want [][]byte) {
	t.Helper()
	buf := make([]byte, 65536)
	for i, w := range want {
		_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
		n, err := c.Read(buf)
		if err != nil {
			t.Fatalf("datagram %d: %v", i, err)
		}
		if !bytes.Equal(buf[:n], w) {
			t.Fatalf("datagram %d: got %d bytes starting %d, want %d bytes starting %d", i, n, buf[0], len(w), w[0])
		}
	}
}

func TestTxBatchCoalescesAndFallsBack(t *testing.T) {
	sender, recv := udpPair(t)
	_, recv2 := udpPair(t)
	io := newSockIO(sender)
	if io == nil {
		t.Fatal("no raw socket handle")
	}
	if io.gsoMax.Load() == 0 {
		t.Skip("the kernel lacks UDP_SEGMENT; the plain path is covered by the relay tests")
	}
	to := netaddr.AddrPort(recv.LocalAddr())
	to2 := netaddr.AddrPort(recv2.LocalAddr())
	tx := newTxBatch(16)
	var want, want2 [][]byte
	for i := range 10 {
		d := datagram(i, 1000)
		want = append(want, d)
		if !tx.add(io, d, to) {
			t.Fatal("add failed")
		}
	}
	last := datagram(10, 500) // a shorter last segment
	want = append(want, last)
	tx.add(io, last, to)
	for i := range 2 {
		d := datagram(20+i, 1000)
		want2 = append(want2, d)
		tx.add(io, d, to2)
	}
	if tx.msgs != 2 || tx.segs[0] != 11 || tx.segs[1] != 2 {
		t.Fatalf("coalesced into %d messages %v, want 2 of [11 2]", tx.msgs, tx.segs[:tx.msgs])
	}
	if failed, err := tx.flush(io); failed != 0 || err != nil {
		t.Fatalf("flush: %d failed, %v", failed, err)
	}
	expect(t, recv, want)
	expect(t, recv2, want2)

	// A socket that cannot segment (SO_NO_CHECK makes the kernel refuse
	// UDP_SEGMENT) gets its datagrams one by one, and stops coalescing
	// that size.
	rc, _ := sender.SyscallConn()
	_ = rc.Control(func(fd uintptr) { _ = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_NO_CHECK, 1) })
	want = nil
	for i := range 5 {
		d := datagram(30+i, 800)
		want = append(want, d)
		tx.add(io, d, to)
	}
	if failed, err := tx.flush(io); failed != 0 || err != nil {
		t.Fatalf("flush after refusal: %d failed, %v", failed, err)
	}
	expect(t, recv, want)
	if got := io.gsoMax.Load(); got != 799 {
		t.Fatalf("gsoMax = %d after refusing 800-byte segments, want 799", got)
	}
}

func TestRxBatch(t *testing.T) {
	sender, recv := udpPair(t)
	io := newSockIO(recv)
	rx := newRxBatch(io, 4, 1600, chanHeaderSize)
	var want [][]byte
	for i := range 9 {
		d := datagram(i, 100+i)
		want = append(want, d)
		if _, err := sender.WriteTo(d, recv.LocalAddr()); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := sender.WriteTo(make([]byte, 3000), recv.LocalAddr()); err != nil {
		t.Fatal(err)
	}
	from := netaddr.AddrPort(sender.LocalAddr())
	for i, w := range want {
		buf, n, src, trunc, err := rx.next()
		if err != nil || trunc || src != from || !bytes.Equal(buf[chanHeaderSize:chanHeaderSize+n], w) {
			t.Fatalf("datagram %d: n=%d src=%v trunc=%v err=%v", i, n, src, trunc, err)
		}
	}
	if _, _, _, trunc, err := rx.next(); err != nil || !trunc {
		t.Fatalf("oversized datagram: trunc=%v err=%v", trunc, err)
	}
	var sa sockaddr
	v6 := netip.MustParseAddrPort("[2001:db8::1]:99")
	if l := io.put(&sa, v6); l != 0 {
		t.Fatal("an IPv4 socket encoded an IPv6 address")
	}
	v4 := netip.MustParseAddrPort("[::ffff:192.0.2.1]:99")
	if l := io.put(&sa, v4); l != unix.SizeofSockaddrInet4 || get(&sa) != netip.MustParseAddrPort("192.0.2.1:99") {
		t.Fatal("mapped IPv4 did not round-trip")
	}
}

// TestBurstsIntact relays bursts of equal-size datagrams (which the fast
// path coalesces with UDP_SEGMENT) both ways, with segmentation on and off.
func TestBurstsIntact(t *testing.T) {
	for _, gso := range []bool{true, false} {
		t.Run(map[bool]string{true: "gso", false: "plain"}[gso], func(t *testing.T) {
			gsoDisabled.Store(!gso)
			defer gsoDisabled.Store(false)
			s := startServer(t, func(c *Config) { c.AllowPeers = loopback })
			peer, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
			if err != nil {
				t.Fatal(err)
			}
			defer peer.Close()
			c := newClient(t, s.udpAddr(), "burst", testSecret)
			relayConn, err := c.Allocate()
			if err != nil {
				t.Fatal(err)
			}
			defer relayConn.Close()
			// Bind the channel: write until the peer has heard a few.
			buf := make([]byte, 2048)
			var relayed net.Addr
			for range 40 {
				if _, err := relayConn.WriteTo([]byte("hi"), peer.LocalAddr()); err != nil {
					t.Fatal(err)
				}
				_ = peer.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
				if _, from, err := peer.ReadFrom(buf); err == nil {
					relayed = from
				}
				time.Sleep(10 * time.Millisecond)
			}
			if relayed == nil {
				t.Fatal("the peer heard nothing")
			}
			for _, drain := range []net.PacketConn{relayConn} {
				for {
					_ = drain.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
					if _, _, err := drain.ReadFrom(buf); err != nil {
						break
					}
				}
			}
			for {
				_ = peer.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
				if _, _, err := peer.ReadFrom(buf); err != nil {
					break
				}
			}
			const n = 24
			var burst [][]byte
			for i := range n {
				size := 900
				if i == n-1 {
					size = 300
				}
				burst = append(burst, datagram(i+1, size))
			}
			// Peer to client.
			for _, d := range burst {
				if _, err := peer.WriteTo(d, relayed); err != nil {
					t.Fatal(err)
				}
			}
			for i, w := range burst {
				_ = relayConn.SetReadDeadline(time.Now().Add(2 * time.Second))
				k, _, err := relayConn.ReadFrom(buf)
				if err != nil || !bytes.Equal(buf[:k], w) {
					t.Fatalf("to client, datagram %d: %d bytes, %v", i, k, err)
				}
			}
			// Client to peer.
			for _, d := range burst {
				if _, err := relayConn.WriteTo(d, peer.LocalAddr()); err != nil {
					t.Fatal(err)
				}
			}
			for i, w := range burst {
				_ = peer.SetReadDeadline(time.Now().Add(2 * time.Second))
				k, _, err := peer.ReadFrom(buf)
				if err != nil || !bytes.Equal(buf[:k], w) {
					t.Fatalf("to peer, datagram %d: %d bytes, %v", i, k, err)
				}
			}
		})
	}
}
