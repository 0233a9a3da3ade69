package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"sort"
	"time"

	"github.com/ferrynet/ferry/internal/demo"
	"github.com/ferrynet/ferry/sdk"
)

// nodeFlags are the flags every command that logs in shares.
type nodeFlags struct {
	rendezvous          []string // in order: the first that answers, the rest fallbacks
	ca, identity, relay string
	lan                 string // see lan.go
	loopback            bool
}

func (f *nodeFlags) register(fs *flag.FlagSet) {
	fs.Func("rendezvous", "rendezvous server URL, wss://host[:port]; repeat it for fallbacks, tried in order until one answers (none: peers on the local network only)", func(v string) error {
		if v == "" {
			return errors.New("empty URL")
		}
		f.rendezvous = append(f.rendezvous, v)
		return nil
	})
	fs.StringVar(&f.ca, "rendezvous-ca", "", "PEM file of extra CA certificates to trust for the rendezvous server")
	fs.StringVar(&f.identity, "identity", defaultIdentity(), "identity key file (created when missing)")
	fs.StringVar(&f.relay, "relay", "auto", "when to use a relay: auto, never or always")
	fs.BoolVar(&f.loopback, "loopback-candidates", false, "use only loopback addresses for direct paths (peers on one host, tests)")
	registerLAN(fs, &f.lan)
}

func (f *nodeFlags) node(ctx context.Context) (*sdk.Node, error) {
	lanOpts, err := lanOptions(f.lan)
	if err != nil {
		return nil, err
	}
	policy, err := sdk.ParseRelayPolicy(f.relay)
	if err != nil {
		return nil, err
	}
	opts := append([]sdk.NodeOption{sdk.WithIdentityFile(f.identity), sdk.WithRelayPolicy(policy)}, lanOpts...)
	if len(f.rendezvous) > 0 {
		opts = append(opts, sdk.WithRendezvous(f.rendezvous...))
	}
	if f.ca != "" {
		opts = append(opts, sdk.WithRendezvousCA(f.ca))
	}
	if f.loopback {
		opts = append(opts, sdk.WithLoopbackCandidates(), sdk.WithCandidateFilter(func(ip net.IP) bool { return ip.IsLoopback() }))
	}
	return sdk.New(ctx, opts...)
}

func cmdListen(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("ferry listen", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var nf nodeFlags
	nf.register(fs)
	var topics []string
	fs.Func("join", "announce this node under TOPIC in the DHT (repeatable; needs ferry-rendezvous --dht)", func(v string) error {
		topics = append(topics, v)
		return nil
	})
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() != 0 {
		fmt.Fprintln(stderr, "ferry listen: flags only (see ferry help)")
		return 2
	}
	n, err := nf.node(ctx)
	if err != nil {
		fmt.Fprintf(stderr, "ferry listen: %v\n", err)
		return 1
	}
	defer n.Close()
	if err := joinTopics(ctx, n, len(nf.rendezvous) > 0, topics, stderr); err != nil {
		fmt.Fprintf(stderr, "ferry listen: %v\n", err)
		return 1
	}
	fmt.Fprintln(stdout, n.PeerID())
	for {
		c, err := n.Accept(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return 0 // interrupted
			}
			fmt.Fprintf(stderr, "ferry listen: %v\n", err)
			return 1
		}
		p := c.Path()
		fmt.Fprintf(stderr, "ferry listen: %s connected over %s (%s -> %s)\n", c.RemotePeer().Short(), p.Kind(), p.LocalCandidate, p.RemoteCandidate)
		go echo(ctx, c)
	}
}

// echo answers every message (ping) on c with the same bytes until c ends.
func echo(ctx context.Context, c *sdk.Conn) {
	defer c.Close()
	for {
		m, err := c.Recv(ctx)
		if err != nil {
			return
		}
		if err := c.Send(ctx, m); err != nil {
			return
		}
	}
}

type pingReport struct {
	Peer string `json:"peer"`
	demo.PathReport
	RTTMs float64 `json:"rtt_ms"`
	Pings int     `json:"pings"`
}

func cmdPing(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("ferry ping", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var nf nodeFlags
	nf.register(fs)
	count := fs.Int("count", 5, "pings to send")
	asJSON := fs.Bool("json", false, "print one JSON object")
	timeout := fs.Duration("timeout", 30*time.Second, "give up after this long")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() != 1 || *count < 1 {
		fmt.Fprintln(stderr, "usage: ferry ping [--rendezvous URL] [flags] PEERID (see ferry help)")
		return 2
	}
	peer, err := sdk.ParsePeerID(fs.Arg(0))
	if err != nil {
		fmt.Fprintf(stderr, "ferry ping: %v\n", err)
		return 2
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	n, err := nf.node(ctx)
	if err != nil {
		fmt.Fprintf(stderr, "ferry ping: %v\n", err)
		return 1
	}
	defer n.Close()
	c, err := n.Dial(ctx, peer)
	if errors.Is(err, sdk.ErrPeerNotFound) && len(nf.rendezvous) > 0 {
		// Not at this rendezvous server: look its record up in the DHT
		// and reach it through its own server.
		if _, derr := n.StartDiscovery(ctx, sdk.DiscoveryOptions{DHTMode: sdk.DHTClient}); derr == nil {
			c, err = n.Dial(ctx, peer)
		}
	}
	if err != nil {
		fmt.Fprintf(stderr, "ferry ping: %v\n", err)
		return 1
	}
	defer c.Close()
	var rtts []time.Duration
	for i := range *count {
		start := time.Now()
		if err := c.Send(ctx, fmt.Appendf(nil, "ping %d", i)); err != nil {
			fmt.Fprintf(stderr, "ferry ping: %v\n", err)
			return 1
		}
		if _, err := c.Recv(ctx); err != nil {
			fmt.Fprintf(stderr, "ferry ping: %v\n", err)
			return 1
		}
		rtts = append(rtts, time.Since(start))
		if !*asJSON {
			fmt.Fprintf(stdout, "ping %d: %.3f ms\n", i, ms(rtts[i]))
		}
	}
	sort.Slice(rtts, func(i, j int) bool { return rtts[i] < rtts[j] })
	rep := pingReport{Peer: peer.String(), PathReport: demo.NewPathReport(c.Path()), RTTMs: ms(rtts[len(rtts)/2]), Pings: len(rtts)}
	if *asJSON {
		return printJSON(stdout, stderr, rep)
	}
	fmt.Fprintf(stdout, "%s: %s path, %s -> %s (%s -> %s), connect %.1f ms, median rtt %.3f ms\n",
		peer.Short(), rep.Path, rep.LocalCandidate, rep.RemoteCandidate, rep.LocalAddr, rep.RemoteAddr, rep.ConnectMs, rep.RTTMs)
	return 0
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
