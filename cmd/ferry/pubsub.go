package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"time"
	"unicode/utf8"

	"github.com/ferrynet/ferry/sdk"
)

// `ferry pub` and `ferry sub`: the SDK's Topic.Publish and Topic.Subscribe
// (gossip over the topic's peers, found through the DHT).

const pubUsage = `usage: ferry pub --rendezvous URL --topic TOPIC [flags] MESSAGE|-

Join TOPIC (through the rendezvous server's DHT node: ferry-rendezvous
--dht), wait until at least --min-peers of its subscribers are gossip
neighbours, publish MESSAGE signed with this node's key, wait until it is
written to them and --linger more, then leave. With - instead of MESSAGE
every line read from standard input is one message (at most 4096 bytes).
Each message reaches every subscriber of the topic once; ferry sub prints
them.

Flags:
`

const subUsage = `usage: ferry sub --rendezvous URL --topic TOPIC [--json] [--count N] [--gap-wait D] [flags]

Join TOPIC (through the rendezvous server's DHT node: ferry-rendezvous
--dht) and print every message published on it from now on, each once, in
order per publisher, until interrupted (or --count messages). A message
missing for --gap-wait (3s) is skipped, never delivered out of order:
    ORIGIN SEQ DATA
--json prints one object per line instead:
    {"topic":..., "origin": PeerID, "seq": n, "hops": n, "data": "..."}
and "data_base64" (with "data" empty) when the data is not UTF-8 text.
The lines "ferry sub: N gossip neighbours" on standard error say how many
peers the node gossips with, each time that changes; --stats D adds the
node's gossip counters (JSON: drops by cause, duplicates, repairs) every D.

Flags:
`

// subMessage is one line of `ferry sub --json`.
type subMessage struct {
	Topic  string `json:"topic"`
	Origin string `json:"origin"`
	Seq    uint64 `json:"seq"`
	Hops   int    `json:"hops"`
	Data   string `json:"data"`
	Data64 []byte `json:"data_base64,omitempty"`
}

// joinForGossip starts n's discovery and joins topic.
func joinForGossip(ctx context.Context, n *sdk.Node, topic string) (*sdk.Topic, error) {
	if _, err := n.StartDiscovery(ctx, sdk.DiscoveryOptions{Refresh: time.Second}); err != nil {
		return nil, err
	}
	return n.Join(ctx, topic)
}

func cmdPub(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("ferry pub", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, pubUsage); fs.PrintDefaults() }
	var nf nodeFlags
	nf.register(fs)
	topic := fs.String("topic", "", "topic to publish on (required)")
	minPeers := fs.Int("min-peers", 1, "gossip neighbours to wait for before publishing")
	linger := fs.Duration("linger", 2*time.Second, "how long to stay after the last message is written")
	timeout := fs.Duration("timeout", time.Minute, "give up waiting for neighbours after this long")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if *topic == "" || fs.NArg() != 1 || *minPeers < 0 || *linger < 0 {
		fmt.Fprintln(stderr, "ferry pub: --topic TOPIC and one MESSAGE (or -) are required (ferry pub --help)")
		return 2
	}
	msg := fs.Arg(0)
	if msg != "-" && len(msg) > 4096 {
		fmt.Fprintf(stderr, "ferry pub: message of %d bytes, at most 4096\n", len(msg))
		return 2
	}
	n, err := nf.node(ctx)
	if err != nil {
		fmt.Fprintf(stderr, "ferry pub: %v\n", err)
		return 1
	}
	defer n.Close()
	top, err := joinForGossip(ctx, n, *topic)
	if err != nil {
		fmt.Fprintf(stderr, "ferry pub: %v\n", err)
		return 1
	}
	defer top.Close()
	// Start the gossip (no message yet) and wait for neighbours.
	sub, err := top.Subscribe()
	if err != nil {
		fmt.Fprintf(stderr, "ferry pub: %v\n", err)
		return 1
	}
	_ = sub.Close()
	wctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	if err := waitNeighbours(wctx, top, *minPeers); err != nil {
		fmt.Fprintf(stderr, "ferry pub: waiting for %d gossip neighbours on %q: %v\n", *minPeers, *topic, err)
		return 1
	}
	sent := 0
	publish := func(b []byte) error {
		if err := top.Publish(ctx, b); err != nil {
			return err
		}
		sent++
		return nil
	}
	if msg == "-" {
		sc := bufio.NewScanner(stdin)
		sc.Buffer(make([]byte, 0, 4096), 4096)
		for sc.Scan() {
			if err := publish(sc.Bytes()); err != nil {
				fmt.Fprintf(stderr, "ferry pub: %v\n", err)
				return 1
			}
		}
		if err := sc.Err(); err != nil {
			fmt.Fprintf(stderr, "ferry pub: reading standard input (lines of at most 4096 bytes): %v\n", err)
			return 1
		}
	} else if err := publish([]byte(msg)); err != nil {
		fmt.Fprintf(stderr, "ferry pub: %v\n", err)
		return 1
	}
	if err := top.Flush(wctx); err != nil {
		fmt.Fprintf(stderr, "ferry pub: flushing: %v\n", err)
		return 1
	}
	select {
	case <-time.After(*linger):
	case <-ctx.Done():
	}
	fmt.Fprintf(stdout, "published %d message(s) on %q to %d neighbour(s)\n", sent, *topic, len(top.GossipNeighbours()))
	return 0
}

// reportNeighbours writes a line to w each time top's count of gossip
// neighbours changes, until ctx ends.
// With stats > 0 it also writes the node's gossip counters that often.
func reportNeighbours(ctx context.Context, top *sdk.Topic, w io.Writer, n *sdk.Node, stats time.Duration) {
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	last := 0
	var lastStats time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			if stats > 0 && now.Sub(lastStats) >= stats {
				lastStats = now
				b, _ := json.Marshal(n.GossipMetrics())
				fmt.Fprintf(w, "ferry sub: stats %s\n", b)
			}
		}
		if nb := len(top.GossipNeighbours()); nb != last {
			last = nb
			fmt.Fprintf(w, "ferry sub: %d gossip neighbours on %q\n", nb, top.Name())
		}
	}
}

// waitNeighbours waits until top has at least want gossip neighbours.
func waitNeighbours(ctx context.Context, top *sdk.Topic, want int) error {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for len(top.GossipNeighbours()) < want {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
	return nil
}

func cmdSub(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("ferry sub", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, subUsage); fs.PrintDefaults() }
	var nf nodeFlags
	nf.register(fs)
	topic := fs.String("topic", "", "topic to subscribe to (required)")
	asJSON := fs.Bool("json", false, "print one JSON object per message")
	count := fs.Int("count", 0, "exit after this many messages (0: run until interrupted)")
	stats := fs.Duration("stats", 0, "print the node's gossip counters (JSON) to stderr this often (0: never)")
	gapWait := fs.Duration("gap-wait", 0, "hold a message this long for a missing earlier one of its publisher (0: the default, 3s); also holds up to 4096 messages per publisher")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if *topic == "" || fs.NArg() != 0 || *count < 0 || *gapWait < 0 || *stats < 0 {
		fmt.Fprintln(stderr, "ferry sub: --topic TOPIC is required, and no arguments (ferry sub --help)")
		return 2
	}
	n, err := nf.node(ctx)
	if err != nil {
		fmt.Fprintf(stderr, "ferry sub: %v\n", err)
		return 1
	}
	defer n.Close()
	if *gapWait != 0 {
		if err = n.SetGossipOptions(sdk.GossipOptions{GapWait: *gapWait, MaxHeld: 4096}); err != nil {
			fmt.Fprintf(stderr, "ferry sub: --gap-wait: %v\n", err)
			return 2
		}
	}
	top, err := joinForGossip(ctx, n, *topic)
	if err != nil {
		fmt.Fprintf(stderr, "ferry sub: %v\n", err)
		return 1
	}
	defer top.Close()
	sub, err := top.Subscribe()
	if err != nil {
		fmt.Fprintf(stderr, "ferry sub: %v\n", err)
		return 1
	}
	defer sub.Close()
	fmt.Fprintf(stderr, "ferry sub: %s subscribed to %q\n", n.PeerID(), *topic)
	mctx, mcancel := context.WithCancel(ctx)
	meshed := make(chan struct{})
	go func() {
		defer close(meshed)
		reportNeighbours(mctx, top, stderr, n, *stats)
	}()
	defer func() { mcancel(); <-meshed }()
	w := bufio.NewWriter(stdout)
	enc := json.NewEncoder(w)
	for got := 0; *count == 0 || got < *count; got++ {
		m, err := sub.Next(ctx)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, sdk.ErrClosed) {
				return 0 // interrupted
			}
			fmt.Fprintf(stderr, "ferry sub: %v\n", err)
			return 1
		}
		if *asJSON {
			o := subMessage{Topic: m.Topic, Origin: m.Origin.String(), Seq: m.Seq, Hops: m.Hops}
			if utf8.Valid(m.Data) {
				o.Data = string(m.Data)
			} else {
				o.Data64 = m.Data
			}
			err = enc.Encode(o)
		} else {
			_, err = fmt.Fprintf(w, "%s %d %s\n", m.Origin, m.Seq, m.Data)
		}
		if err == nil {
			err = w.Flush()
		}
		if err != nil {
			fmt.Fprintf(stderr, "ferry sub: %v\n", err)
			return 1
		}
	}
	return 0
}
