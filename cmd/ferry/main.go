// Command ferry is the command-line face of the Ferry SDK.
//
//	ferry id [--identity FILE]                  print this node's PeerID, creating its key
//	ferry listen --rendezvous URL               accept connections, answer pings
//	ferry ping --rendezvous URL PEERID          connect to a peer, report the path and RTT
//	ferry pub|sub --topic T ...                 publish on / subscribe to a topic (gossip)
//	ferry demo [--json] [--nat-a T --nat-b T]   the whole stack on one machine
//
// Run `ferry help` for details.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/ferrynet/ferry/internal/demo"
	"github.com/ferrynet/ferry/internal/nattype"
	"github.com/ferrynet/ferry/sdk"
)

const usage = `ferry: connect programs across NATs, directly when possible.

Usage:
  ferry id [--identity FILE]
      Print this node's PeerID. The Ed25519 key is created (mode 0600) on
      first use. Default file: %s

  ferry listen [--rendezvous URL]... [--rendezvous-ca FILE] [--identity FILE]
               [--lan auto|on|off] [--join TOPIC]...
      Log in to the rendezvous server, print this node's PeerID, then accept
      connections and answer pings until interrupted. --rendezvous repeats
      (here and in every command): the servers are tried in order and the
      first that answers is used. With no --rendezvous
      (or with --lan on) the node announces itself on the local network by
      mDNS and finds the peers there.
      When the rendezvous server runs a DHT node (ferry-rendezvous --dht)
      the node publishes its peer record there, so peers logged in at other
      rendezvous servers can ping it by PeerID. Each --join announces the
      node under TOPIC in the DHT (needs such a server).

  ferry ping [--rendezvous URL]... [--rendezvous-ca FILE] [--identity FILE]
             [--lan auto|on|off] [--count N] [--relay auto|never|always] [--json] PEERID
      Connect to PEERID through the rendezvous (directly when the NATs
      allow, through a relay otherwise), send N pings, and report the path,
      the candidate types, the connect time and the RTT. A PEERID that this
      rendezvous server does not know is looked up in the DHT and reached
      through the rendezvous server its record names. --json prints one
      object: peer, path, local_candidate, remote_candidate, connect_ms,
      rtt_ms.

  ferry find --rendezvous URL [--rendezvous-ca FILE] [--identity FILE]
             --topic TOPIC [--json] [--timeout D]
      Look TOPIC up in the DHT, through the rendezvous server's DHT node
      (ferry-rendezvous --dht), and print each peer announced there: PeerID,
      rendezvous URLs, and whether its record lists addresses (direct).

  ferry pub --rendezvous URL --topic TOPIC [--min-peers N] [--linger D] MESSAGE|-
      Publish MESSAGE (or each line of standard input, with -) on TOPIC:
      signed with this node's key and gossiped to every subscriber once.
      Waits for N gossip neighbours first (default 1). See ferry pub --help.

  ferry sub --rendezvous URL --topic TOPIC [--json] [--count N]
      Print every message published on TOPIC from now on, once each, in
      order per publisher: ORIGIN SEQ DATA, or one JSON object per line.
      Both need a rendezvous server run with ferry-rendezvous --dht.

  ferry demo [--json] [--relay auto|never|always] [--nat-a TYPE --nat-b TYPE]
      Start a rendezvous server and a relay with embedded defaults, plus two
      peers; connect them by PeerID, exchange 1000 messages each way and a
      10 MiB stream, and print the path, RTT and throughput. Exits 0 on
      success. On loopback it needs no root and no network.
      With --nat-a and --nat-b (root only) each peer sits behind a real
      kernel NAT in a network namespace: watch a symmetric NAT fall back to
      the relay. Types: none, full-cone, restricted-cone,
      port-restricted-cone, symmetric, udp-blocked.

  ferry help
      Show this text.

Exit codes: 0 success, 1 failure, 2 usage error.
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintf(stderr, usage, defaultIdentity())
		return 2
	}
	switch args[0] {
	case "id":
		return cmdID(args[1:], stdout, stderr)
	case "demo":
		return cmdDemo(ctx, args[1:], stdout, stderr)
	case "listen":
		return cmdListen(ctx, args[1:], stdout, stderr)
	case "ping":
		return cmdPing(ctx, args[1:], stdout, stderr)
	case "find":
		return cmdFind(ctx, args[1:], stdout, stderr)
	case "pub":
		return cmdPub(ctx, args[1:], os.Stdin, stdout, stderr)
	case "sub":
		return cmdSub(ctx, args[1:], stdout, stderr)
	case "help", "-h", "--help", "-help":
		fmt.Fprintf(stdout, usage, defaultIdentity())
		return 0
	default:
		fmt.Fprintf(stderr, "ferry: unknown command %q\n\n", args[0])
		fmt.Fprintf(stderr, usage, defaultIdentity())
		return 2
	}
}

func defaultIdentity() string {
	dir, err := os.UserConfigDir()
	if err != nil {
		return "identity.key"
	}
	return filepath.Join(dir, "ferry", "identity.key")
}

func cmdID(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("ferry id", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("identity", defaultIdentity(), "identity key file (created when missing)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() != 0 {
		fmt.Fprintf(stderr, "ferry id: unexpected arguments %v\n", fs.Args())
		return 2
	}
	id, err := sdk.LoadIdentity(*path)
	if err != nil {
		fmt.Fprintf(stderr, "ferry id: %v\n", err)
		return 1
	}
	fmt.Fprintln(stdout, id.PeerID())
	return 0
}

func cmdDemo(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("ferry demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	asJSON := fs.Bool("json", false, "print the report as one JSON object")
	timeout := fs.Duration("timeout", 2*time.Minute, "give up after this long")
	natA := fs.String("nat-a", "", "NAT type of peer A, in the NAT lab (root only)")
	natB := fs.String("nat-b", "", "NAT type of peer B, in the NAT lab (root only)")
	relayPolicy := fs.String("relay", "auto", "relay policy of both peers: auto, never or always")
	verbose := fs.Bool("v", false, "log what the servers and peers do (to stderr)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() != 0 {
		fmt.Fprintf(stderr, "ferry demo: unexpected arguments %v\n", fs.Args())
		return 2
	}
	o := demo.Options{}
	var err error
	if o.Relay, err = sdk.ParseRelayPolicy(*relayPolicy); err != nil {
		fmt.Fprintf(stderr, "ferry demo: %v\n", err)
		return 2
	}
	if (*natA == "") != (*natB == "") {
		fmt.Fprintln(stderr, "ferry demo: give both --nat-a and --nat-b, or neither")
		return 2
	}
	if *natA != "" {
		if o.NATA, err = nattype.Parse(*natA); err != nil {
			fmt.Fprintf(stderr, "ferry demo: --nat-a: %v\n", err)
			return 2
		}
		if o.NATB, err = nattype.Parse(*natB); err != nil {
			fmt.Fprintf(stderr, "ferry demo: --nat-b: %v\n", err)
			return 2
		}
	}
	if *verbose {
		o.Logger = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	rep, err := demo.Run(ctx, o)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			err = fmt.Errorf("timed out after %v: %w", *timeout, err)
		}
		fmt.Fprintf(stderr, "ferry demo: %v\n", err)
		return 1
	}
	if *asJSON {
		return printJSON(stdout, stderr, rep)
	}
	w := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintf(w, "peer A\t%s%s\n", rep.PeerA, natNote(rep.NATA))
	fmt.Fprintf(w, "peer B\t%s%s\n", rep.PeerB, natNote(rep.NATB))
	fmt.Fprintf(w, "path\t%s: %s %s -> %s %s (QUIC + TLS 1.3, keys verified)\n", rep.Path, rep.LocalCandidate, rep.LocalAddr, rep.RemoteCandidate, rep.RemoteAddr)
	if rep.Relay != "" {
		fmt.Fprintf(w, "relay\t%s\n", rep.Relay)
	}
	fmt.Fprintf(w, "connect\t%.1f ms\n", rep.ConnectMs)
	fmt.Fprintf(w, "rtt\t%.3f ms\n", rep.RTTMs)
	fmt.Fprintf(w, "messages\t%d sent, %d received in order\n", rep.MessagesSent, rep.MessagesReceived)
	fmt.Fprintf(w, "stream\t%d bytes at %.1f MB/s, sha256 %s...\n", rep.StreamBytes, rep.StreamMBps, rep.StreamSHA256[:16])
	if err := w.Flush(); err != nil {
		return 1
	}
	fmt.Fprintln(stdout, "ok")
	return 0
}

func natNote(t string) string {
	if t == "" {
		return ""
	}
	return "  (behind a " + t + " NAT)"
}

func printJSON(stdout, stderr io.Writer, v any) int {
	if err := json.NewEncoder(stdout).Encode(v); err != nil {
		fmt.Fprintf(stderr, "ferry: %v\n", err)
		return 1
	}
	return 0
}
