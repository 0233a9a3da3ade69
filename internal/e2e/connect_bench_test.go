package e2e

import (
	"context"
	"fmt"
	"sort"
	"testing"
	"time"

	"github.com/ferrynet/ferry/internal/natlab"
	"github.com/ferrynet/ferry/internal/natlab/labworld"
	"github.com/ferrynet/ferry/internal/nattype"
	"github.com/ferrynet/ferry/internal/testutil"
	"github.com/ferrynet/ferry/sdk"
)

// benchRTTs are the round-trip times between two lab sites in the
// benchmark: a quarter of each on each site's WAN link, each way (two WAN
// links lie between two sites).
var benchRTTs = []time.Duration{20 * time.Millisecond, 200 * time.Millisecond}

// BenchmarkConnectTime measures, in the NAT lab with 20 ms and with 200 ms
// RTT between sites, the time from Dial to the first message received by
// the peer, for three classes of pair. Each iteration is one connection
// between fresh nodes; run with -benchtime=20x for the figures in
// docs/BENCHMARKS.md. It reports p50 and p95 in milliseconds and in RTTs,
// and for the direct class p50 and p95 of the time from Dial's return
// until both sides' Path is direct (0 when the first path is) and how
// many of the connections started on the relay (relay-first: the first
// pair that works carries the session, and the path moves to direct).
func BenchmarkConnectTime(b *testing.B) {
	testutil.RequireRoot(b)
	classes := []struct {
		name   string
		a, b   nattype.Type
		expect nattype.Path
	}{
		{"cone-cone-direct", nattype.PortRestrictedCone, nattype.RestrictedCone, nattype.Direct},
		{"symmetric-relay", nattype.Symmetric, nattype.Symmetric, nattype.Relay},
		{"udp-blocked-relay", nattype.UDPBlocked, nattype.PortRestrictedCone, nattype.RelayTCP},
	}
	var sites []natlab.SiteConfig
	for _, c := range classes {
		sites = append(sites,
			natlab.SiteConfig{Name: c.a.Short() + "1", NAT: c.a, DelayStage: true},
			natlab.SiteConfig{Name: c.b.Short() + "2", NAT: c.b, DelayStage: true})
	}
	lab, err := natlab.New(context.Background(), natlab.Config{Sites: sites})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = lab.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	w, err := labworld.New(ctx, lab, nil)
	cancel()
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = w.Close() })

	for _, rtt := range benchRTTs {
		b.Run(fmt.Sprintf("rtt=%dms", rtt.Milliseconds()), func(b *testing.B) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			for _, s := range lab.Sites() {
				if err := s.SetWAN(ctx, natlab.Link{Delay: rtt / 4}); err != nil {
					b.Fatal(err)
				}
			}
			for _, c := range classes {
				b.Run(c.name, func(b *testing.B) {
					ha, hb := lab.Site(c.a.Short()+"1").Host(0), lab.Site(c.b.Short()+"2").Host(0)
					var connect, direct []time.Duration
					relayFirst := 0
					for b.Loop() {
						d, toDirect, path, upgrades := connectOnce(b, w, ha, hb, c.expect == nattype.Direct)
						if path != c.expect {
							b.Fatalf("%s: got path %s, want %s", c.name, path, c.expect)
						}
						connect = append(connect, d)
						direct = append(direct, toDirect)
						if upgrades > 0 {
							relayFirst++
						}
					}
					p50, p95 := percentiles(connect)
					b.ReportMetric(float64(p50.Microseconds())/1000, "p50-ms")
					b.ReportMetric(float64(p95.Microseconds())/1000, "p95-ms")
					b.ReportMetric(float64(p50)/float64(rtt), "p50-RTTs")
					b.ReportMetric(float64(p95)/float64(rtt), "p95-RTTs")
					if c.expect == nattype.Direct {
						p50, p95 := percentiles(direct)
						b.ReportMetric(float64(p50.Microseconds())/1000, "direct-p50-ms")
						b.ReportMetric(float64(p95.Microseconds())/1000, "direct-p95-ms")
						b.ReportMetric(float64(relayFirst), "relay-first")
					}
				})
			}
		})
	}
}

// percentiles returns the p50 and p95 of ds (which it sorts).
func percentiles(ds []time.Duration) (p50, p95 time.Duration) {
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	return ds[len(ds)/2], ds[min(len(ds)-1, len(ds)*95/100)]
}

// connectOnce starts two fresh nodes, then times Dial until the peer has
// received the first message; with wantDirect, also Dial's return until
// both sides' Path is direct (waiting up to 10 s, which is then the
// figure, and the path says relay), and how many times the dialer's path
// moved from the relay to a direct pair.
func connectOnce(b *testing.B, w *labworld.World, ha, hb *natlab.Host, wantDirect bool) (took, toDirect time.Duration, path nattype.Path, upgrades int) {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	na, nb, stop := twoNodes(b, ctx, w, ha, hb)
	defer stop()
	got := make(chan *sdk.Conn, 1)
	go func() {
		c, aerr := nb.Accept(ctx)
		if aerr != nil {
			b.Error(aerr)
			got <- nil
			return
		}
		if _, aerr = c.Recv(ctx); aerr != nil {
			b.Error(aerr)
		}
		got <- c
	}()
	start := time.Now()
	ca, err := na.Dial(ctx, nb.PeerID())
	if err != nil {
		b.Fatal(err)
	}
	up := time.Now()
	defer ca.Close()
	if err := ca.Send(ctx, []byte("first")); err != nil {
		b.Fatal(err)
	}
	cb := <-got
	took = time.Since(start)
	if cb == nil {
		b.FailNow()
	}
	defer cb.Close()
	if wantDirect {
		// Running out of time is a result (the path then says relay),
		// not a failure of the wait.
		testutil.Poll(10*time.Second, func() bool { return classify(ca.Path(), cb.Path()) == nattype.Direct })
		if p := ca.Path(); p.Kind() == "direct" && !p.SelectedAt.IsZero() {
			toDirect = max(0, p.SelectedAt.Sub(up))
		} else {
			toDirect = time.Since(up)
		}
	}
	return took, toDirect, classify(ca.Path(), cb.Path()), ca.Path().Upgrades
}
