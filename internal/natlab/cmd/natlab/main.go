// Command natlab builds and removes NAT lab topologies by hand, for people
// who want to poke at a NAT with their own tools:
//
//	go run ./internal/natlab/cmd/natlab up --a symmetric --b port-restricted-cone
//	sudo ip netns exec natlab-cli-lab-a1 bash
//	go run ./internal/natlab/cmd/natlab down
//
// Run `natlab --help` for the flags.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/ferrynet/ferry/internal/natlab"
	"github.com/ferrynet/ferry/internal/nattype"
)

const usage = `natlab builds NAT topologies from network namespaces and nftables (root).

Usage:
  natlab up [flags]      build a lab (see flags below) and print its hosts
  natlab down [flags]    remove a lab built by "up"
  natlab sweep           remove labs left behind by test processes that died
  natlab list            list every lab namespace on this machine

up flags:
  --a TYPE, --b TYPE      NAT type of sites "a" and "b" (at least one of them);
                          TYPE is one of: none, full-cone, restricted-cone,
                          port-restricted-cone, symmetric, udp-blocked
  --hosts N               hosts per site (default 1)
  --hairpin               NATs hairpin (two hosts behind one NAT reach each other
                          through its public address)
  --delay D, --jitter D   one-way delay and jitter on each site's WAN link (e.g. 10ms)
  --loss P                packet loss on each WAN link, percent per direction
  --mapping-timeout D     idle UDP mapping lifetime (default: kernel, 30s/120s)
  --name NAME             lab name (default "lab"); namespaces are natlab-cli-NAME-*
  --foreground            stay in the foreground and remove the lab on Ctrl-C
                          (implied by --delay and --jitter: the delay stage is a
                          userspace program that lives in this process)
  -v                      log build steps

down flags:
  --name NAME             lab to remove (default "lab")

Exit codes: 0 done, 1 error, 2 usage error.
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run executes one command; ctx ends a foreground "up".
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, usage)
		return 0
	case "up":
		return up(ctx, args[1:], stdout, stderr)
	case "down":
		return down(args[1:], stdout, stderr)
	case "sweep":
		names, err := natlab.Sweep()
		return report(stdout, stderr, "removed", names, err)
	case "list":
		names, err := natlab.List()
		if err != nil {
			fmt.Fprintln(stderr, "natlab:", err)
			return 1
		}
		for _, n := range names {
			fmt.Fprintln(stdout, n)
		}
		return 0
	}
	fmt.Fprintf(stderr, "natlab: unknown command %q\n\n%s", args[0], usage)
	return 2
}

func newFlags(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("natlab "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, usage) }
	return fs
}

func labPrefix(name string) (string, error) {
	p := natlab.CLIPrefix + name + "-"
	if name == "" || strings.ContainsAny(name, " /") {
		return "", fmt.Errorf("bad lab name %q", name)
	}
	return p, nil
}

func up(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlags("up", stderr)
	a := fs.String("a", "", "NAT type of site a")
	b := fs.String("b", "", "NAT type of site b")
	hosts := fs.Int("hosts", 1, "hosts per site")
	hairpin := fs.Bool("hairpin", false, "NATs hairpin")
	delay := fs.Duration("delay", 0, "one-way WAN delay")
	jitter := fs.Duration("jitter", 0, "WAN jitter")
	loss := fs.Float64("loss", 0, "WAN loss, percent per direction")
	timeout := fs.Duration("mapping-timeout", 0, "UDP mapping lifetime")
	name := fs.String("name", "lab", "lab name")
	fg := fs.Bool("foreground", false, "stay in the foreground")
	verbose := fs.Bool("v", false, "log build steps")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "natlab up: unexpected arguments %v\n", fs.Args())
		return 2
	}
	prefix, err := labPrefix(*name)
	if err != nil {
		fmt.Fprintln(stderr, "natlab up:", err)
		return 2
	}
	link := natlab.Link{Delay: *delay, Jitter: *jitter, Loss: *loss}
	cfg := natlab.Config{Prefix: prefix}
	for _, s := range []struct{ name, typ string }{{"a", *a}, {"b", *b}} {
		if s.typ == "" {
			continue
		}
		ty, perr := nattype.Parse(s.typ)
		if perr != nil {
			fmt.Fprintln(stderr, "natlab up:", perr)
			return 2
		}
		cfg.Sites = append(cfg.Sites, natlab.SiteConfig{
			Name: s.name, NAT: ty, Hosts: *hosts, Hairpin: *hairpin && ty != nattype.None,
			MappingTimeout: *timeout, WAN: link,
		})
	}
	if len(cfg.Sites) == 0 {
		fmt.Fprintln(stderr, "natlab up: give at least --a TYPE")
		return 2
	}
	if err = cfg.Validate(); err != nil {
		fmt.Fprintln(stderr, "natlab up:", err)
		return 2
	}
	if *verbose {
		cfg.Logger = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	start := time.Now()
	lab, err := natlab.New(ctx, cfg)
	if err != nil {
		fmt.Fprintln(stderr, "natlab up:", err)
		return 1
	}
	printLab(stdout, lab, time.Since(start))
	if !*fg && !link.NeedsStage() {
		fmt.Fprintf(stdout, "\nRemove it with: natlab down --name %s\n", *name)
		return 0
	}
	fmt.Fprintln(stdout, "\nRunning in the foreground (delay stage); Ctrl-C removes the lab.")
	<-ctx.Done()
	if err := lab.Close(); err != nil {
		fmt.Fprintln(stderr, "natlab:", err)
		return 1
	}
	fmt.Fprintln(stdout, "lab removed")
	return 0
}

func printLab(w io.Writer, lab *natlab.Lab, took time.Duration) {
	fmt.Fprintf(w, "lab %s built in %v\n\n", strings.TrimSuffix(lab.Prefix(), "-"), took.Round(time.Millisecond))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "HOST\tROLE\tADDRESSES\tNAMESPACE")
	row := func(h *natlab.Host, role string) {
		var as []string
		for _, a := range h.Addrs() {
			as = append(as, a.String())
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", h.Name(), role, strings.Join(as, ", "), h.Namespace())
	}
	row(lab.Server(), "server (two public addresses, RFC 5780)")
	for _, s := range lab.Sites() {
		if s.Router != nil {
			c := s.Config()
			role := fmt.Sprintf("NAT %s", s.NAT())
			if c.Hairpin {
				role += ", hairpin"
			}
			row(s.Router, role)
		}
		for _, h := range s.Hosts {
			role := "host behind " + s.Router.Name()
			if s.Router == nil {
				role = "public host (no NAT)"
			}
			row(h, role)
		}
	}
	_ = tw.Flush()
	first := lab.Sites()[0].Host(0)
	fmt.Fprintf(w, "\nTry:\n  ip netns exec %s turnserver -n --listening-ip %s --listening-ip %s --no-tls --no-dtls --no-cli --log-file stdout &\n",
		lab.Server().Namespace(), natlab.ServerAddr, natlab.ServerAltAddr)
	fmt.Fprintf(w, "  ip netns exec %s turnutils_natdiscovery -m -f -L %s %s\n", first.Namespace(), first.Addr(), natlab.ServerAddr)
	fmt.Fprintf(w, "  go build -o /tmp/natprobe ./cmd/natprobe && ip netns exec %s /tmp/natprobe --server %s\n", first.Namespace(), natlab.ServerAddr)
}

func down(args []string, stdout, stderr io.Writer) int {
	fs := newFlags("down", stderr)
	name := fs.String("name", "lab", "lab name")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	prefix, err := labPrefix(*name)
	if err != nil {
		fmt.Fprintln(stderr, "natlab down:", err)
		return 2
	}
	names, err := natlab.Down(prefix)
	return report(stdout, stderr, "removed", names, err)
}

func report(stdout, stderr io.Writer, verb string, names []string, err error) int {
	for _, n := range names {
		fmt.Fprintf(stdout, "%s %s\n", verb, n)
	}
	if len(names) == 0 {
		fmt.Fprintln(stdout, "nothing to remove")
	}
	if err != nil {
		fmt.Fprintln(stderr, "natlab:", err)
		return 1
	}
	return 0
}
