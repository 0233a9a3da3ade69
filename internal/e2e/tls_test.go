package e2e

import (
	"crypto/tls"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/ferrynet/ferry/internal/natlab"
	"github.com/ferrynet/ferry/internal/natlab/labworld"
	"github.com/ferrynet/ferry/internal/natlab/natlabtest"
	"github.com/ferrynet/ferry/internal/nattype"
	"github.com/ferrynet/ferry/internal/testutil"
	"github.com/ferrynet/ferry/internal/tlsconf"
)

// relayCert is the lab relay's TLS certificate, trusted through
// SSL_CERT_FILE, which TestMain sets before anything reads the system
// roots (pion's TURN-over-TLS client verifies against them).
var relayCert tls.Certificate

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "ferry-e2e-ca-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := func() int {
		defer os.RemoveAll(dir)
		cert, pemBytes, err := tlsconf.SelfSigned([]string{natlab.ServerAltAddr.String()}, 24*time.Hour)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		relayCert = cert
		bundle := filepath.Join(dir, "roots.pem")
		if err := os.WriteFile(bundle, pemBytes, 0o600); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		os.Setenv("SSL_CERT_FILE", bundle)
		return m.Run()
	}()
	os.Exit(code)
}

// A peer whose network blocks UDP reaches the relay over TLS (turns:), and
// connects to a peer behind a port-restricted cone.
func TestUDPBlockedRelayOverTLS(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.CheckLeaks(t)
	testutil.Deadline(t, 2*time.Minute)
	lab := natlabtest.New(t, natlab.Config{Sites: []natlab.SiteConfig{
		{Name: "blk", NAT: nattype.UDPBlocked},
		{Name: "prc", NAT: nattype.PortRestrictedCone},
	}})
	ctx := t.Context()
	w, err := labworld.New(ctx, lab, nil, labworld.WithRelayTLS(relayCert))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = w.Close() })
	r := runPair(t, w, lab.Site("blk").Host(0), lab.Site("prc").Host(0), nattype.RelayTCP)
	t.Logf("udp-blocked -> port-restricted over TLS: %s (%s | %s) in %v", r.got, r.local, r.remote, r.connect)
	if r.local != "relay/prflx (tls)" && r.local != "relay/host (tls)" && r.local != "relay/srflx (tls)" {
		t.Fatalf("the blocked side's path is %q, want a relay candidate reached over TLS", r.local)
	}
}
