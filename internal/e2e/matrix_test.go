package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferrynet/ferry/internal/natlab"
	"github.com/ferrynet/ferry/internal/natlab/labworld"
	"github.com/ferrynet/ferry/internal/natlab/natlabtest"
	"github.com/ferrynet/ferry/internal/nattype"
	"github.com/ferrynet/ferry/internal/testutil"
	"github.com/ferrynet/ferry/sdk"
)

// update makes a complete TestNATMatrix run rewrite docs/MATRIX.md (`make
// matrix`); without it the test only logs the table, so a plain
// `go test ./...` leaves the work tree clean.
var update = flag.Bool("update", false, "rewrite docs/MATRIX.md from a complete TestNATMatrix run")

// matrixLab builds the matrix's lab: two sites per NAT type (a<type> and
// b<type>, so a type facing itself still crosses two NATs), each with a
// delay stage so the same lab also runs the shaped matrix, and a site with
// two hosts behind one NAT.
func matrixLab(t *testing.T) *natlab.Lab {
	t.Helper()
	var sites []natlab.SiteConfig
	for _, typ := range nattype.All() {
		for _, side := range []string{"a", "b"} {
			sites = append(sites, natlab.SiteConfig{Name: side + typ.Short(), NAT: typ, DelayStage: true})
		}
	}
	sites = append(sites, natlab.SiteConfig{Name: "lan", NAT: nattype.PortRestrictedCone, Hosts: 2, DelayStage: true})
	return natlabtest.New(t, natlab.Config{Sites: sites})
}

func newWorld(t *testing.T, lab *natlab.Lab) *labworld.World {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var log *slog.Logger
	switch os.Getenv("FERRY_E2E_DEBUG") {
	case "":
	case "info":
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	default:
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	w, err := labworld.New(ctx, lab, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := w.Close(); err != nil {
			t.Errorf("world close: %v", err)
		}
	})
	return w
}

// row is one pair's result.
type row struct {
	a, b     string
	expected nattype.Path
	initial  nattype.Path // the path first selected
	got      nattype.Path // the path after the exchange (renomination may improve it)
	local    string
	remote   string
	connect  time.Duration
	toDirect time.Duration // from Dial's return until both sides are direct (0: direct at once)
	skew     time.Duration // between the two sides' path-change events to direct, after an upgrade (-1: unknown)
	relayed  int64         // bytes of the 1 MiB exchange that crossed the relay, when direct before it
	err      string
}

// classify names the path two ends of a connection see.
func classify(pa, pb sdk.Path) nattype.Path {
	tcp := func(p sdk.Path) bool { return p.LocalCandidate == "relay" && p.RelayProtocol != "udp" }
	switch {
	case tcp(pa) || tcp(pb):
		return nattype.RelayTCP
	case pa.Relayed || pb.Relayed:
		return nattype.Relay
	}
	return nattype.Direct
}

// runPair connects a node on ha to a node on hb, moves 1 MiB each way and
// reports the path.
func runPair(t *testing.T, w *labworld.World, ha, hb *natlab.Host, expected nattype.Path) row {
	t.Helper()
	r := row{a: ha.Site().Name(), b: hb.Site().Name(), expected: expected}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	na, nb, stop := twoNodes(t, ctx, w, ha, hb)
	defer stop()

	accepted := make(chan *sdk.Conn, 1)
	go func() {
		c, aerr := nb.Accept(ctx)
		if aerr != nil {
			t.Errorf("accept: %v", aerr)
		}
		accepted <- c
	}()
	ca, err := na.Dial(ctx, nb.PeerID())
	if err != nil {
		r.err = err.Error()
		t.Errorf("%s -> %s: %v", r.a, r.b, err)
		cancel()
		<-accepted
		return r
	}
	up := time.Now()
	defer ca.Close()
	cb := <-accepted
	if cb == nil {
		t.FailNow()
	}
	defer cb.Close()
	evA, stopA := ca.Subscribe()
	defer stopA()
	evB, stopB := cb.Subscribe()
	defer stopB()
	subscribed := time.Now()
	pa, pb := ca.Path(), cb.Path()
	r.initial = classify(pa, pb)
	r.connect = pa.ConnectTime

	// A relayed start moves to a direct pair when one answers. Wait for
	// it before the exchange (10 s: the bound is 5 s, and the time
	// is recorded in the row), so that the exchange shows that none of
	// its packets cross the relay once both sides say direct.
	// Traffic flows meanwhile (256 KiB each way), so that a move during
	// a transfer is checked for loss too.
	early := make(chan error, 1)
	go func() { early <- exchange(ctx, ca, cb, 256<<10) }()
	directFirst := false
	if expected == nattype.Direct {
		directFirst = testutil.Poll(10*time.Second, func() bool {
			pa, pb = ca.Path(), cb.Path()
			return classify(pa, pb) == nattype.Direct
		})
	}
	if err := <-early; err != nil {
		t.Errorf("%s -> %s: exchange while the path settles: %v", r.a, r.b, err)
	}
	pa, pb = ca.Path(), cb.Path()
	directFirst = directFirst && classify(pa, pb) == nattype.Direct
	before := pa.RelayBytes + pb.RelayBytes
	if err := exchange(ctx, ca, cb, 1<<20); err != nil {
		t.Errorf("%s -> %s: exchange: %v", r.a, r.b, err)
	}
	// A relayed start may also be renominated during the exchange; give it
	// a little more. Running out of time is a result here (the row
	// records the path got), not a failure of the wait.
	testutil.Poll(3*time.Second, func() bool {
		pa, pb = ca.Path(), cb.Path()
		r.got = classify(pa, pb)
		return r.got == expected
	})
	if directFirst && r.got == nattype.Direct {
		// Each relayed packet crosses an allocation of one side or the
		// other, and that side's RelayBytes counts it.
		if r.relayed = pa.RelayBytes + pb.RelayBytes - before; r.relayed != 0 {
			t.Errorf("%s -> %s: %d bytes crossed the relay after both sides said direct", r.a, r.b, r.relayed)
		}
	}
	if r.got == nattype.Direct && r.initial != nattype.Direct {
		r.toDirect = max(0, pa.SelectedAt.Sub(up), pb.SelectedAt.Sub(up))
		// Both sides report the move as an event, and agree on it: the
		// controlled side follows one round trip after the controlling
		// one. A side that moved before it was subscribed to is skipped.
		r.skew = -1
		ta, oka := directEvent(evA, pa.SelectedAt.Before(subscribed))
		tb, okb := directEvent(evB, pb.SelectedAt.Before(subscribed))
		switch {
		case !oka || !okb:
			t.Errorf("%s -> %s: upgraded to direct, but a side had no path-change event (A %v, B %v)", r.a, r.b, oka, okb)
		case !ta.IsZero() && !tb.IsZero():
			r.skew = ta.Sub(tb).Abs()
			// The bound is generous (a loaded 2-core box delays
			// goroutines); the row records the figure.
			if r.skew > 2*time.Second {
				t.Errorf("%s -> %s: the sides moved to direct %v apart", r.a, r.b, r.skew)
			}
		}
	}
	r.local = pa.LocalCandidate + "/" + pa.RemoteCandidate
	r.remote = pb.LocalCandidate + "/" + pb.RemoteCandidate
	if pa.RelayProtocol != "" && pa.LocalCandidate == "relay" {
		r.local += " (" + pa.RelayProtocol + ")"
	}
	if pb.RelayProtocol != "" && pb.LocalCandidate == "relay" {
		r.remote += " (" + pb.RelayProtocol + ")"
	}
	if r.got != expected {
		t.Errorf("%s -> %s: path %s (%s | %s), want %s", r.a, r.b, r.got, r.local, r.remote, expected)
	}
	return r
}

// directEvent returns the time of the first path-change event to a direct
// path on events, waiting up to 2 s for one (later ones, a probe round
// stepping through direct pairs, are not the move); with missed (the move
// came before the subscription) it returns ok and a zero time.
func directEvent(events <-chan sdk.Event, missed bool) (at time.Time, ok bool) {
	if missed {
		return time.Time{}, true
	}
	timeout := time.After(2 * time.Second)
	for {
		select {
		case ev, open := <-events:
			if !open {
				return time.Time{}, false
			}
			if ev.Path != nil && ev.Path.Kind() == "direct" {
				return ev.Time, true
			}
		case <-timeout:
			return time.Time{}, false
		}
	}
}

// twoNodes starts fresh nodes on ha and hb; stop closes them.
func twoNodes(tb testing.TB, ctx context.Context, w *labworld.World, ha, hb *natlab.Host, opts ...sdk.NodeOption) (na, nb *sdk.Node, stop func()) {
	tb.Helper()
	na, err := w.Node(ctx, ha, opts...)
	if err != nil {
		tb.Fatal(err)
	}
	nb, err = w.Node(ctx, hb, opts...)
	if err != nil {
		_ = na.Close()
		tb.Fatal(err)
	}
	return na, nb, func() {
		_ = na.Close()
		_ = nb.Close()
	}
}

// exchange sends size bytes each way, in 16 KiB messages, and checks them.
func exchange(ctx context.Context, ca, cb *sdk.Conn, size int) error {
	data := make([]byte, size)
	for i := range data {
		data[i] = byte(i*7 + i>>10)
	}
	want := sha256.Sum256(data)
	const chunk = 16 << 10
	errc := make(chan error, 4)
	for _, c := range []*sdk.Conn{ca, cb} {
		go func() {
			for i := 0; i < size; i += chunk {
				if err := c.Send(ctx, data[i:min(i+chunk, size)]); err != nil {
					errc <- err
					return
				}
			}
			errc <- nil
		}()
		go func() {
			h := sha256.New()
			for got := 0; got < size; {
				m, err := c.Recv(ctx)
				if err != nil {
					errc <- err
					return
				}
				h.Write(m)
				got += len(m)
			}
			if !bytes.Equal(h.Sum(nil), want[:]) {
				errc <- fmt.Errorf("%d bytes arrived corrupted", size)
				return
			}
			errc <- nil
		}()
	}
	var first error
	for range 4 {
		if err := <-errc; err != nil && first == nil {
			first = err
		}
	}
	return first
}

// matrixParallel is how many pairs run at once.
const matrixParallel = 4

// runMatrix runs every ordered pair of NAT types, and two hosts behind one
// NAT, as parallel subtests.
func runMatrix(t *testing.T, w *labworld.World) []row {
	var (
		mu   sync.Mutex
		rows []row
	)
	record := func(r row) {
		mu.Lock()
		rows = append(rows, r)
		mu.Unlock()
	}
	// Bound the pairs in flight: on a 2-core machine, dozens of nodes
	// and the lab's delay stages at once starve ICE's timers, which says
	// nothing about NAT traversal.
	sem := make(chan struct{}, matrixParallel)
	run := func(f func()) {
		sem <- struct{}{}
		defer func() { <-sem }()
		f()
	}
	t.Run("pairs", func(t *testing.T) {
		for _, ta := range nattype.All() {
			for _, tb := range nattype.All() {
				t.Run(ta.String()+"/"+tb.String(), func(t *testing.T) {
					t.Parallel()
					ha := w.Lab.Site("a" + ta.Short()).Host(0)
					hb := w.Lab.Site("b" + tb.Short()).Host(0)
					run(func() { record(runPair(t, w, ha, hb, nattype.ExpectedPath(ta, tb))) })
				})
			}
		}
		t.Run("same-nat", func(t *testing.T) {
			t.Parallel()
			lan := w.Lab.Site("lan")
			run(func() {
				r := runPair(t, w, lan.Host(0), lan.Host(1), nattype.Direct)
				r.a, r.b = "lan host 1", "lan host 2 (same NAT)"
				record(r)
			})
		})
	})
	sort.Slice(rows, func(i, j int) bool {
		if rows[i].a != rows[j].a {
			return rows[i].a < rows[j].a
		}
		return rows[i].b < rows[j].b
	})
	return rows
}

// TestNATMatrix is the connectivity issue's centrepiece: every ordered pair
// of the lab's six NAT types connects, gets the path it must (direct,
// relay, or relay over TCP when a side has no UDP), and moves 1 MiB each
// way; then the same again with 20 ms RTT and 2% loss on every WAN link,
// and with 200 ms RTT and 1% loss. It logs the grid, and with -update
// writes it to docs/MATRIX.md.
func TestNATMatrix(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.CheckLeaks(t)
	testutil.Deadline(t, 20*time.Minute)
	lab := matrixLab(t)
	w := newWorld(t, lab)

	start := time.Now()
	clean := runMatrix(t, w)
	t.Logf("clean matrix: %v", time.Since(start).Round(time.Second))

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, s := range lab.Sites() {
		// 5 ms each way on each WAN link: 20 ms RTT between two sites.
		if err := s.SetWAN(ctx, natlab.Link{Delay: 5 * time.Millisecond, Loss: 2}); err != nil {
			t.Fatal(err)
		}
	}
	start = time.Now()
	shaped := runMatrix(t, w)
	t.Logf("shaped matrix: %v", time.Since(start).Round(time.Second))

	ctx, cancel = context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, s := range lab.Sites() {
		// 50 ms each way on each WAN link: 200 ms RTT between two sites.
		if err := s.SetWAN(ctx, natlab.Link{Delay: 50 * time.Millisecond, Loss: 1}); err != nil {
			t.Fatal(err)
		}
	}
	start = time.Now()
	long := runMatrix(t, w)
	t.Logf("200 ms matrix: %v", time.Since(start).Round(time.Second))

	// Only a complete run describes the matrix.
	if want := len(nattype.All())*len(nattype.All()) + 1; len(clean) == want && len(shaped) == want && len(long) == want {
		writeMatrix(t, clean, shaped, long)
	} else {
		t.Logf("ran %d+%d+%d of %d pairs each: docs/MATRIX.md left as it is", len(clean), len(shaped), len(long), want)
	}
}

func writeMatrix(t *testing.T, clean, shaped, long []row) {
	var b strings.Builder
	b.WriteString(`# NAT matrix

Written by ` + "`TestNATMatrix`" + ` (internal/e2e) on ` + time.Now().UTC().Format("2006-01-02") + `: every ordered pair of the NAT lab's six NAT
types, peer A (site a…) dialing peer B (site b…) through the rendezvous, each moving 1 MiB each way.
"Candidates" are each side's selected pair as local/remote candidate types. Connect time runs from
` + "`Dial`" + ` to an established, authenticated session; "to direct" from ` + "`Dial`" + `'s return until both sides' ` + "`Path`" + `
was direct, for a path that started on the relay, and "apart" the time between the two sides'
path-change events to direct. A pair that must go direct is given 10 s to be direct on both sides
before the exchange, and the test asserts that none of the exchange's bytes then crossed the relay
(the sum of both sides' ` + "`Path.RelayBytes`" + `, the session's bytes through each side's relay allocations). Command: ` + "`make matrix`" + ` (root), which runs ` + "`TestNATMatrix`" + ` with ` + "`-update`" + `.

`)
	for _, part := range []struct {
		title string
		rows  []row
	}{{"Clean links", clean}, {"20 ms RTT, 2% loss on every WAN link", shaped}, {"200 ms RTT, 1% loss on every WAN link", long}} {
		fmt.Fprintf(&b, "## %s\n\n| A | B | expected | got | A candidates | B candidates | connect | to direct | apart |\n|---|---|---|---|---|---|---|---|---|\n", part.title)
		for _, r := range part.rows {
			got := string(r.got)
			if r.initial != r.got {
				got = string(r.initial) + " → " + got
			}
			if r.err != "" {
				got = "FAILED: " + r.err
			} else if r.got != r.expected {
				got = "**" + got + "** (wrong)"
			}
			toDirect, apart := "", ""
			if r.initial != r.got && r.got == nattype.Direct {
				toDirect = fmt.Sprintf("%d ms", r.toDirect.Milliseconds())
				if r.skew >= 0 {
					apart = fmt.Sprintf("%d ms", r.skew.Milliseconds())
				}
			}
			fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %d ms | %s | %s |\n", r.a, r.b, r.expected, got, r.local, r.remote, r.connect.Milliseconds(), toDirect, apart)
		}
		b.WriteString("\n")
	}
	t.Log("\n" + b.String())
	if !*update {
		t.Log("docs/MATRIX.md left as it is (run with -update, or make matrix, to rewrite it)")
		return
	}
	if err := os.WriteFile("../../docs/MATRIX.md", []byte(b.String()), 0o644); err != nil {
		t.Errorf("write docs/MATRIX.md: %v", err)
	}
}
