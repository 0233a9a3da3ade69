package relaybench

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/ferrynet/ferry/internal/benchproc"
	"github.com/ferrynet/ferry/internal/testutil"
	"github.com/ferrynet/ferry/server/relay"
)

// The ferry relay under test runs in a child process (this test binary,
// re-executed), so that its CPU time can be read from /proc apart from the
// load generator's.
const childEnv = "FERRY_RELAYBENCH_CHILD"

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) != "" {
		os.Exit(child())
	}
	os.Exit(m.Run())
}

// child serves a relay configured like FerryArgs until SIGTERM.
func child() int {
	var s Settings
	var err error
	if s.Port, err = strconv.Atoi(os.Getenv("FERRY_RELAYBENCH_PORT")); err != nil {
		return 2
	}
	s.MinPort, _ = strconv.Atoi(os.Getenv("FERRY_RELAYBENCH_MINPORT"))
	s.MaxPort = s.MinPort + 4999
	srv, err := relay.New(relay.Config{
		ListenUDP:             []string{"127.0.0.1:" + strconv.Itoa(s.Port)},
		RelayIPs:              []netip.Addr{netip.MustParseAddr("127.0.0.1")},
		RelayPortMin:          uint16(s.MinPort), //nolint:gosec // test port
		RelayPortMax:          uint16(s.MaxPort), //nolint:gosec // test port
		AuthSecrets:           []string{"bench-secret"},
		Realm:                 "bench",
		AllowPeers:            []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")},
		MaxAllocationsPerUser: -1,
		MaxAllocationsPerIP:   -1, // every bench client is on 127.0.0.1
		MaxAllocations:        -1,
		AllocationBandwidth:   -1, // coturn, the comparison, has no caps either
		ServerBandwidth:       -1,
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	<-ctx.Done()
	stop()
	_ = srv.Close()
	return 0
}

func startTarget(b *testing.B, name string, minPort int) *Server {
	port, err := benchproc.FreePort(b.Context(), "udp")
	if err != nil {
		b.Fatal(err)
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	set := Settings{Port: port, MinPort: minPort, MaxPort: minPort + 4999, Secret: "bench-secret", Realm: "bench"}
	var srv *Server
	switch name {
	case "coturn":
		bin := testutil.RequireBinary(b, "turnserver", "coturn")
		srv, err = Start(b.Context(), name, bin, CoturnArgs(set, b.TempDir()), addr, nil)
	default:
		srv, err = Start(b.Context(), name, os.Args[0], []string{"-test.run=^$"}, addr, []string{
			childEnv + "=1",
			"FERRY_RELAYBENCH_PORT=" + strconv.Itoa(port),
			"FERRY_RELAYBENCH_MINPORT=" + strconv.Itoa(minPort),
		})
	}
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = srv.Stop() })
	return srv
}

// BenchmarkRelayVsCoturn drives ferry's relay and coturn with the same load
// (32 allocations x 8 in flight, 1000-byte payloads), b.N relayed round trips
// each, and reports each server's CPU per round trip and the ratios. `make
// bench-relay` is the fuller measurement (alternating rounds, RTT
// percentiles); this form keeps it compiling and running in CI.
func BenchmarkRelayVsCoturn(b *testing.B) {
	ferry := startTarget(b, "ferry", 40000)
	coturn := startTarget(b, "coturn", 45000)
	loads := map[string]*Load{}
	for name, srv := range map[string]*Server{"ferry": ferry, "coturn": coturn} {
		l, err := Prepare(b.Context(), Config{Server: srv.Addr, Realm: "bench", Secret: "bench-secret", PID: srv.PID()})
		if err != nil {
			b.Fatalf("%s: %v", name, err)
		}
		b.Cleanup(l.Close)
		loads[name] = l
	}
	b.SetBytes(4 * 1000) // four 1000-byte datagrams through the relay per round trip
	b.ReportAllocs()
	b.ResetTimer()
	res := map[string]Result{}
	for _, name := range []string{"coturn", "ferry"} {
		r, err := loads[name].RunCount(b.Context(), int64(b.N))
		if err != nil {
			b.Fatal(err)
		}
		res[name] = r
		b.StopTimer()
		loads[name].Drain()
		b.StartTimer()
	}
	b.StopTimer()
	f, c := res["ferry"], res["coturn"]
	b.ReportMetric(us(f.CPUPerRoundTrip()), "ferry-cpu-us/rt")
	b.ReportMetric(us(c.CPUPerRoundTrip()), "coturn-cpu-us/rt")
	b.ReportMetric(f.RoundTripsPerSec(), "ferry-rt/s")
	b.ReportMetric(c.RoundTripsPerSec(), "coturn-rt/s")
	if c.CPU > 0 && f.RoundTrips > 0 && c.RoundTrips > 0 {
		b.ReportMetric(float64(f.CPUPerRoundTrip())/float64(c.CPUPerRoundTrip()), "cpu-ratio")
		b.ReportMetric(f.RoundTripsPerSec()/c.RoundTripsPerSec(), "rt/s-ratio")
	}
}

func TestLoadAgainstFerry(t *testing.T) {
	testutil.CheckLeaks(t)
	testutil.Deadline(t, 60*time.Second)
	srv, err := relay.New(relay.Config{
		ListenUDP: []string{"127.0.0.1:0"}, AuthSecrets: []string{"s"}, Realm: "bench",
		AllowPeers: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	l, err := Prepare(t.Context(), Config{Server: srv.UDPAddrs()[0].String(), Realm: "bench", Secret: "s", Allocations: 4, Window: 2, PID: os.Getpid()})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	r, err := l.Run(t.Context(), 300*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if r.RoundTrips == 0 || r.P50 <= 0 || r.P99 < r.P50 {
		t.Fatalf("result %+v", r)
	}
	l.Drain()
	r, err = l.RunCount(t.Context(), 100)
	if err != nil || r.RoundTrips < 100 {
		t.Fatalf("RunCount: %+v, %v", r, err)
	}
	t.Log(r)
}
