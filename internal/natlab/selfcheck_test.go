package natlab_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/ferrynet/ferry/internal/natlab"
	"github.com/ferrynet/ferry/internal/natlab/coturn"
	"github.com/ferrynet/ferry/internal/natlab/natlabtest"
	"github.com/ferrynet/ferry/internal/nattype"
	"github.com/ferrynet/ferry/internal/testutil"
)

// requireCoturn skips (fails under FERRY_TEST_STRICT=1) without coturn.
func requireCoturn(t *testing.T) {
	t.Helper()
	testutil.RequireBinary(t, "turnserver", "coturn")
	testutil.RequireBinary(t, "turnutils_natdiscovery", "coturn")
}

// TestSelfCheckNATDiscovery proves the lab before anything is measured in
// it: for every NAT type, coturn's turnutils_natdiscovery, run inside a
// host behind that NAT against turnserver on the lab server's two
// addresses, reports the mapping and filtering behaviour the type promises,
// and its hairpin test agrees with the site's hairpin setting.
func TestSelfCheckNATDiscovery(t *testing.T) {
	t.Parallel()
	testutil.RequireRoot(t)
	requireCoturn(t)
	testutil.Deadline(t, 3*time.Minute)

	type site struct {
		ty      nattype.Type
		hairpin bool
	}
	sites := map[string]site{}
	var cfgs []natlab.SiteConfig
	for _, ty := range nattype.All() {
		on := ty != nattype.None
		sites[ty.Short()] = site{ty, on}
		cfgs = append(cfgs, natlab.SiteConfig{Name: ty.Short(), NAT: ty, Hairpin: on})
		if ty != nattype.None && ty != nattype.UDPBlocked {
			sites[ty.Short()+"nh"] = site{ty, false}
			cfgs = append(cfgs, natlab.SiteConfig{Name: ty.Short() + "nh", NAT: ty})
		}
	}
	lab := natlabtest.New(t, natlab.Config{Sites: cfgs})
	ctx := context.Background()
	srv, err := coturn.Start(ctx, coturn.ServerConfig{Host: lab.Server(), Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })

	// natdiscovery waits 3 s for each answer that does not come, so run
	// every site at once (go test's -parallel defaults to GOMAXPROCS, which
	// would serialise these waits on a small machine), then check.
	type result struct {
		mf, hp       coturn.Discovery
		mfErr, hpErr error
	}
	results := make(map[string]*result)
	g, gctx := errgroup.WithContext(ctx)
	for _, s := range lab.Sites() {
		r := &result{}
		results[s.Name()] = r
		h := s.Host(0)
		g.Go(func() error {
			r.mf, r.mfErr = coturn.NATDiscovery(gctx, h, natlab.ServerAddr)
			return nil
		})
		if sites[s.Name()].ty != nattype.UDPBlocked {
			g.Go(func() error {
				r.hp, r.hpErr = coturn.Hairpinning(gctx, h, natlab.ServerAddr)
				return nil
			})
		}
	}
	_ = g.Wait()

	for _, s := range lab.Sites() {
		want := sites[s.Name()]
		t.Run(s.Name(), func(t *testing.T) {
			r := results[s.Name()]
			if err := errors.Join(r.mfErr, r.hpErr); err != nil {
				t.Fatal(err)
			}
			mf, hp := r.mf, r.hp
			wantM, wantF := want.ty.Behaviour()
			if mf.Mapping != wantM || mf.Filtering != wantF {
				t.Errorf("natdiscovery says mapping %s, filtering %s; %s promises %s, %s\n%s",
					mf.Mapping, mf.Filtering, want.ty, wantM, wantF, mf.Output)
			}
			if want.ty == nattype.UDPBlocked {
				if !mf.UDPBlocked() {
					t.Errorf("UDP got through a udp-blocked NAT\n%s", mf.Output)
				}
				return
			}
			if !mf.RFC5780 {
				t.Errorf("turnserver did not answer as an RFC 5780 server\n%s", mf.Output)
			}
			if wantPub := s.PublicAddr; mf.Reflexive.Addr() != wantPub {
				t.Errorf("reflexive address %s, want the site's public address %s", mf.Reflexive, wantPub)
			}
			// A public host reaches its own address trivially.
			wantHairpin := want.hairpin || want.ty == nattype.None
			if hp.Hairpin != wantHairpin {
				t.Errorf("natdiscovery -H says hairpinning %v, site has hairpin %v\n%s", hp.Hairpin, wantHairpin, hp.Output)
			}
			t.Logf("%-22s hairpin=%-5v natdiscovery: mapping=%s filtering=%s hairpin=%v reflexive=%s",
				want.ty, want.hairpin, mf.Mapping, mf.Filtering, hp.Hairpin, mf.Reflexive)
		})
	}
}

// TestSelfCheckRFC5780Off checks that the lab's coturn can also play a
// server without RFC 5780, for natprobe's basic mode: natdiscovery then
// gets answers but no verdicts.
func TestSelfCheckRFC5780Off(t *testing.T) {
	t.Parallel()
	testutil.RequireRoot(t)
	requireCoturn(t)
	testutil.Deadline(t, time.Minute)
	lab := natlabtest.New(t, natlab.Config{Sites: []natlab.SiteConfig{{Name: "a", NAT: natlab.PortRestrictedCone}}})
	srv, err := coturn.Start(context.Background(), coturn.ServerConfig{Host: lab.Server(), Dir: t.TempDir(), NoRFC5780: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	d, err := coturn.NATDiscovery(context.Background(), lab.Site("a").Host(0), natlab.ServerAddr)
	if err != nil {
		t.Fatal(err)
	}
	if d.RFC5780 || d.Responses == 0 || d.Mapping != nattype.Unknown || !strings.Contains(d.Output, "reflexive") {
		t.Errorf("want plain STUN answers and no verdict, got %+v", d)
	}
}
