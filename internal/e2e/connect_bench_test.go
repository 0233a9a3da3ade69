package e2e

import (
	"context"
	"sort"
	"testing"
	"time"

	"github.com/ferrynet/ferry/internal/natlab"
	"github.com/ferrynet/ferry/internal/natlab/labworld"
	"github.com/ferrynet/ferry/internal/nattype"
	"github.com/ferrynet/ferry/internal/testutil"
	"github.com/ferrynet/ferry/sdk"
)

// benchRTT is the round-trip time between two lab sites in the benchmark:
// 5 ms each way on each site's WAN link.
const benchRTT = 20 * time.Millisecond

// BenchmarkConnectTime measures, in the NAT lab with 20 ms RTT between
// sites, the time from Dial to the first message received by the peer, for
// three classes of pair. Each iteration is one connection between fresh
// nodes; run with -benchtime=20x for the figures in docs/BENCHMARKS.md. It
// reports p50 and p95 in milliseconds and in RTTs.
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
			natlab.SiteConfig{Name: c.a.Short() + "1", NAT: c.a, WAN: natlab.Link{Delay: benchRTT / 4}},
			natlab.SiteConfig{Name: c.b.Short() + "2", NAT: c.b, WAN: natlab.Link{Delay: benchRTT / 4}})
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

	for _, c := range classes {
		b.Run(c.name, func(b *testing.B) {
			ha, hb := lab.Site(c.a.Short()+"1").Host(0), lab.Site(c.b.Short()+"2").Host(0)
			var samples []time.Duration
			for b.Loop() {
				d, path := connectOnce(b, w, ha, hb)
				if path != c.expect {
					b.Fatalf("%s: got path %s, want %s", c.name, path, c.expect)
				}
				samples = append(samples, d)
			}
			sort.Slice(samples, func(i, j int) bool { return samples[i] < samples[j] })
			p50 := samples[len(samples)/2]
			p95 := samples[min(len(samples)-1, len(samples)*95/100)]
			b.ReportMetric(float64(p50.Microseconds())/1000, "p50-ms")
			b.ReportMetric(float64(p95.Microseconds())/1000, "p95-ms")
			b.ReportMetric(float64(p50)/float64(benchRTT), "p50-RTTs")
			b.ReportMetric(float64(p95)/float64(benchRTT), "p95-RTTs")
		})
	}
}

// connectOnce starts two fresh nodes, then times Dial until the peer has
// received the first message.
func connectOnce(b *testing.B, w *labworld.World, ha, hb *natlab.Host) (time.Duration, nattype.Path) {
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
	defer ca.Close()
	if err := ca.Send(ctx, []byte("first")); err != nil {
		b.Fatal(err)
	}
	cb := <-got
	took := time.Since(start)
	if cb == nil {
		b.FailNow()
	}
	defer cb.Close()
	return took, classify(ca.Path(), cb.Path())
}
