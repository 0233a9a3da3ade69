// Command dhtsim runs Ferry's DHT on a simulated network and prints what it
// measured: N nodes in one process over an in-memory network in virtual
// time, with latency, loss, churn and Sybil attackers, deterministic from a
// seed. See dht/README.md for what the figures mean and what they show.
//
//	go run ./dht/cmd/dhtsim --nodes 10000 --churn 0.3 --loss 0.01 --json
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"time"

	"github.com/ferrynet/ferry/dht"
	"github.com/ferrynet/ferry/dht/sim"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "dhtsim:", err)
		os.Exit(2)
	}
}

const usage = `Usage: dhtsim [flags]

dhtsim simulates a Ferry DHT network in one process and prints what it
measured. Nodes join one after another (every 20 ms of virtual time), look
up their own ID, refresh their buckets and publish their signed peer record.
Then lookups start every 20 ms, each from a random live node for the peer
record of another; meanwhile --churn replaces nodes and --sybil nodes lie.
The run is deterministic from --seed (bytes_per_node, a heap measurement,
aside). Progress goes to stderr, the result to stdout.

Output fields: nodes, lookups, success_rate (lookups that obtained a valid
record of their target), hops_p50/p95 (hop of the answer with the record),
msgs_per_lookup_p50/p95 (requests a lookup sent), latency_ms_p50/p95
(virtual time to the record), bytes_per_node (heap per node after joining),
churn, sybil, loss, seed, k, alpha, beta, paths, table_size_p50,
messages_total, virtual_seconds.

Flags:
`

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("dhtsim", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, usage)
		fs.PrintDefaults()
	}
	var cfg sim.Config
	fs.IntVar(&cfg.Nodes, "nodes", 1000, "number of nodes")
	fs.IntVar(&cfg.Lookups, "lookups", 0, "number of lookups (default: as many as nodes)")
	fs.Float64Var(&cfg.Churn, "churn", 0, "fraction of nodes replaced during the lookup phase, 0..1")
	fs.Float64Var(&cfg.Loss, "loss", 0, "probability that a message is lost, 0..0.5")
	fs.Float64Var(&cfg.Sybil, "sybil", 0, "fraction of nodes run by an attacker who answers lookups with only its own nodes, 0..0.5")
	fs.Uint64Var(&cfg.Seed, "seed", 1, "random seed; the same seed gives the same run")
	fs.IntVar(&cfg.Alpha, "alpha", dht.DefaultAlpha, "requests in flight per lookup path")
	fs.IntVar(&cfg.Paths, "paths", dht.DefaultPaths, "disjoint lookup paths (S/Kademlia); more resist Sybils at a cost in messages")
	asJSON := fs.Bool("json", false, "print one JSON object instead of a table")
	quiet := fs.Bool("quiet", false, "no progress on stderr")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	start := time.Now()
	if !*quiet {
		last := time.Time{}
		cfg.Progress = func(phase string, done, total int) {
			if time.Since(last) < 2*time.Second && done < total {
				return
			}
			last = time.Now()
			fmt.Fprintf(stderr, "dhtsim: %s %d/%d (%.0fs)\n", phase, done, total, time.Since(start).Seconds())
		}
	}
	res, err := sim.Run(ctx, cfg)
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		return enc.Encode(res)
	}
	fmt.Fprintf(stdout, "nodes %d, lookups %d, churn %.2f, loss %.3f, sybil %.2f, seed %d, paths %d\n",
		res.Nodes, res.Lookups, res.Churn, res.Loss, res.Sybil, res.Seed, res.Paths)
	fmt.Fprintf(stdout, "success rate     %.4f\n", res.SuccessRate)
	fmt.Fprintf(stdout, "hops             p50 %.0f  p95 %.0f\n", res.HopsP50, res.HopsP95)
	fmt.Fprintf(stdout, "msgs per lookup  p50 %.0f  p95 %.0f\n", res.MsgsPerLookupP50, res.MsgsPerLookupP95)
	fmt.Fprintf(stdout, "latency          p50 %.0f ms  p95 %.0f ms\n", res.LatencyMsP50, res.LatencyMsP95)
	fmt.Fprintf(stdout, "bytes per node   %d\n", res.BytesPerNode)
	fmt.Fprintf(stdout, "table size p50   %.0f\n", res.TableSizeP50)
	fmt.Fprintf(stdout, "messages total   %d over %.0f s virtual (%.1f s real)\n", res.MessagesTotal, res.VirtualSeconds, time.Since(start).Seconds())
	return nil
}
