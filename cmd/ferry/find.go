package main

import (
	"context"
	"encoding/json"
	"errors"
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
	// A one-shot lookup: no reachability probe, never a DHT server.
	d, err := n.StartDiscovery(ctx, sdk.DiscoveryOptions{DHTMode: sdk.DHTClient})
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

// joinTopics starts the node's discovery, which publishes its peer record
// so that peers at other rendezvous servers can dial it by PeerID, and
// joins each topic (ferry listen --join). With no topics a server without
// a DHT node is no error: the record is not published, and a line says so.
func joinTopics(ctx context.Context, n *sdk.Node, hasRendezvous bool, topics []string, stderr io.Writer) error {
	if !hasRendezvous {
		if len(topics) > 0 {
			return errors.New("--join needs a rendezvous server (--rendezvous) that runs a DHT node")
		}
		return nil
	}
	if _, err := n.StartDiscovery(ctx, sdk.DiscoveryOptions{}); err != nil {
		if len(topics) > 0 {
			return err
		}
		fmt.Fprintf(stderr, "ferry listen: peer record not published (peers at other rendezvous servers cannot dial this one): %v\n", err)
		return nil
	}
	for _, t := range topics {
		if _, err := n.Join(ctx, t); err != nil {
			return err
		}
	}
	return nil
}
