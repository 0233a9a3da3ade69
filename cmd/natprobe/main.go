// Command natprobe tells what the network it runs on allows: the NAT's
// mapping and filtering behaviour (RFC 5780), hairpinning, port
// preservation, ALGs, optionally the mapping lifetime, whether UDP is
// blocked and TURN is reachable over TCP/TLS, and what that means for
// Ferry. See README.md.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/ferrynet/ferry/internal/natprobe"
)

// Exit codes.
const (
	exitOK      = 0
	exitNetwork = 1
	exitUsage   = 2
)

type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("natprobe", flag.ContinueOnError)
	fs.SetOutput(stderr)
	server := fs.String("server", "", "STUN server `HOST[:PORT]` (required; port 3478 by default)")
	asJSON := fs.Bool("json", false, "print the result as JSON")
	var turns stringList
	fs.Var(&turns, "turn", "TURN server to check over TCP and TLS: `HOST[:PORT]`, turn:HOST[:PORT]?transport=tcp or turns:HOST[:PORT] (repeatable)")
	turnCA := fs.String("turn-ca", "", "PEM `FILE` of CA certificates for TURN over TLS (default: system roots)")
	lifetime := fs.Duration("lifetime", 0, "also estimate the mapping lifetime, waiting at most `D` (e.g. 60s; max 10m)")
	timeout := fs.Duration("timeout", 5*time.Second, "bound on each STUN transaction, retransmissions included")
	rto := fs.Duration("rto", 500*time.Millisecond, "initial STUN retransmission timeout")
	local := fs.String("local", "", "local `IP` to probe from (default: the one routed to the server)")
	verbose := fs.Bool("v", false, "show every test; log to stderr")
	gateway := fs.String("gateway", "auto", "router `IP` to ask whether it speaks UPnP IGD, NAT-PMP or PCP (nothing is mapped); "+
		"auto: the next hop of the route to the server; none: skip")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: natprobe --server HOST[:PORT] [flags]\n\n"+
			"natprobe runs the RFC 5780 NAT behaviour tests against a STUN server and\n"+
			"says what the network allows and what that means for Ferry.\n\nFlags:\n")
		fs.PrintDefaults()
		fmt.Fprintf(stderr, "\nExit codes: 0 done, 1 network error (server unreachable), 2 usage error.\n")
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	usage := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "natprobe: "+format+"\n\n", a...)
		fs.Usage()
		return exitUsage
	}
	if fs.NArg() > 0 {
		return usage("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	}
	if *server == "" {
		return usage("--server is required")
	}
	var dialer net.Dialer
	var lc net.ListenConfig
	cfg := natprobe.Config{
		Server:       *server,
		ListenPacket: lc.ListenPacket,
		Dial:         dialer.DialContext,
		TURN:         turns,
		RTO:          *rto,
		Timeout:      *timeout,
		Lifetime:     *lifetime,
	}
	if *local != "" {
		ip, err := netip.ParseAddr(*local)
		if err != nil {
			return usage("--local: %v", err)
		}
		cfg.LocalAddr = ip
	}
	switch *gateway {
	case "none":
	case "auto":
		cfg.AutoGateway = true
	default:
		ip, err := netip.ParseAddr(*gateway)
		if err != nil {
			return usage("--gateway: want an IP, auto or none: %v", err)
		}
		cfg.Gateway = ip
	}
	if *turnCA != "" {
		pem, err := os.ReadFile(*turnCA)
		if err != nil {
			return usage("--turn-ca: %v", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return usage("--turn-ca: no PEM certificates in %s", *turnCA)
		}
		cfg.TLSConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	if *verbose {
		cfg.Logger = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	if err := cfg.Validate(); err != nil {
		return usage("%v", err)
	}

	res, err := natprobe.Probe(ctx, cfg)
	if res != nil {
		if *asJSON {
			enc := json.NewEncoder(stdout)
			enc.SetIndent("", "  ")
			if werr := enc.Encode(res); werr != nil {
				fmt.Fprintln(stderr, "natprobe:", werr)
				return exitNetwork
			}
		} else if werr := natprobe.WriteText(stdout, res, *verbose); werr != nil {
			fmt.Fprintln(stderr, "natprobe:", werr)
			return exitNetwork
		}
	}
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, natprobe.ErrConfig):
		return usage("%v", err)
	default:
		fmt.Fprintln(stderr, "natprobe:", err)
		return exitNetwork
	}
}
