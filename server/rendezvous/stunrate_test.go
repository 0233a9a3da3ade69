package rendezvous

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/ferrynet/ferry/internal/testutil"
)

// TestSTUNRatePerSource (finding 9): one source gets at most the burst of
// STUN answers (plus what the rate refills meanwhile); the rest are
// dropped and counted.
func TestSTUNRatePerSource(t *testing.T) {
	testutil.CheckLeaks(t)
	testutil.Deadline(t, 30*time.Second)
	s := newSTUNOnly(t, []net.PacketConn{listenUDP(t, "127.0.0.1:0")})
	c := listenUDP(t, "127.0.0.1:0")
	defer c.Close()
	dst := net.UDPAddrFromAddrPort(s.STUNAddrs()[0])
	const rounds, per = 8, 50 // 400 requests, twice the default burst of 200
	for r := range rounds {
		for range per {
			if _, err := c.WriteTo(bindingRequest(t), dst); err != nil {
				t.Fatal(err)
			}
		}
		// Each round is counted before the next is sent, so that no
		// request is lost to a full socket buffer.
		want := float64((r + 1) * per)
		testutil.WaitFor(t, 10*time.Second, "the STUN requests to be counted", func() bool {
			return stunCount(s, STUNAnswered)+stunCount(s, "rate_limited") >= want
		})
	}
	answered, limited := stunCount(s, STUNAnswered), stunCount(s, "rate_limited")
	if limited == 0 || answered > 200+100 {
		t.Fatalf("%v answered, %v rate limited, of %d from one source", answered, limited, rounds*per)
	}
}

// TestSTUNLimiterBounded: spoofed sources cannot grow the table beyond
// its bound (they are answered untracked), and the sweep forgets idle
// sources.
func TestSTUNLimiterBounded(t *testing.T) {
	now := int64(1)
	l := newSTUNLimiter(1, 1, 64, func() int64 { return now })
	for i := range 10000 {
		l.allow(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}))
	}
	n := 0
	for i := range l.shards {
		n += len(l.shards[i].m)
	}
	if n > 64 {
		t.Fatalf("%d sources tracked, bound 64", n)
	}
	now += int64(2 * time.Second)
	l.sweep()
	for i := range l.shards {
		if len(l.shards[i].m) != 0 {
			t.Fatal("the sweep kept idle sources")
		}
	}
	if newSTUNLimiter(-1, 0, 1, nil) != nil {
		t.Fatal("a negative rate still limits")
	}
}
