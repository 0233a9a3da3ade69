package rendezvous

import (
	"context"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"testing"
	"time"

	"github.com/pion/stun/v4"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/ferrynet/ferry/internal/netaddr"
)

// listenUDP opens a UDP socket on addr or fails the test.
func listenUDP(t testing.TB, addr string) net.PacketConn {
	t.Helper()
	c, err := net.ListenPacket("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// rfc5780Conns opens the four RFC 5780 sockets on 127.0.0.1 and 127.0.0.2
// with two ports free on both addresses.
func rfc5780Conns(t testing.TB) []net.PacketConn {
	t.Helper()
	for range 50 {
		p1, p2 := freeUDPPort(t), freeUDPPort(t)
		if p1 == p2 {
			continue
		}
		conns, err := ListenSTUN(context.Background(), "127.0.0.1:"+strconv.Itoa(p1), "127.0.0.2:"+strconv.Itoa(p2))
		if err == nil {
			return conns
		}
	}
	t.Fatal("no pair of UDP ports free on 127.0.0.1 and 127.0.0.2")
	return nil
}

func freeUDPPort(t testing.TB) int {
	t.Helper()
	c := listenUDP(t, "127.0.0.1:0")
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port
}

// stunExchange sends req from c to dst and returns the answer and where it
// came from, or a nil message if none arrives within wait.
func stunExchange(t testing.TB, c net.PacketConn, dst netip.AddrPort, req []byte, wait time.Duration) (*stun.Message, netip.AddrPort) {
	t.Helper()
	if _, err := c.WriteTo(req, net.UDPAddrFromAddrPort(dst)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 65536)
	_ = c.SetReadDeadline(time.Now().Add(wait))
	n, from, err := c.ReadFrom(buf)
	if err != nil {
		var ne net.Error
		if ok := asNetErr(err, &ne); ok && ne.Timeout() {
			return nil, netip.AddrPort{}
		}
		t.Fatal(err)
	}
	m := &stun.Message{Raw: append([]byte(nil), buf[:n]...)}
	if err := m.Decode(); err != nil {
		t.Fatalf("answer does not decode: %v", err)
	}
	ap := netaddr.AddrPort(from)
	return m, ap
}

func asNetErr(err error, target *net.Error) bool {
	ne, ok := err.(net.Error) //nolint:errorlint // net errors are not wrapped here
	if ok {
		*target = ne
	}
	return ok
}

func stunCount(s *Server, disposition string) float64 {
	return counter(s.m.stun.WithLabelValues(disposition))
}

// counter reads a counter's (or gauge's) value.
func counter(c prometheus.Metric) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		return -1
	}
	if m.Gauge != nil {
		return m.GetGauge().GetValue()
	}
	return m.GetCounter().GetValue()
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

// testLogger logs to the test's output when -v is given.
func testLogger(t testing.TB) *slog.Logger {
	if !testing.Verbose() {
		return discardLogger()
	}
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(string(p))
	return len(p), nil
}
