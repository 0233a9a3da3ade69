package rvbench

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	ossignal "os/signal"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/ferrynet/ferry/internal/benchproc"
	"github.com/ferrynet/ferry/internal/testutil"
	"github.com/ferrynet/ferry/server/rendezvous"
	"github.com/ferrynet/ferry/signal"
)

// The servers measured by CPU or memory run in a child process (this test
// binary, re-executed with childEnv set), apart from the load generator.
const childEnv = "FERRY_RVBENCH_CHILD"

func TestMain(m *testing.M) {
	if mode := os.Getenv(childEnv); mode != "" {
		os.Exit(child(mode))
	}
	os.Exit(m.Run())
}

// child serves STUN ("stun") or signaling ("signal") on loopback, prints
// "READY addr", and runs until SIGTERM.
func child(mode string) int {
	cfg := rendezvous.Config{IPConnectRate: -1, MaxConnsPerIP: -1, MaxConns: -1, PeerRate: -1, IPLoginRate: -1, STUNRate: -1}
	switch mode {
	case "stun":
		c, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		cfg.STUNConns = []net.PacketConn{c}
	default:
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		cfg.Listener = ln
		cfg.ServerNames = []string{"127.0.0.1"}
	}
	s, err := rendezvous.New(cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if mode == "stun" {
		fmt.Println("READY", s.STUNAddrs()[0])
	} else {
		fmt.Println("READY", s.Addr())
	}
	ctx, stop := ossignal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	<-ctx.Done()
	stop()
	_ = s.Close()
	return 0
}

func startChild(b *testing.B, mode string) (*benchproc.Process, string) {
	b.Helper()
	self, err := os.Executable()
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p, line, err := benchproc.Start(ctx, benchproc.Command{
		Name: "child-" + mode, Path: self, Args: []string{"-test.run=^$"},
		Env: []string{childEnv + "=" + mode}, Ready: "READY ",
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(p.Stop)
	return p, strings.TrimPrefix(line, "READY ")
}

// BenchmarkSTUNVsCoturn answers b.N Binding requests with each of coturn
// and ferry's STUN server (each in a process of its own), driven by the
// same closed-loop client, and reports each server's CPU time per answer
// and their ratio (bar: ferry <= coturn). The figures mean something from a
// few thousand answers on; CI runs it once (-benchtime=1x) so it does not rot.
func BenchmarkSTUNVsCoturn(b *testing.B) {
	coturn := testutil.RequireBinary(b, "turnserver", "coturn")
	ferry, ferryAddr := startChild(b, "stun")
	port := freePort(b, "udp")
	dir := b.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cot, _, err := benchproc.Start(ctx, benchproc.Command{Name: "coturn", Path: coturn, Args: []string{
		"-n", "-S", "--listening-ip=127.0.0.1",
		"--listening-port=" + strconv.Itoa(port), "--no-tcp", "--no-tls", "--no-dtls", "--no-cli",
		"--no-rfc5780", "--no-software-attribute", "--pidfile=" + dir + "/pid", "--userdb=" + dir + "/db", "--log-file=stdout",
	}})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(cot.Stop)
	servers := []struct {
		name string
		p    *benchproc.Process
		addr netip.AddrPort
	}{
		{"coturn", cot, netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(port))},
		{"ferry", ferry, netip.MustParseAddrPort(ferryAddr)},
	}
	for _, s := range servers {
		if err := WaitSTUN(ctx, s.addr); err != nil {
			b.Fatalf("%s: %v\n%s", s.name, err, s.p.Output())
		}
	}
	cpu := map[string]float64{}
	b.ResetTimer()
	for _, s := range servers {
		res, err := STUNLoad{Server: s.addr}.Run(context.Background(), s.p.PID(), int64(b.N))
		if err != nil {
			b.Fatal(err)
		}
		cpu[s.name] = us(res.CPUPerResponse())
	}
	b.ReportMetric(cpu["ferry"], "ferry-cpu-µs/answer")
	b.ReportMetric(cpu["coturn"], "coturn-cpu-µs/answer")
	if cpu["coturn"] > 0 {
		b.ReportMetric(cpu["ferry"]/cpu["coturn"], "ferry/coturn")
	}
}

func us(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

func freePort(b *testing.B, network string) int {
	port, err := benchproc.FreePort(b.Context(), network)
	if err != nil {
		b.Fatal(err)
	}
	return port
}

// BenchmarkLoggedInPeers logs b.N peers in at a server in a child process
// and reports the server's resident memory per peer over ws:// (the bar,
// for wss at 20,000 peers, is <= 28 KiB). The figure means something from
// a few thousand peers on (make bench-rendezvous runs 20,000 from a
// separate process).
func BenchmarkLoggedInPeers(b *testing.B) {
	srv, addr := startChild(b, "signal")
	if b.N > 19000 {
		b.Skipf("%d peers exceed the open-file limit of this run", b.N)
	}
	time.Sleep(200 * time.Millisecond)
	rss0, err := benchproc.RSS(srv.PID())
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	peers, err := LoginPeers(context.Background(), "ws://"+addr, b.N, 8, 64, signal.WithInbox(1))
	if err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	defer ClosePeers(peers)
	time.Sleep(500 * time.Millisecond)
	rss1, err := benchproc.RSS(srv.PID())
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(rss1-rss0)/float64(b.N), "server-rss-bytes/peer")
}

// routeBench routes b.N offers between pairs of peers on the given URLs at
// up to rate messages per second, and reports latency percentiles.
func routeBench(b *testing.B, fromURL, toURL string) {
	ctx := context.Background()
	from, err := LoginPeers(ctx, fromURL, 10, 1, 10, signal.WithInbox(1024))
	if err != nil {
		b.Fatal(err)
	}
	defer ClosePeers(from)
	to, err := LoginPeers(ctx, toURL, 10, 1, 10, signal.WithInbox(1024))
	if err != nil {
		b.Fatal(err)
	}
	defer ClosePeers(to)
	b.ResetTimer()
	res, err := RouteLoad{From: from, To: to, Rate: 2000}.Run(ctx, b.N)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(res.Percentile(50))/1e6, "p50-ms")
	b.ReportMetric(float64(res.Percentile(99))/1e6, "p99-ms")
}

// BenchmarkRouteOneServer: offers and answers at 2,000 messages/s on one
// server (bar: p99 <= 5 ms).
func BenchmarkRouteOneServer(b *testing.B) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	s, err := rendezvous.New(rendezvous.Config{Listener: ln, ServerNames: []string{"127.0.0.1"}, PeerRate: -1})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	url := "ws://" + s.Addr().String()
	routeBench(b, url, url)
}

// BenchmarkRouteTwoReplicas: the same across two replicas sharing a real
// Redis (bar: p99 <= 15 ms).
func BenchmarkRouteTwoReplicas(b *testing.B) {
	bin := testutil.RequireBinary(b, "redis-server", "redis-server")
	port := freePort(b, "tcp")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	red, _, err := benchproc.Start(ctx, benchproc.Command{
		Name: "redis", Path: bin, Ready: "Ready to accept connections",
		Args: []string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", b.TempDir()},
	})
	if err != nil {
		b.Fatal(err)
	}
	defer red.Stop()
	var urls []string
	for i := range 2 {
		rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:" + strconv.Itoa(port)})
		defer rdb.Close()
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		s, err := rendezvous.New(rendezvous.Config{
			Listener: ln, ServerNames: []string{"127.0.0.1"}, PeerRate: -1,
			Redis: rdb, ReplicaID: "r" + strconv.Itoa(i+1),
		})
		if err != nil {
			b.Fatal(err)
		}
		defer s.Close()
		urls = append(urls, "ws://"+s.Addr().String())
	}
	routeBench(b, urls[0], urls[1])
}

// BenchmarkSTUNInProcess is the STUN server's cost per answer in this
// process (client and server together), for profiling.
func BenchmarkSTUNInProcess(b *testing.B) {
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	s, err := rendezvous.New(rendezvous.Config{STUNConns: []net.PacketConn{c}})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	b.ReportAllocs()
	b.ResetTimer()
	if _, err := (STUNLoad{Server: s.STUNAddrs()[0], Clients: 2, Window: 8}).Run(context.Background(), 0, int64(b.N)); err != nil {
		b.Fatal(err)
	}
}
