// Command ferry-rendezvous-bench measures ferry-rendezvous on loopback
// (`make bench-rendezvous`): STUN CPU per answer against coturn, signaling
// capacity (resident memory per logged-in peer, with the peers in a separate
// load-generator process), and offer/answer routing latency on one server
// and across two replicas through Redis. See docs/BENCHMARKS.md.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"os"
	ossignal "os/signal"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/ferrynet/ferry/internal/benchproc"
	"github.com/ferrynet/ferry/internal/rvbench"
	"github.com/ferrynet/ferry/signal"
)

func main() {
	ctx, stop := ossignal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if len(os.Args) > 1 && os.Args[1] == "loadgen" {
		if err := loadgen(ctx, os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "loadgen:", err)
			os.Exit(1)
		}
		return
	}
	if err := bench(ctx, os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "ferry-rendezvous-bench:", err)
		os.Exit(1)
	}
}

type options struct {
	ferry, coturn, redis string
	mode                 string
	stunRound            time.Duration
	stunRounds           int
	stunClients          int
	stunWindow           int
	peers, sources       int
	replicas             int
	tls                  bool
	settle               time.Duration
	routeRate            float64
	routeDuration        time.Duration
	routePairs           int
}

func bench(ctx context.Context, args []string) error {
	var o options
	fs := flag.NewFlagSet("ferry-rendezvous-bench", flag.ContinueOnError)
	fs.StringVar(&o.ferry, "ferry", "bin/ferry-rendezvous", "the ferry-rendezvous binary")
	fs.StringVar(&o.coturn, "coturn", "turnserver", "coturn's turnserver binary")
	fs.StringVar(&o.redis, "redis-server", "redis-server", "the redis-server binary")
	fs.StringVar(&o.mode, "mode", "all", "stun, capacity, route or all")
	fs.DurationVar(&o.stunRound, "stun-round", 5*time.Second, "length of one STUN round")
	fs.IntVar(&o.stunRounds, "stun-rounds", 3, "STUN rounds per server, alternating")
	fs.IntVar(&o.stunClients, "stun-clients", 4, "STUN client sockets")
	fs.IntVar(&o.stunWindow, "stun-window", 16, "STUN requests in flight per socket")
	fs.IntVar(&o.peers, "peers", 20000, "peers for the capacity run")
	fs.IntVar(&o.sources, "sources", 8, "source addresses 127.0.0.2.. for the capacity run")
	fs.IntVar(&o.replicas, "replicas", 1, "capacity run: spread the peers over this many replicas sharing a redis-server, a load generator each")
	fs.BoolVar(&o.tls, "tls", false, "capacity run over wss:// (self-signed certificate) instead of ws://")
	fs.DurationVar(&o.settle, "settle", 3*time.Second, "capacity run: how long after the last login the servers' memory is read "+
		"(right after a login storm their heaps still hold its garbage; the peers ping every 30 s)")
	fs.Float64Var(&o.routeRate, "route-rate", 2000, "routed messages per second (offers and answers)")
	fs.DurationVar(&o.routeDuration, "route-duration", 10*time.Second, "length of a routing run")
	fs.IntVar(&o.routePairs, "route-pairs", 50, "sender/receiver pairs for the routing runs")
	fs.Uint64Var(&fdLimit, "fd-limit", 0, "pass --fd-limit to the servers (raising the hard limit needs CAP_SYS_RESOURCE); 0: leave the limit alone")
	if err := fs.Parse(args); err != nil {
		return err
	}
	fmt.Printf("machine: %s, %d CPUs (GOMAXPROCS %d), %s\n", benchproc.CPUModel(), runtime.NumCPU(), runtime.GOMAXPROCS(0), runtime.Version())
	run := func(name string, f func(context.Context, options) error) error {
		if o.mode != "all" && o.mode != name {
			return nil
		}
		fmt.Printf("\n== %s ==\n", name)
		return f(ctx, o)
	}
	return errors.Join(run("stun", benchSTUN), run("capacity", benchCapacity), run("route", benchRoute))
}

// benchSTUN alternates rounds between coturn and ferry-rendezvous, driven by
// the same closed-loop client, and compares server CPU per answer.
func benchSTUN(ctx context.Context, o options) error {
	cp, err := benchproc.FreePort(ctx, "udp")
	if err != nil {
		return err
	}
	fp, err := benchproc.FreePort(ctx, "udp")
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "rvbench-coturn")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	coturnArgs := []string{
		"-n", "-S", "--listening-ip=127.0.0.1", "--listening-port=" + strconv.Itoa(cp),
		"--no-tcp", "--no-tls", "--no-dtls", "--no-cli", "--no-rfc5780", "--no-software-attribute",
		"--pidfile=" + dir + "/turnserver.pid", "--userdb=" + dir + "/turndb", "--log-file=stdout", "--simple-log",
	}
	ferryArgs := []string{"--listen-https=", "--listen-stun=127.0.0.1:" + strconv.Itoa(fp), "--stun-rate=-1", "--metrics-addr=", "--log-level=warn"}
	fmt.Printf("coturn: %s %s\nferry:  %s %s\n", o.coturn, strings.Join(coturnArgs, " "), o.ferry, strings.Join(ferryArgs, " "))
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	cot, _, err := benchproc.Start(sctx, benchproc.Command{Name: "coturn", Path: o.coturn, Args: coturnArgs})
	if err != nil {
		return err
	}
	defer cot.Stop()
	fer, _, err := benchproc.Start(sctx, benchproc.Command{Name: "ferry", Path: o.ferry, Args: ferryArgs})
	if err != nil {
		return err
	}
	defer fer.Stop()
	servers := []struct {
		name string
		p    *benchproc.Process
		addr netip.AddrPort
	}{
		{"coturn", cot, netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(cp))},
		{"ferry", fer, netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(fp))},
	}
	for _, s := range servers {
		if err := rvbench.WaitSTUN(sctx, s.addr); err != nil {
			return fmt.Errorf("%s does not answer STUN: %w\n%s", s.name, err, s.p.Output())
		}
	}
	fmt.Printf("load: %d sockets x %d requests in flight (Binding + FINGERPRINT), closed loop, %v rounds\n\n",
		o.stunClients, o.stunWindow, o.stunRound)
	fmt.Println("| round | server | answers/s | server CPU per answer |")
	fmt.Println("|---|---|---|---|")
	total := map[string]rvbench.STUNResult{}
	for r := range o.stunRounds + 1 {
		for _, s := range servers {
			load := rvbench.STUNLoad{Server: s.addr, Clients: o.stunClients, Window: o.stunWindow}
			d := o.stunRound
			if r == 0 {
				d = time.Second // warm-up
			}
			rctx, rcancel := context.WithTimeout(ctx, d)
			res, err := load.Run(rctx, s.p.PID(), 0)
			rcancel()
			if err != nil {
				return fmt.Errorf("%s: %w", s.name, err)
			}
			if r == 0 {
				continue
			}
			t := total[s.name]
			t.Responses += res.Responses
			t.Elapsed += res.Elapsed
			t.CPU += res.CPU
			total[s.name] = t
			fmt.Printf("| %d | %s | %.0f | %.2f µs |\n", r, s.name, res.PerSecond(), us(res.CPUPerResponse()))
		}
	}
	c, f := total["coturn"], total["ferry"]
	fmt.Printf("| total | coturn | %.0f | %.2f µs |\n", c.PerSecond(), us(c.CPUPerResponse()))
	fmt.Printf("| total | ferry | %.0f | %.2f µs |\n", f.PerSecond(), us(f.CPUPerResponse()))
	fmt.Printf("\nferry/coturn CPU per answer: %.2fx (bar: <= 1.0x)\n", us(f.CPUPerResponse())/us(c.CPUPerResponse()))
	return nil
}

func us(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

// fdLimit, when set, is passed to the servers as --fd-limit.
var fdLimit uint64

func startFerry(ctx context.Context, bin string, extra ...string) (*benchproc.Process, string, string, error) {
	return startFerryTLS(ctx, bin, "", extra...)
}

// startFerryTLS starts a server; with certOut, over TLS with a self-signed
// certificate written there. It returns the process, the signaling URL and
// the metrics URL.
func startFerryTLS(ctx context.Context, bin, certOut string, extra ...string) (*benchproc.Process, string, string, error) {
	port, err := benchproc.FreePort(ctx, "tcp")
	if err != nil {
		return nil, "", "", err
	}
	mport, err := benchproc.FreePort(ctx, "tcp")
	if err != nil {
		return nil, "", "", err
	}
	args := []string{"--listen-https=", "--listen-http=127.0.0.1:" + strconv.Itoa(port)}
	scheme := "ws"
	if certOut != "" {
		args = []string{"--listen-https=127.0.0.1:" + strconv.Itoa(port), "--tls-self-signed", "--tls-self-signed-out=" + certOut}
		scheme = "wss"
	}
	args = append(args, "--listen-stun=",
		"--metrics-addr=127.0.0.1:"+strconv.Itoa(mport), "--server-name=127.0.0.1",
		"--ip-connect-rate=-1", "--max-conns-per-ip=-1", "--max-conns=-1", "--peer-rate=-1", "--ip-login-rate=-1",
		"--log-level=info")
	args = append(args, extra...)
	if fdLimit > 0 {
		args = append(args, "--fd-limit="+strconv.FormatUint(fdLimit, 10))
	}
	p, _, err := benchproc.Start(ctx, benchproc.Command{Name: "ferry-rendezvous", Path: bin, Args: args, Ready: "ops endpoints"})
	if err != nil {
		return nil, "", "", err
	}
	return p, scheme + "://127.0.0.1:" + strconv.Itoa(port) + "/v1/signal", "http://127.0.0.1:" + strconv.Itoa(mport) + "/metrics", nil
}

// scrape returns the value of the first sample of metric name.
func scrape(ctx context.Context, url, name string) float64 {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, name+" ") {
			v, _ := strconv.ParseFloat(strings.TrimPrefix(line, name+" "), 64)
			return v
		}
	}
	return -1
}

// benchCapacity logs many peers in from separate load-generator processes
// and reports the servers' resident memory per peer. With o.replicas > 1 the
// peers are spread over that many replicas sharing one redis-server (one
// load generator each), which is how 20,000 peers fit under an open-file
// limit of 20,000 per process.
func benchCapacity(ctx context.Context, o options) error {
	n := max(o.replicas, 1)
	per := o.peers / n
	if _, hard, err := benchproc.FDLimit(); err == nil && uint64(per)+100 > max(hard, fdLimit) {
		capped := int(max(hard, fdLimit)) - 100
		fmt.Printf("NOTE: %d peers per server need about %d open files in the server and in the load generator, and the hard "+
			"limit here is %d (raising it needs CAP_SYS_RESOURCE: ulimit -Hn, or --fd-limit as root; or use --replicas): "+
			"running %d peers per server\n", per, per+100, hard, capped)
		per = capped
	}
	o.peers = per * n
	var certFile string
	if o.tls {
		dir, err := os.MkdirTemp("", "rvbench-tls")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		certFile = dir + "/rv.pem"
	}
	var red *benchproc.Process
	var extra []string
	if n > 1 {
		var redisURL string
		var stop func()
		var err error
		red, redisURL, stop, err = startRedis(ctx, o.redis)
		if err != nil {
			return err
		}
		defer stop()
		extra = []string{"--redis=" + redisURL}
	}
	type replica struct {
		srv                                     *benchproc.Process
		url, metrics                            string
		rss0, rss1                              int64
		heap0, heap1, stack0, stack1, goroutine float64
		line                                    string
	}
	rs := make([]*replica, n)
	for i := range rs {
		args := extra
		if n > 1 {
			args = append(slices.Clone(extra), "--replica-id=r"+strconv.Itoa(i+1))
		}
		cert := certFile
		if cert != "" && i > 0 {
			cert = certFile + strconv.Itoa(i)
		}
		srv, url, metrics, err := startFerryTLS(ctx, o.ferry, cert, args...)
		if err != nil {
			return err
		}
		defer srv.Stop()
		rs[i] = &replica{srv: srv, url: url, metrics: metrics}
	}
	time.Sleep(time.Second)
	var redis0 int64
	if red != nil {
		var err error
		if redis0, err = benchproc.RSS(red.PID()); err != nil {
			return err
		}
	}
	for _, r := range rs {
		var err error
		if r.rss0, err = benchproc.RSS(r.srv.PID()); err != nil {
			return err
		}
		r.heap0 = scrape(ctx, r.metrics, "go_memstats_heap_inuse_bytes")
		r.stack0 = scrape(ctx, r.metrics, "go_memstats_stack_inuse_bytes")
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	start := time.Now()
	lctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	for i, r := range rs {
		cert := certFile
		if cert != "" && i > 0 {
			cert = certFile + strconv.Itoa(i)
		}
		gen, line, gerr := benchproc.Start(lctx, benchproc.Command{
			Name: "loadgen", Path: self, Ready: "LOGGED-IN",
			Args: []string{"loadgen", "--url", r.url, "--peers", strconv.Itoa(per), "--sources", strconv.Itoa(o.sources), "--ca", cert},
		})
		if gerr != nil {
			return gerr
		}
		defer gen.Stop()
		r.line = line
	}
	loginTime := time.Since(start)
	time.Sleep(o.settle)
	var online, rssDelta float64
	for _, r := range rs {
		if r.rss1, err = benchproc.RSS(r.srv.PID()); err != nil {
			return err
		}
		online += scrape(ctx, r.metrics, "ferry_rendezvous_peers_online")
		r.heap1 = scrape(ctx, r.metrics, "go_memstats_heap_inuse_bytes")
		r.stack1 = scrape(ctx, r.metrics, "go_memstats_stack_inuse_bytes")
		r.goroutine = scrape(ctx, r.metrics, "go_goroutines")
		rssDelta += float64(r.rss1 - r.rss0)
	}
	scheme := strings.SplitN(rs[0].url, ":", 2)[0] + "://"
	fmt.Printf("%d peers over %d source addresses, %s, %d server process(es), %v to log in, memory read %v after\n", o.peers, o.sources, scheme, n,
		loginTime.Round(time.Millisecond), o.settle)
	kib := func(b float64) float64 { return b / float64(per) / 1024 }
	for i, r := range rs {
		cpu, _ := benchproc.CPU(r.srv.PID())
		fmt.Printf("server %d: loadgen %s; %.0f goroutines, %v CPU so far\n", i+1, r.line, r.goroutine, cpu)
		fmt.Printf("server %d RSS: %.1f MiB before, %.1f MiB with the peers: %.1f KiB per peer\n",
			i+1, float64(r.rss0)/(1<<20), float64(r.rss1)/(1<<20), kib(float64(r.rss1-r.rss0)))
		fmt.Printf("server %d Go heap in use: %.1f MiB before, %.1f MiB with the peers: %.1f KiB per peer\n",
			i+1, r.heap0/(1<<20), r.heap1/(1<<20), kib(r.heap1-r.heap0))
		fmt.Printf("server %d goroutine stacks: %.1f MiB before, %.1f MiB with the peers: %.1f KiB per peer\n",
			i+1, r.stack0/(1<<20), r.stack1/(1<<20), kib(r.stack1-r.stack0))
	}
	fmt.Printf("peers online (all servers): %.0f\n", online)
	fmt.Printf("server RSS per peer, all servers: %.1f KiB (bar: <= 28 KiB at 20,000 peers)\n", rssDelta/float64(o.peers)/1024)
	if red != nil {
		redis1, err := benchproc.RSS(red.PID())
		if err != nil {
			return err
		}
		fmt.Printf("redis-server RSS: %.1f MiB before, %.1f MiB with the peers: %.2f KiB per peer (the registry)\n",
			float64(redis0)/(1<<20), float64(redis1)/(1<<20), float64(redis1-redis0)/float64(o.peers)/1024)
	}
	if int(online) != o.peers {
		return fmt.Errorf("%v peers online, want %d", online, o.peers)
	}
	return nil
}

// startRedis starts a redis-server on a free loopback port, without
// persistence, and returns it with its URL and a function that stops it and
// removes its directory.
func startRedis(ctx context.Context, bin string) (*benchproc.Process, string, func(), error) {
	port, err := benchproc.FreePort(ctx, "tcp")
	if err != nil {
		return nil, "", nil, err
	}
	dir, err := os.MkdirTemp("", "rvbench-redis")
	if err != nil {
		return nil, "", nil, err
	}
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	red, _, err := benchproc.Start(rctx, benchproc.Command{
		Name: "redis", Path: bin, Ready: "Ready to accept connections",
		Args: []string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", dir},
	})
	if err != nil {
		os.RemoveAll(dir)
		return nil, "", nil, err
	}
	return red, "redis://127.0.0.1:" + strconv.Itoa(port) + "/0", func() { red.Stop(); os.RemoveAll(dir) }, nil
}

// loadgen is the capacity run's load generator, a process of its own: it
// logs the peers in, says LOGGED-IN, and holds them until stdin closes.
func loadgen(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("loadgen", flag.ContinueOnError)
	url := fs.String("url", "", "server URL")
	n := fs.Int("peers", 1000, "peers")
	sources := fs.Int("sources", 8, "source addresses")
	ca := fs.String("ca", "", "CA file for wss://")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := benchproc.RaiseFDLimit(uint64(*n) + 64); err != nil {
		return err
	}
	start := time.Now()
	opts := []signal.Option{signal.WithInbox(1)}
	if *ca != "" {
		opts = append(opts, signal.WithCAFile(*ca))
	}
	peers, err := rvbench.LoginPeers(ctx, *url, *n, *sources, 128, opts...)
	if err != nil {
		return err
	}
	fmt.Printf("LOGGED-IN %d peers in %v\n", len(peers), time.Since(start).Round(time.Millisecond))
	_, _ = io.Copy(io.Discard, os.Stdin)
	rvbench.ClosePeers(peers)
	return nil
}

// benchRoute measures offer/answer latency at a fixed rate: on one server,
// then across two replicas sharing a Redis.
func benchRoute(ctx context.Context, o options) error {
	n := int(o.routeRate * o.routeDuration.Seconds() / 2)
	report := func(name string, r rvbench.RouteResult) {
		fmt.Printf("| %s | %d | %.0f/s | %.2f ms | %.2f ms | %.2f ms | %.2f ms |\n", name, len(r.Latencies),
			float64(r.Sent)/r.Elapsed.Seconds(), ms(r.Percentile(50)), ms(r.Percentile(99)), ms(r.Percentile(99.9)), ms(r.Latencies[len(r.Latencies)-1]))
	}
	pairs := func(fromURL, toURL string) ([]*signal.Client, []*signal.Client, error) {
		from, err := rvbench.LoginPeers(ctx, fromURL, o.routePairs, 1, 16, signal.WithInbox(1024))
		if err != nil {
			return nil, nil, err
		}
		to, err := rvbench.LoginPeers(ctx, toURL, o.routePairs, 1, 16, signal.WithInbox(1024))
		if err != nil {
			rvbench.ClosePeers(from)
			return nil, nil, err
		}
		return from, to, nil
	}
	fmt.Printf("load: %d pairs, offers answered at once, %.0f messages/s in total for %v\n\n", o.routePairs, o.routeRate, o.routeDuration)
	fmt.Println("| setup | messages | rate | p50 | p99 | p99.9 | max |")
	fmt.Println("|---|---|---|---|---|---|---|")

	srv, url, _, err := startFerry(ctx, o.ferry)
	if err != nil {
		return err
	}
	from, to, err := pairs(url, url)
	if err != nil {
		srv.Stop()
		return err
	}
	res, err := rvbench.RouteLoad{From: from, To: to, Rate: o.routeRate}.Run(ctx, n)
	rvbench.ClosePeers(from)
	rvbench.ClosePeers(to)
	srv.Stop()
	if err != nil {
		return err
	}
	report("one server", res)

	_, redisURL, stopRedis, err := startRedis(ctx, o.redis)
	if err != nil {
		return err
	}
	defer stopRedis()
	r1, url1, _, err := startFerry(ctx, o.ferry, "--redis="+redisURL, "--replica-id=r1")
	if err != nil {
		return err
	}
	defer r1.Stop()
	r2, url2, _, err := startFerry(ctx, o.ferry, "--redis="+redisURL, "--replica-id=r2")
	if err != nil {
		return err
	}
	defer r2.Stop()
	from, to, err = pairs(url1, url2)
	if err != nil {
		return err
	}
	res, err = rvbench.RouteLoad{From: from, To: to, Rate: o.routeRate}.Run(ctx, n)
	rvbench.ClosePeers(from)
	rvbench.ClosePeers(to)
	if err != nil {
		return err
	}
	report("two replicas via Redis", res)
	fmt.Println("\nbars: p99 <= 5 ms on one server, <= 15 ms across two replicas")
	return nil
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
