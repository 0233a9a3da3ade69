package relay

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/stun/v4"

	"github.com/ferrynet/ferry/internal/testutil"
)

func TestQuotaPerUserAndTotal(t *testing.T) {
	testutil.CheckLeaks(t)
	testutil.Deadline(t, 60*time.Second)
	s := startServer(t, func(c *Config) {
		c.MaxAllocationsPerUser = 2
		c.MaxAllocations = 3
	})
	exp := time.Now().Add(time.Hour)
	alloc := func(user string) int {
		u, p := RESTCredentials(testSecret, user, ":", exp)
		return rawAllocate(t, s.udpAddr(), u, p, testRealm)
	}
	for i := range 2 {
		if c := alloc("ann"); c != 0 {
			t.Fatalf("ann #%d: %d", i+1, c)
		}
	}
	if c := alloc("ann"); c != 486 {
		t.Fatalf("ann's third allocation: %d, want 486", c)
	}
	if v := s.counter(t, "ferry_relay_quota_rejections_total", "reason", QuotaUser); v != 1 {
		t.Errorf("user quota rejections = %v", v)
	}
	if c := alloc("ben"); c != 0 {
		t.Fatalf("ben: %d", c)
	}
	if c := alloc("cat"); c != 486 {
		t.Fatalf("fourth allocation on the server: %d, want 486", c)
	}
	if v := s.counter(t, "ferry_relay_quota_rejections_total", "reason", QuotaTotal); v != 1 {
		t.Errorf("total quota rejections = %v", v)
	}
	if got := s.Allocations(); got != 3 {
		t.Fatalf("Allocations() = %d", got)
	}

	// A freed slot can be used again.
	c := newClient(t, s.udpAddr(), "dan", testSecret)
	if _, err := c.Allocate(); err == nil || !strings.Contains(err.Error(), "486") {
		t.Fatalf("dan over the total: %v", err)
	}
	s.mu.Lock()
	var victim *relayConn
	for _, rc := range s.relays {
		if u, _ := splitUserID(rc.user); u == "ben" {
			victim = rc
		}
	}
	s.mu.Unlock()
	_ = victim.Close() // ends ben's allocation, as an expiry would
	testutil.WaitFor(t, 5*time.Second, "2 live allocations after a release", func() bool { return s.Allocations() == 2 })
	if c := alloc("cat"); c != 0 {
		t.Fatalf("after a release: %d", c)
	}
}

// sink counts bytes arriving on a UDP socket, with arrival times.
type sink struct {
	pc   net.PacketConn
	mu   sync.Mutex
	log  []arrival
	done chan struct{}
}

type arrival struct {
	at time.Time
	n  int
}

func startSink(t *testing.T) *sink {
	t.Helper()
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	k := &sink{pc: pc, done: make(chan struct{})}
	go func() {
		defer close(k.done)
		buf := make([]byte, 2048)
		for {
			n, _, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			k.mu.Lock()
			k.log = append(k.log, arrival{time.Now(), n})
			k.mu.Unlock()
		}
	}()
	t.Cleanup(func() { _ = pc.Close(); <-k.done })
	return k
}

// rate returns the bytes per second that arrived in [from, to).
func (k *sink) rate(from, to time.Time) float64 {
	k.mu.Lock()
	defer k.mu.Unlock()
	var n int
	for _, a := range k.log {
		if !a.at.Before(from) && a.at.Before(to) {
			n += a.n
		}
	}
	return float64(n) / to.Sub(from).Seconds()
}

// blast sends 1000-byte datagrams through relay to peer at about rate bytes/s
// until ctx ends.
func blast(ctx context.Context, relay net.PacketConn, peer net.Addr, rate int) {
	payload := make([]byte, 1000)
	interval := time.Second * 1000 / time.Duration(rate)
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			if _, err := relay.WriteTo(payload, peer); err != nil && !errors.Is(err, net.ErrClosed) {
				return
			}
		}
	}
}

func measureLimit(t *testing.T, limit int, perAlloc bool, allocs int) {
	s := startServer(t, func(c *Config) {
		c.AllowPeers = loopback
		if perAlloc {
			c.AllocationBandwidth = int64(limit)
		} else {
			c.ServerBandwidth = int64(limit)
		}
	})
	k := startSink(t)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	for range allocs {
		c := newClient(t, s.udpAddr(), "bw", testSecret)
		relay, err := c.Allocate()
		if err != nil {
			t.Fatal(err)
		}
		defer relay.Close()
		wg.Go(func() { blast(ctx, relay, k.pc.LocalAddr(), 2*limit) })
	}
	// Measure once traffic flows and the limiter has dropped a datagram:
	// the burst is spent, so from then on what passes is the refill rate.
	testutil.WaitFor(t, 10*time.Second, "relayed traffic, and datagrams dropped as rate limited", func() bool {
		return k.rate(time.Time{}, time.Now()) > 0 &&
			s.counter(t, "ferry_relay_dropped_packets_total", "reason", DropRateLimited) > 0
	})
	want := float64(limit) // the server cap covers every allocation
	if perAlloc {
		want = float64(limit * allocs)
	}
	// The cap must hold in every window. The floor says the limiter lets
	// the full rate through, which only a window in which the senders got
	// the CPU to offer twice the rate can show: on a starved machine a
	// window may fall short for want of load, so up to three are tried.
	var got float64
	for window := 1; window <= 3; window++ {
		from := time.Now()
		time.Sleep(2 * time.Second)
		got = k.rate(from, time.Now())
		t.Logf("window %d: offered %d B/s per allocation x %d, limit %d B/s (per allocation: %v): measured %.0f B/s",
			window, 2*limit, allocs, limit, perAlloc, got)
		if got > 1.1*want {
			t.Fatalf("measured %.0f B/s, above the cap %.0f by more than 10%%", got, want)
		}
		if got >= 0.9*want {
			break
		}
	}
	cancel()
	wg.Wait()
	if got < 0.9*want {
		t.Errorf("measured %.0f B/s in the last of three windows, want within 10%% of %.0f", got, want)
	}
}

func TestBandwidthPerAllocation(t *testing.T) {
	testutil.CheckLeaks(t)
	testutil.Deadline(t, 60*time.Second)
	measureLimit(t, 100_000, true, 1)
}

func TestBandwidthServer(t *testing.T) {
	testutil.CheckLeaks(t)
	testutil.Deadline(t, 60*time.Second)
	measureLimit(t, 150_000, false, 2)
}

func TestDrain(t *testing.T) {
	testutil.CheckLeaks(t)
	testutil.Deadline(t, 60*time.Second)
	s := startServer(t, func(c *Config) { c.AllowPeers = loopback })
	peer := startEcho(t, "udp4", "127.0.0.1:0")
	c := newClient(t, s.udpAddr(), "live", testSecret)
	relay, err := c.Allocate()
	if err != nil {
		t.Fatal(err)
	}
	if err = roundTrip(relay, peer.pc.LocalAddr(), []byte("before"), 5*time.Second); err != nil {
		t.Fatal(err)
	}

	drained := make(chan error, 1)
	go func() { drained <- s.Shutdown(context.Background()) }()
	testutil.WaitFor(t, 5*time.Second, "the server to drain", s.Draining)
	if v := s.counter(t, "ferry_relay_draining"); v != 1 {
		t.Errorf("ferry_relay_draining = %v", v)
	}

	// New allocations are refused...
	u, p := RESTCredentials(testSecret, "late", ":", time.Now().Add(time.Hour))
	if code := rawAllocate(t, s.udpAddr(), u, p, testRealm); code != 486 {
		t.Errorf("Allocate while draining: %d, want 486", code)
	}
	if v := s.counter(t, "ferry_relay_quota_rejections_total", "reason", QuotaDraining); v != 1 {
		t.Errorf("draining rejections = %v", v)
	}
	// ...while the live one keeps relaying.
	for i := range 10 {
		if err = roundTrip(relay, peer.pc.LocalAddr(), []byte{byte(i), 'd'}, 5*time.Second); err != nil {
			t.Fatalf("live allocation while draining: %v", err)
		}
	}
	select {
	case derr := <-drained:
		t.Fatalf("Shutdown returned with an allocation live: %v", derr)
	case <-time.After(200 * time.Millisecond):
	}
	_ = relay.Close()
	select {
	case derr := <-drained:
		if derr != nil {
			t.Fatal(derr)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Shutdown did not return after the last allocation ended")
	}

	// A shutdown with a deadline gives up with the context's error.
	s2 := startServer(t, nil)
	c2 := newClient(t, s2.udpAddr(), "stays", testSecret)
	r2, err := c2.Allocate()
	if err != nil {
		t.Fatal(err)
	}
	defer r2.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if err := s2.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown with a live allocation and a deadline: %v", err)
	}
}

func TestPeersPerAllocationCap(t *testing.T) {
	testutil.CheckLeaks(t)
	testutil.Deadline(t, 60*time.Second)
	s := startServer(t, nil)
	c := newClient(t, s.udpAddr(), "many", testSecret)
	relay, err := c.Allocate()
	if err != nil {
		t.Fatal(err)
	}
	defer relay.Close()
	a := newAuthed(c.Client, "many")
	peer := func(i int) netip.AddrPort {
		return netip.AddrPortFrom(netip.AddrFrom4([4]byte{11, byte(i >> 16), byte(i >> 8), byte(i)}), 9)
	}
	for i := 0; i < MaxPeersPerAllocation; i += 64 {
		var attrs []stun.Setter
		for j := i; j < i+64 && j < MaxPeersPerAllocation; j++ {
			attrs = append(attrs, xorPeer(peer(j)))
		}
		res, rerr := a.request(stun.MethodCreatePermission, attrs...)
		if rerr != nil || code(res) != 0 {
			t.Fatalf("permissions %d+: %v, code %d", i, rerr, code(res))
		}
	}
	res, err := a.request(stun.MethodCreatePermission, xorPeer(peer(MaxPeersPerAllocation)))
	if err != nil || code(res) != 403 {
		t.Fatalf("permission %d: %v, code %d, want 403", MaxPeersPerAllocation+1, err, code(res))
	}
	if v := s.counter(t, "ferry_relay_quota_rejections_total", "reason", QuotaPeers); v != 1 {
		t.Errorf("peers rejections = %v", v)
	}
	// Refreshing an existing permission still works.
	if res, err := a.request(stun.MethodCreatePermission, xorPeer(peer(7))); err != nil || code(res) != 0 {
		t.Fatalf("refresh: %v, code %d", err, code(res))
	}
}
