package e2e

import (
	"context"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferrynet/ferry/internal/natlab"
	"github.com/ferrynet/ferry/internal/natlab/natlabtest"
	"github.com/ferrynet/ferry/internal/nattype"
	"github.com/ferrynet/ferry/internal/testutil"
	"github.com/ferrynet/ferry/sdk"
)

// portMapTypes are the NAT types a mapped node is reached from directly:
// all but udp-blocked, which has no UDP to be direct with.
var portMapTypes = []nattype.Type{nattype.None, nattype.FullCone, nattype.RestrictedCone, nattype.PortRestrictedCone, nattype.Symmetric}

// TestPortMappedNode: a node behind a symmetric NAT whose router runs
// miniupnpd. Without WithPortMapping, symmetric x symmetric is relayed;
// with it, the node gets a mapping of its ICE port (a DNAT rule in
// miniupnpd's table), renews it, offers it as a candidate, and a peer
// behind each NAT type (symmetric included) reaches it directly, dialing
// it and dialed by it; Close deletes the mapping.
func TestPortMappedNode(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.RequireBinary(t, "miniupnpd", "miniupnpd-nftables")
	testutil.RequireBinary(t, "turnserver", "coturn")
	testutil.Deadline(t, 4*time.Minute)
	sites := []natlab.SiteConfig{
		{Name: "m", NAT: nattype.Symmetric, PortMapping: true},
		{Name: "u", NAT: nattype.Symmetric, PortMapping: true, PortMapUPnPOnly: true},
	}
	for _, typ := range portMapTypes {
		sites = append(sites, natlab.SiteConfig{Name: "p" + typ.Short(), NAT: typ})
	}
	lab := natlabtest.New(t, natlab.Config{Sites: sites})
	w := newWorld(t, lab)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	site := lab.Site("m")
	hm := site.Host(0)
	hsym := lab.Site("p" + nattype.Symmetric.Short()).Host(0)

	// Without the mapping, symmetric x symmetric stays relayed.
	t.Run("without", func(t *testing.T) {
		na, nb, stop := twoNodes(t, ctx, w, hm, hsym)
		defer stop()
		if got := dialPath(ctx, t, nb, na); got != nattype.Relay {
			t.Fatalf("symmetric x symmetric without a mapping: %s, want relay", got)
		}
		if st := na.PortMapping(); st.Enabled {
			t.Fatalf("port mapping on by default: %+v", st)
		}
	})

	var mu sync.Mutex
	var events []sdk.PortMapEvent
	nm, err := w.Node(ctx, hm, sdk.WithPortMapping(sdk.PortMapping{
		Gateway:  hm.Gateway(),     // the lab has no default route
		Lifetime: 12 * time.Second, // miniupnpd's floor is 10 s: renewed at 6
		Do:       hm.Do,
		OnEvent: func(e sdk.PortMapEvent) {
			mu.Lock()
			events = append(events, e)
			mu.Unlock()
		},
	}))
	if err != nil {
		t.Fatal(err)
	}
	closed := false
	defer func() {
		if !closed {
			_ = nm.Close()
		}
	}()
	if !testutil.Poll(20*time.Second, func() bool { return nm.PortMapping().Addr.IsValid() }) {
		t.Fatalf("no mapped address after 20s: %+v", nm.PortMapping())
	}
	st := nm.PortMapping()
	if st.Addr.Addr() != site.PublicAddr || st.Protocol != "nat-pmp" {
		t.Fatalf("status %+v: want a mapping on %v", st, site.PublicAddr)
	}
	rule := "to " + hm.Addr().String() + ":" + strconv.Itoa(int(st.LocalPort))
	hasRule := func() bool {
		rules, err := site.PortMapper().Mappings(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return len(rules) == 1 && strings.Contains(rules[0], rule)
	}
	if !hasRule() {
		out, _ := site.PortMapper().Rules(ctx)
		t.Fatalf("no rule %q in miniupnpd's table:\n%s", rule, out)
	}

	for _, typ := range portMapTypes {
		t.Run(typ.Short(), func(t *testing.T) {
			hp := lab.Site("p" + typ.Short()).Host(0)
			np, err := w.Node(ctx, hp)
			if err != nil {
				t.Fatal(err)
			}
			defer np.Close()
			if got := dialPath(ctx, t, np, nm); got != nattype.Direct {
				t.Errorf("%s dialing the mapped node: %s, want direct", typ, got)
			}
			if typ != nattype.Symmetric && typ != nattype.PortRestrictedCone {
				return
			}
			// The other way round, with fresh nodes.
			np2, err := w.Node(ctx, hp)
			if err != nil {
				t.Fatal(err)
			}
			defer np2.Close()
			if got := dialPath(ctx, t, nm, np2); got != nattype.Direct {
				t.Errorf("the mapped node dialing %s: %s, want direct", typ, got)
			}
		})
	}

	// A router that speaks UPnP only: the node falls back to it, and
	// symmetric x symmetric is direct through that mapping too.
	t.Run("upnp", func(t *testing.T) {
		hu := lab.Site("u").Host(0)
		nu, err := w.Node(ctx, hu, sdk.WithPortMapping(sdk.PortMapping{Gateway: hu.Gateway(), Do: hu.Do}))
		if err != nil {
			t.Fatal(err)
		}
		defer nu.Close()
		if !testutil.Poll(30*time.Second, func() bool { return nu.PortMapping().Addr.IsValid() }) {
			t.Fatalf("no mapped address after 30s: %+v", nu.PortMapping())
		}
		if st := nu.PortMapping(); st.Protocol != "upnp" || st.Addr.Addr() != lab.Site("u").PublicAddr {
			t.Fatalf("status %+v: want a UPnP mapping on %v", st, lab.Site("u").PublicAddr)
		}
		np, err := w.Node(ctx, hsym)
		if err != nil {
			t.Fatal(err)
		}
		defer np.Close()
		if got := dialPath(ctx, t, np, nu); got != nattype.Direct {
			t.Errorf("symmetric dialing the UPnP-mapped node: %s, want direct", got)
		}
	})

	testutil.WaitFor(t, 30*time.Second, "a renewal", func() bool { return nm.PortMapping().Renewed >= 1 })
	if !hasRule() {
		t.Fatal("the rule is gone after the renewal")
	}
	closed = true
	if err := nm.Close(); err != nil {
		t.Fatal(err)
	}
	if rules, _ := site.PortMapper().Mappings(ctx); len(rules) != 0 {
		t.Fatalf("rules after Close: %q", rules)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(events) < 3 || events[0].Kind != sdk.PortMapObtained || events[len(events)-1].Kind != sdk.PortMapDeleted {
		t.Fatalf("events %+v: want obtained, renewed..., deleted", events)
	}
}

// dialPath dials b from a (b accepts), checks the connection carries data
// and returns its path class once it settled (a relayed start may move to
// direct within a few seconds).
func dialPath(ctx context.Context, t *testing.T, a, b *sdk.Node) nattype.Path {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	ca, cb := dialAccepted(ctx, t, a, b, "dial")
	defer ca.Close()
	defer cb.Close()
	if err := exchange(ctx, ca, cb, 64<<10); err != nil {
		t.Fatalf("exchange: %v", err)
	}
	var got nattype.Path
	testutil.Poll(5*time.Second, func() bool {
		got = classify(ca.Path(), cb.Path())
		return got == nattype.Direct
	})
	pa, pb := ca.Path(), cb.Path()
	t.Logf("%s: %s/%s %s -> %s | %s/%s", got, pa.LocalCandidate, pa.RemoteCandidate, pa.LocalAddr, pa.RemoteAddr, pb.LocalCandidate, pb.RemoteCandidate)
	return got
}
