// Package natlabtest holds the *testing.T helpers of the NAT lab, apart
// from package natlab so that programs using the lab (`ferry demo`) link
// no test code.
package natlabtest

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/ferrynet/ferry/internal/natlab"
	"github.com/ferrynet/ferry/internal/testutil"
)

// New builds a lab for a test and removes it when the test and its
// subtests end, whether they pass, fail or panic. If the machine cannot
// build labs it skips the test loudly (fails it under FERRY_TEST_STRICT=1,
// as `make test` runs). Build errors fail the test.
//
// If the test binary dies without running cleanups (SIGKILL, a -timeout
// panic), the lab's reaper process removes the namespaces.
func New(t testing.TB, cfg natlab.Config) *natlab.Lab {
	t.Helper()
	if err := natlab.CheckPrerequisites(); err != nil {
		testutil.SkipOrFail(t, "%v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	lab, err := natlab.New(ctx, cfg)
	if err != nil {
		t.Fatalf("natlab: %v", err)
	}
	t.Cleanup(func() {
		if err := lab.Close(); err != nil {
			t.Errorf("natlab: close: %v", err)
		}
	})
	return lab
}

// SendUntilHeard sends payload from the socket from to the address to every
// 200 ms until the socket at reads a packet carrying payload, as a test
// does to open or cross a NAT mapping, and returns the address that packet
// came from. Packets with other contents are ignored. It fails t if
// nothing arrives within timeout. On success at's read deadline is cleared.
func SendUntilHeard(t testing.TB, from net.PacketConn, to netip.AddrPort, at net.PacketConn, payload string, timeout time.Duration) netip.AddrPort {
	t.Helper()
	if err := at.SetReadDeadline(time.Now().Add(timeout)); err != nil {
		t.Fatal(err)
	}
	heard := make(chan netip.AddrPort, 1)
	go func() {
		defer close(heard)
		buf := make([]byte, 1500)
		for {
			n, src, err := at.ReadFrom(buf)
			if err != nil {
				return
			}
			if u, ok := src.(*net.UDPAddr); ok && string(buf[:n]) == payload {
				ap := u.AddrPort()
				heard <- netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
				return
			}
		}
	}()
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	dst := net.UDPAddrFromAddrPort(to)
	for {
		if _, err := from.WriteTo([]byte(payload), dst); err != nil {
			t.Fatalf("send %q to %v: %v", payload, to, err)
		}
		select {
		case src, ok := <-heard:
			if !ok {
				t.Fatalf("%q sent to %v never arrived at %v", payload, to, at.LocalAddr())
			}
			_ = at.SetReadDeadline(time.Time{}) // the reader has stopped
			return src
		case <-tick.C:
		}
	}
}

// Run is the body of a lab test binary's TestMain: it runs the tests and
// returns their exit code, made 1 if any namespace the tests created is
// left behind (printed to stderr).
func Run(m *testing.M) int {
	code := m.Run()
	if left, err := natlab.OwnLeftovers(); err != nil || len(left) > 0 {
		fmt.Fprintf(os.Stderr, "natlab: namespaces left after the tests: %v %v\n", left, err)
		code = 1
	}
	return code
}
