// Command gossipsim runs Ferry's gossip on a simulated network and prints
// what it measured: N nodes in one process over the DHT simulator's
// in-memory network in virtual time, with latency, loss and churn,
// deterministic from a seed. See gossip/README.md for what the figures
// mean.
//
//	go run ./gossip/cmd/gossipsim --nodes 1000 --messages 1000 --churn 0.2 --loss 0.01 --json
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

	"github.com/ferrynet/ferry/gossip/sim"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "gossipsim:", err)
		os.Exit(2)
	}
}

const usage = `Usage: gossipsim [flags]

gossipsim simulates a Ferry gossip topic in one process and prints what it
measured. Nodes join the topic one after another (every 5 ms of virtual
time); after 2 s, messages are published every 20 ms by random live nodes
while --churn replaces nodes. The run is deterministic from --seed
(heap_bytes_per_node aside). Progress goes to stderr, the result to stdout.

Output fields: nodes, messages, delivery_ratio, dup_per_delivery (MSG copies
received per delivery), hops_p50/p99, latency_ms_p50/p99, bytes_per_node
(wire bytes sent), and more (gossip/README.md).

Flags:
`

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("gossipsim", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, usage)
		fs.PrintDefaults()
	}
	var cfg sim.Config
	fs.IntVar(&cfg.Nodes, "nodes", 1000, "number of nodes")
	fs.IntVar(&cfg.Messages, "messages", 0, "number of messages (default: as many as nodes)")
	fs.Float64Var(&cfg.Churn, "churn", 0, "fraction of nodes replaced while messages are published, 0..1")
	fs.Float64Var(&cfg.Loss, "loss", 0, "probability that a frame is lost, 0..0.5")
	fs.Uint64Var(&cfg.Seed, "seed", 1, "random seed; the same seed gives the same run")
	fs.IntVar(&cfg.DataSize, "size", 256, "bytes of data per message")
	fs.DurationVar(&cfg.Interval, "interval", 20*time.Millisecond, "time between two messages (virtual)")
	asJSON := fs.Bool("json", false, "print one JSON object instead of a table")
	quiet := fs.Bool("quiet", false, "no progress on stderr")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if !*quiet {
		cfg.Progress = func(done, total int) { fmt.Fprintf(stderr, "\rpublished %d/%d", done, total) }
	}
	res, err := sim.Run(ctx, cfg)
	if !*quiet {
		fmt.Fprintln(stderr)
	}
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		return enc.Encode(res)
	}
	fmt.Fprintf(stdout, "nodes %d, messages %d, churn %.2f, loss %.3f, seed %d\n", res.Nodes, res.Messages, res.Churn, res.Loss, res.Seed)
	fmt.Fprintf(stdout, "delivery_ratio   %.6f (%d of %d)\n", res.DeliveryRatio, res.Deliveries, res.Expected)
	fmt.Fprintf(stdout, "dup_per_delivery %.3f\n", res.DupPerDelivery)
	fmt.Fprintf(stdout, "hops             p50 %.0f  p99 %.0f\n", res.HopsP50, res.HopsP99)
	fmt.Fprintf(stdout, "latency_ms       p50 %.0f  p99 %.0f\n", res.LatencyMsP50, res.LatencyMsP99)
	fmt.Fprintf(stdout, "bytes_per_node   %d (wire, sent)\n", res.BytesPerNode)
	fmt.Fprintf(stdout, "app duplicates %d, out of order %d, mesh degree p50 %.0f\n", res.AppDuplicates, res.OutOfOrder, res.MeshDegreeP50)
	return nil
}
