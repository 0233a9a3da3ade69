// Command ferry-relay-bench measures ferry-relay against coturn on loopback:
// the same Go TURN client drives both, in alternating rounds, and it prints
// relayed round trips per second, round-trip times and each server's CPU time
// per relayed round trip, with the ferry/coturn ratios. `make bench-relay`
// runs it; see docs/BENCHMARKS-relay.md.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/ferrynet/ferry/internal/benchproc"
	"github.com/ferrynet/ferry/internal/relaybench"
)

func main() {
	ferry := flag.String("ferry", "bin/ferry-relay", "ferry-relay binary")
	coturn := flag.String("coturn", "turnserver", "coturn's turnserver binary")
	allocs := flag.Int("allocations", 32, "concurrent allocations")
	window := flag.Int("window", 8, "datagrams in flight per allocation")
	payload := flag.Int("payload", 1000, "bytes per datagram")
	round := flag.Duration("round", 5*time.Second, "length of one measured round")
	rounds := flag.Int("rounds", 3, "rounds per server (alternating)")
	threads := flag.Int("threads", 0, "UDP sockets for ferry-relay and relay threads for coturn; 0 means one per core")
	only := flag.String("only", "", "run only this server (ferry or coturn)")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	err := run(ctx, *ferry, *coturn, *allocs, *window, *payload, *round, *rounds, *threads, *only)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "ferry-relay-bench:", err)
		os.Exit(1)
	}
}

type target struct {
	name string
	srv  *relaybench.Server
	load *relaybench.Load
	res  []relaybench.Result
}

func run(ctx context.Context, ferryBin, coturnBin string, allocs, window, payload int, round time.Duration, rounds, threads int, only string) error {
	dir, err := os.MkdirTemp("", "ferry-relay-bench")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	secret := "bench-secret"
	var targets []*target
	defer func() {
		for _, t := range targets {
			if t.load != nil {
				t.load.Close()
			}
			_ = t.srv.Stop()
		}
	}()
	specs := []struct {
		name, bin string
		args      func(relaybench.Settings) []string
	}{
		{"coturn", coturnBin, func(s relaybench.Settings) []string { return relaybench.CoturnArgs(s, dir) }},
		{"ferry", ferryBin, relaybench.FerryArgs},
	}
	for i, sp := range specs {
		if only != "" && only != sp.name {
			continue
		}
		bin, err := exec.LookPath(sp.bin)
		if err != nil {
			return fmt.Errorf("%s: %w", sp.name, err)
		}
		port, err := benchproc.FreePort(ctx, "udp")
		if err != nil {
			return err
		}
		set := relaybench.Settings{Port: port, MinPort: 40000 + i*5000, MaxPort: 44999 + i*5000, Secret: secret, Realm: "bench", Threads: threads}
		addr := fmt.Sprintf("127.0.0.1:%d", port)
		srv, err := relaybench.Start(ctx, sp.name, bin, sp.args(set), addr, nil)
		if err != nil {
			return err
		}
		t := &target{name: sp.name, srv: srv}
		targets = append(targets, t)
		t.load, err = relaybench.Prepare(ctx, relaybench.Config{
			Server: addr, Realm: "bench", Secret: secret,
			Allocations: allocs, Window: window, Payload: payload, PID: srv.PID(),
		})
		if err != nil {
			return fmt.Errorf("%s: %w\n%s", sp.name, err, srv.Log())
		}
	}

	fmt.Printf("machine: %s, %d cores (GOMAXPROCS %d), %s, %s\n", benchproc.CPUModel(), runtime.NumCPU(), runtime.GOMAXPROCS(0), kernel(), runtime.Version())
	fmt.Printf("load: %d allocations x %d in flight, %d-byte payloads, UDP echo peer; %d rounds of %v per server, alternating\n",
		allocs, window, payload, rounds, round)
	for _, t := range targets {
		fmt.Printf("%-6s: %s\n", t.name, strings.Join(t.srv.Args, " "))
	}
	fmt.Println()
	for r := range rounds {
		for _, t := range targets {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			res, err := t.load.Run(ctx, round)
			if err != nil {
				return fmt.Errorf("%s: %w", t.name, err)
			}
			t.load.Drain()
			t.res = append(t.res, res)
			fmt.Printf("round %d %-6s %s\n", r+1, t.name, res)
		}
	}
	fmt.Println()
	sums := map[string]relaybench.Result{}
	for _, t := range targets {
		s := summarize(t.res)
		sums[t.name] = s
		fmt.Printf("total   %-6s %s\n", t.name, s)
	}
	f, c := sums["ferry"], sums["coturn"]
	if f.RoundTrips > 0 && c.RoundTrips > 0 {
		fmt.Printf("\nferry/coturn: throughput %.2fx, CPU per round trip %.2fx, p50 %.2fx, p99 %.2fx\n",
			f.RoundTripsPerSec()/c.RoundTripsPerSec(),
			float64(f.CPUPerRoundTrip())/float64(c.CPUPerRoundTrip()),
			float64(f.P50)/float64(c.P50), float64(f.P99)/float64(c.P99))
	}
	return nil
}

// summarize adds the rounds up; the percentiles are the rounds' medians.
func summarize(rs []relaybench.Result) relaybench.Result {
	var s relaybench.Result
	var p50, p99 []time.Duration
	for _, r := range rs {
		s.RoundTrips += r.RoundTrips
		s.Elapsed += r.Elapsed
		s.CPU += r.CPU
		p50 = append(p50, r.P50)
		p99 = append(p99, r.P99)
	}
	slices.Sort(p50)
	slices.Sort(p99)
	if len(rs) > 0 {
		s.P50, s.P99 = p50[len(p50)/2], p99[len(p99)/2]
	}
	return s
}

func kernel() string {
	b, err := os.ReadFile("/proc/sys/kernel/osrelease")
	if err != nil {
		return "linux"
	}
	return "linux " + strings.TrimSpace(string(b))
}
