package natlabtest

import (
	"net"
	"testing"
	"time"
)

// TestSendUntilHeard on loopback: the packet arrives, a stray packet with
// other contents is ignored, and the sender's address is returned.
func TestSendUntilHeard(t *testing.T) {
	listen := func() net.PacketConn {
		c, err := net.ListenPacket("udp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
		return c
	}
	from, at, stray := listen(), listen(), listen()
	atAddr := at.LocalAddr().(*net.UDPAddr).AddrPort()
	if _, err := stray.WriteTo([]byte("noise"), net.UDPAddrFromAddrPort(atAddr)); err != nil {
		t.Fatal(err)
	}
	src := SendUntilHeard(t, from, atAddr, at, "hello", 20*time.Second)
	if want := from.LocalAddr().(*net.UDPAddr).AddrPort(); src != want {
		t.Fatalf("heard from %v, want %v", src, want)
	}
}
