package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/ferrynet/ferry/sdk"
)

// foundPeer is one line of `ferry find --json`.
type foundPeer struct {
	Peer       string   `json:"peer"`
	Rendezvous []string `json:"rendezvous"`
	// Direct says the record lists addresses (published on opt-in), so the
	// peer may be reachable directly.
	Direct bool `json:"direct"`
}

// cmdFind prints the peers announced under a topic, found through the DHT
// node of the rendezvous server (ferry-rendezvous --dht).
func cmdFind(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("ferry find", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var nf nodeFlags
	nf.register(fs)
	topic := fs.String("topic", "", "topic to look up (required)")
	asJSON := fs.Bool("json", false, "print one JSON object per peer")
	timeout := fs.Duration("timeout", 30*time.Second, "give up after this long")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *topic == "" || fs.NArg() != 0 {
		fmt.Fprintln(stderr, "ferry find: --topic TOPIC is required, and nothing else")
		return 2
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	n, err := nf.node(ctx)
	if err != nil {
		fmt.Fprintf(stderr, "ferry find: %v\n", err)
		return 1
	}
	defer n.Close()
	d, err := n.StartDiscovery(ctx, sdk.DiscoveryOptions{})
	if err != nil {
		fmt.Fprintf(stderr, "ferry find: %v\n", err)
		return 1
	}
	peers, err := d.Lookup(ctx, *topic)
	if err != nil {
		fmt.Fprintf(stderr, "ferry find: %v\n", err)
		return 1
	}
	enc := json.NewEncoder(stdout)
	for _, p := range peers {
		fp := foundPeer{Peer: p.ID.String(), Rendezvous: p.Rendezvous, Direct: len(p.Addrs) > 0}
		if *asJSON {
			if err := enc.Encode(fp); err != nil {
				return 1
			}
			continue
		}
		fmt.Fprintf(stdout, "%s %s direct=%v\n", fp.Peer, strings.Join(fp.Rendezvous, ","), fp.Direct)
	}
	return 0
}

// joinTopics starts the node's discovery and joins each topic (ferry listen
// --join); with no topics it does nothing.
func joinTopics(ctx context.Context, n *sdk.Node, topics []string) error {
	if len(topics) == 0 {
		return nil
	}
	if _, err := n.StartDiscovery(ctx, sdk.DiscoveryOptions{}); err != nil {
		return err
	}
	for _, t := range topics {
		if _, err := n.Join(ctx, t); err != nil {
			return err
		}
	}
	return nil
}
