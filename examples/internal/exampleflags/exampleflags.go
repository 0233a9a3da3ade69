// Package exampleflags holds the flags every example takes to make its
// Ferry node, -rendezvous, -key and -loopback, and turns them into the
// sdk.NodeOptions they ask for, so each example's main stays thin wiring.
package exampleflags

import (
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"

	"github.com/ferrynet/ferry/sdk"
)

// DefaultKeyUsage is the -key help text when Register is given none.
const DefaultKeyUsage = "identity key file, created on first use (default: a new identity each run)"

// Node is what the flags say about the node to make.
type Node struct {
	Rendezvous string // -rendezvous: the rendezvous server URL
	Key        string // -key: the identity key file, or "" for a new identity
	Loopback   bool   // -loopback: loopback addresses only
}

// Register defines -rendezvous, -key and -loopback on fs. keyUsage is the
// -key help text; "" means DefaultKeyUsage.
func Register(fs *flag.FlagSet, keyUsage string) *Node {
	if keyUsage == "" {
		keyUsage = DefaultKeyUsage
	}
	n := &Node{}
	fs.StringVar(&n.Rendezvous, "rendezvous", "", "rendezvous server URL (wss://host, or ws:// in labs)")
	fs.StringVar(&n.Key, "key", "", keyUsage)
	fs.BoolVar(&n.Loopback, "loopback", false, "use loopback addresses only (peers on one host)")
	return n
}

// Options returns the sdk.NodeOptions the flags ask for: the rendezvous,
// the identity file if -key is set, and loopback-only candidates with
// -loopback.
func (n *Node) Options() []sdk.NodeOption {
	opts := []sdk.NodeOption{sdk.WithRendezvous(n.Rendezvous)}
	if n.Key != "" {
		opts = append(opts, sdk.WithIdentityFile(n.Key))
	}
	if n.Loopback {
		opts = append(opts, sdk.WithLoopbackCandidates(),
			sdk.WithCandidateFilter(func(ip net.IP) bool { return ip.IsLoopback() }))
	}
	return opts
}

// Main is an example's main: it runs run with a context cancelled by
// Ctrl-C and, if run fails, prints "name: error" to stderr and exits 1.
func Main(name string, run func(ctx context.Context) error) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	err := run(ctx)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, name+":", err)
		os.Exit(1)
	}
}
