package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferrynet/ferry/identity"
	"github.com/ferrynet/ferry/internal/natlab"
	"github.com/ferrynet/ferry/internal/natlab/labworld"
	"github.com/ferrynet/ferry/internal/natlab/natlabtest"
	"github.com/ferrynet/ferry/internal/nattype"
	"github.com/ferrynet/ferry/internal/testutil"
	"github.com/ferrynet/ferry/sdk"
	"github.com/ferrynet/ferry/server/rendezvous"
	"github.com/ferrynet/ferry/signal"
)

// The second rendezvous server listens on the lab server's second address
// (the relay's): signaling on its own port, STUN beside the relay's.
const (
	rv2SignalPort = 8081
	rv2STUNPort   = 3479
)

// dhtWorld is a lab with two rendezvous servers on the public segment that
// run DHT nodes and know each other only through DHTBootstrap: the world's
// (with the relay) and a second one, with no relay.
type dhtWorld struct {
	*labworld.World
	url1, url2 string
}

func newDHTWorld(t testing.TB, lab *natlab.Lab) *dhtWorld {
	t.Helper()
	srv := lab.Server()
	addrs := srv.Addrs()
	url2 := "ws://" + netip.AddrPortFrom(addrs[1], rv2SignalPort).String() + "/v1/signal"
	key1, err := identity.Generate()
	if err != nil {
		t.Fatal(err)
	}
	key2, err := identity.Generate()
	if err != nil {
		t.Fatal(err)
	}
	// The servers' logins to each other leave from the server host's
	// namespace, like everything else they send.
	dialer := signal.WithDialer(srv.DialContext)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	w, err := labworld.New(ctx, lab, labLogger(), labworld.WithRendezvousConfig(func(c *rendezvous.Config) {
		c.DHTIdentity = key1
		c.DHTBootstrap = []string{url2}
		c.DHTSignalOptions = []signal.Option{dialer}
	}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := w.Close(); err != nil {
			t.Errorf("world close: %v", err)
		}
	})
	ln, err := srv.Listen(ctx, "tcp4", netip.AddrPortFrom(addrs[1], rv2SignalPort).String())
	if err != nil {
		t.Fatal(err)
	}
	stun, err := srv.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(addrs[1], rv2STUNPort)))
	if err != nil {
		_ = ln.Close()
		t.Fatal(err)
	}
	rv2, err := rendezvous.New(rendezvous.Config{
		Listener:         ln,
		STUNConns:        []net.PacketConn{stun},
		ServerNames:      []string{addrs[1].String()},
		DHTIdentity:      key2,
		DHTBootstrap:     []string{w.SignalURL()},
		DHTSignalOptions: []signal.Option{dialer},
		Logger:           w.Log.With("server", "rendezvous2"),
	})
	if err != nil {
		_ = ln.Close()
		_ = stun.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rv2.Close() })
	return &dhtWorld{World: w, url1: w.SignalURL(), url2: url2}
}

// labLogger is the FERRY_E2E_DEBUG logger (as newWorld's), or nil.
func labLogger() *slog.Logger {
	switch os.Getenv("FERRY_E2E_DEBUG") {
	case "":
		return nil
	case "info":
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// node starts a node on h logged in at url, with discovery started (retried
// until the servers have joined each other).
func (w *dhtWorld) node(t testing.TB, ctx context.Context, h *natlab.Host, url string, o sdk.DiscoveryOptions) (*sdk.Node, *sdk.Discovery) {
	t.Helper()
	n, err := h.Net()
	if err != nil {
		t.Fatal(err)
	}
	id, err := sdk.GenerateIdentity()
	if err != nil {
		t.Fatal(err)
	}
	node, err := sdk.New(ctx, sdk.WithIdentity(id), sdk.WithRendezvous(url), sdk.WithNetwork(n, h.DialContext),
		sdk.WithLogger(w.Log.With("host", h.Name())))
	if err != nil {
		t.Fatalf("%v: %v", h, err)
	}
	t.Cleanup(func() { _ = node.Close() })
	for {
		d, err := node.StartDiscovery(ctx, o)
		if err == nil {
			return node, d
		}
		if ctx.Err() != nil {
			t.Fatalf("%v: start discovery: %v", h, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestDiscoveryDialAcrossRendezvous: peer A behind one NAT logged in at the
// first rendezvous server, peer B behind another at the second; B dials A
// by PeerID alone and gets the path the NAT pair allows (a direct pair and
// a relayed one: the relay is the first server's, whose credentials B gets
// by logging in there).
func TestDiscoveryDialAcrossRendezvous(t *testing.T) {
	testutil.CheckLeaks(t)
	defer testutil.Deadline(t, 4*time.Minute)()
	pairs := []struct{ a, b nattype.Type }{
		{nattype.PortRestrictedCone, nattype.RestrictedCone},
		{nattype.Symmetric, nattype.PortRestrictedCone},
	}
	var sites []natlab.SiteConfig
	for i, p := range pairs {
		sites = append(sites,
			natlab.SiteConfig{Name: fmt.Sprintf("a%d", i), NAT: p.a},
			natlab.SiteConfig{Name: fmt.Sprintf("b%d", i), NAT: p.b})
	}
	lab := natlabtest.New(t, natlab.Config{Sites: sites})
	w := newDHTWorld(t, lab)
	for i, p := range pairs {
		t.Run(fmt.Sprintf("%s-%s", p.a.Short(), p.b.Short()), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
			defer cancel()
			ha, hb := lab.Site(fmt.Sprintf("a%d", i)).Host(0), lab.Site(fmt.Sprintf("b%d", i)).Host(0)
			took, path := dialAcross(t, ctx, w, ha, hb)
			want := nattype.ExpectedPath(p.a, p.b)
			t.Logf("B (%s, at rendezvous 2) dialed A (%s, at rendezvous 1) in %v: %s path", p.b, p.a, took, path)
			if path != want {
				t.Errorf("path %s, want %s", path, want)
			}
		})
	}
}

// dialAcross starts A on ha at the first server and B on hb at the second,
// waits until B finds A's record, and times B's Dial of A by PeerID until
// A received the first message. It returns that time and the path.
func dialAcross(t testing.TB, ctx context.Context, w *dhtWorld, ha, hb *natlab.Host) (time.Duration, nattype.Path) {
	t.Helper()
	na, _ := w.node(t, ctx, ha, w.url1, sdk.DiscoveryOptions{})
	nb, db := w.node(t, ctx, hb, w.url2, sdk.DiscoveryOptions{})
	defer na.Close()
	defer nb.Close()
	// The record is published once A's discovery started; B's server may
	// still be joining the DHT.
	testutil.WaitFor(t, time.Minute, "B to find A's record", func() bool {
		lctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		_, err := db.FindPeer(lctx, na.PeerID())
		return err == nil
	})
	got := make(chan *sdk.Conn, 1)
	go func() {
		c, err := na.Accept(ctx)
		if err != nil {
			t.Errorf("accept: %v", err)
			got <- nil
			return
		}
		if _, err = c.Recv(ctx); err != nil {
			t.Errorf("recv: %v", err)
		}
		got <- c
	}()
	start := time.Now()
	cb, err := nb.Dial(ctx, na.PeerID())
	if err != nil {
		t.Fatalf("B dials A across rendezvous servers: %v", err)
	}
	defer cb.Close()
	if err := cb.Send(ctx, []byte("first")); err != nil {
		t.Fatal(err)
	}
	ca := <-got
	took := time.Since(start)
	if ca == nil {
		t.FailNow()
	}
	defer ca.Close()
	if ca.RemotePeer() != nb.PeerID() {
		t.Fatalf("A accepted %s, want B", ca.RemotePeer().Short())
	}
	if nb.ForeignRendezvous() != 1 {
		t.Errorf("B is logged in at %d foreign servers, want 1", nb.ForeignRendezvous())
	}
	// A relayed start may be renominated to a direct pair.
	testutil.Poll(3*time.Second, func() bool { return classify(cb.Path(), ca.Path()) == nattype.Direct })
	return took, classify(cb.Path(), ca.Path())
}

// TestDiscoveryTopicLab: 12 nodes behind six different NATs, half at each
// of two rendezvous servers, join one topic; every node finds every other,
// and `ferry find` run on a lab host lists them all. The time from the
// Joins' start until the last node has found the last peer is logged (a figure, not a bound: the
// deadline is generous).
func TestDiscoveryTopicLab(t *testing.T) {
	testutil.CheckLeaks(t)
	defer testutil.Deadline(t, 4*time.Minute)()
	ferry := buildFerry(t)
	lab := natlabtest.New(t, natlab.Config{Sites: discoverySites(false)})
	w := newDHTWorld(t, lab)
	nodes := topicNodes(t, w, lab, time.Second)
	took := topicRound(t, nodes, "lab-topic")
	t.Logf("%d nodes behind %d NATs at 2 rendezvous servers found each other %v after they started joining (refresh 1 s)", len(nodes), len(lab.Sites()), took)

	// ferry find, in a host's namespace, at the second server.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	h := lab.Site(nattype.FullCone.Short()).Host(0)
	out, err := h.Run(ctx, ferry, "find", "--rendezvous", w.url2, "--identity", filepath.Join(t.TempDir(), "find.key"),
		"--topic", "lab-topic", "--json", "--timeout", "45s")
	if err != nil {
		t.Fatalf("ferry find: %v", err)
	}
	found := map[string]bool{}
	for line := range strings.Lines(out) {
		var fp struct {
			Peer       string   `json:"peer"`
			Rendezvous []string `json:"rendezvous"`
		}
		if json.Unmarshal([]byte(line), &fp) != nil {
			continue // a log line
		}
		found[fp.Peer] = len(fp.Rendezvous) == 1
	}
	for _, n := range nodes {
		if ok, seen := found[n.PeerID().String()]; !seen || !ok {
			t.Errorf("ferry find did not list %s with its rendezvous server:\n%s", n.PeerID().Short(), out)
		}
	}
}

// topicNodes starts a node on every host of lab, alternating between the
// two servers, with discovery started.
func topicNodes(t testing.TB, w *dhtWorld, lab *natlab.Lab, refresh time.Duration) []*sdk.Node {
	t.Helper()
	var hosts []*natlab.Host
	for _, s := range lab.Sites() {
		hosts = append(hosts, s.Hosts...)
	}
	return topicNodesOn(t, w, hosts, refresh)
}

// topicNodesOn starts a node on each host, alternating between the two
// servers.
func topicNodesOn(t testing.TB, w *dhtWorld, hosts []*natlab.Host, refresh time.Duration) []*sdk.Node {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var nodes []*sdk.Node
	for i, h := range hosts {
		url := w.url1
		if i%2 == 1 {
			url = w.url2
		}
		n, _ := w.node(t, ctx, h, url, sdk.DiscoveryOptions{Refresh: refresh})
		nodes = append(nodes, n)
	}
	return nodes
}

// topicRound has every node join topic at once and read Topic.Peers, and
// returns the time from the Joins' start until every node found every
// other.
func topicRound(t testing.TB, nodes []*sdk.Node, topic string) time.Duration {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		lastFind time.Time
		missing  = map[int]int{}
	)
	start := time.Now()
	for i, n := range nodes {
		wg.Go(func() {
			tp, err := n.Join(ctx, topic)
			if err != nil {
				t.Errorf("node %d: join: %v", i, err)
				return
			}
			defer tp.Close()
			found := 0
			for range tp.Peers(ctx) {
				if found++; found == len(nodes)-1 {
					break
				}
			}
			mu.Lock()
			if now := time.Now(); now.After(lastFind) {
				lastFind = now
			}
			if found < len(nodes)-1 {
				missing[i] = len(nodes) - 1 - found
			}
			mu.Unlock()
		})
	}
	wg.Wait()
	if len(missing) > 0 {
		t.Fatalf("nodes that did not find every other (node: peers missing): %v", missing)
	}
	return lastFind.Sub(start)
}

// discoverySites are the lab sites of the topic test and benchmark: two
// hosts behind each of the six NAT types.
func discoverySites(delay bool) []natlab.SiteConfig {
	var sites []natlab.SiteConfig
	for _, ty := range nattype.All() {
		sites = append(sites, natlab.SiteConfig{Name: ty.Short(), NAT: ty, Hosts: 2, DelayStage: delay})
	}
	return sites
}

// BenchmarkDiscovery measures, in the NAT lab at 20 ms and 200 ms RTT
// between a site and the servers' segment (a quarter each way on each WAN
// link, as BenchmarkConnectTime), two things:
//   - dial-across: the time from B's Dial(A's PeerID) until A received the
//     first message, when A (port-restricted cone) is logged in at the
//     first rendezvous server and B (restricted cone) at the second: own
//     server's "not found", DHT lookup, login at A's server, ICE, QUIC.
//     Fresh nodes each iteration; B has found A's record before the clock
//     starts only in that A's discovery has published it.
//   - topic-12: the time from 12 nodes (two behind each NAT type, half at
//     each server) starting to join a fresh topic at once until every node
//     has found the other 11, with the default refresh (5 s).
//
// Run: go test -run '^$' -bench=Discovery -benchtime=20x ./internal/e2e/
// (root; figures in docs/BENCHMARKS.md).
func BenchmarkDiscovery(b *testing.B) {
	testutil.RequireRoot(b)
	sites := append(discoverySites(true),
		natlab.SiteConfig{Name: "dial" + nattype.PortRestrictedCone.Short(), NAT: nattype.PortRestrictedCone, DelayStage: true},
		natlab.SiteConfig{Name: "dial" + nattype.RestrictedCone.Short(), NAT: nattype.RestrictedCone, DelayStage: true})
	lab, err := natlab.New(context.Background(), natlab.Config{Sites: sites})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = lab.Close() })
	w := newDHTWorld(b, lab)
	topicLab := lab.Sites()[:len(nattype.All())]
	for _, rtt := range benchRTTs {
		b.Run(fmt.Sprintf("rtt=%dms", rtt.Milliseconds()), func(b *testing.B) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			for _, s := range lab.Sites() {
				if err := s.SetWAN(ctx, natlab.Link{Delay: rtt / 4}); err != nil {
					b.Fatal(err)
				}
			}
			b.Run("dial-across", func(b *testing.B) {
				ha := lab.Site("dial" + nattype.PortRestrictedCone.Short()).Host(0)
				hb := lab.Site("dial" + nattype.RestrictedCone.Short()).Host(0)
				var took []time.Duration
				for b.Loop() {
					ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
					d, path := dialAcross(b, ctx, w, ha, hb)
					cancel()
					if path != nattype.Direct {
						b.Fatalf("path %s, want direct", path)
					}
					took = append(took, d)
				}
				reportPercentiles(b, took, rtt)
			})
			b.Run("topic-12", func(b *testing.B) {
				var hosts []*natlab.Host
				for _, s := range topicLab {
					hosts = append(hosts, s.Hosts...)
				}
				var (
					nodes []*sdk.Node
					took  []time.Duration
				)
				i := 0
				for b.Loop() {
					// A store keeps at most dht.DefaultMaxPerSource (16)
					// announcements per signer, and a left topic's stay
					// until they expire: fresh nodes every 12 rounds.
					if i%12 == 0 {
						for _, n := range nodes {
							_ = n.Close()
						}
						nodes = topicNodesOn(b, w, hosts, 0)
					}
					i++
					took = append(took, topicRound(b, nodes, fmt.Sprintf("bench-%d-%d", rtt.Milliseconds(), i)))
				}
				reportPercentiles(b, took, rtt)
			})
		})
	}
}

func reportPercentiles(b *testing.B, ds []time.Duration, rtt time.Duration) {
	p50, p95 := percentiles(ds)
	b.ReportMetric(float64(p50.Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(p95.Microseconds())/1000, "p95-ms")
	b.ReportMetric(float64(p50)/float64(rtt), "p50-RTTs")
}

// buildFerry builds the ferry command into a temporary directory.
func buildFerry(t testing.TB) string {
	t.Helper()
	testutil.RequireRoot(t) // the lab needs it; no point building without
	bin := filepath.Join(t.TempDir(), "ferry")
	if out, err := exec.Command("go", "build", "-o", bin, "../../cmd/ferry").CombinedOutput(); err != nil {
		t.Fatalf("go build ferry: %v\n%s", err, out)
	}
	return bin
}
