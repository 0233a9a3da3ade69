package portmap_test

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/ferrynet/ferry/internal/natlab"
	"github.com/ferrynet/ferry/internal/natlab/natlabtest"
	"github.com/ferrynet/ferry/internal/testutil"
	"github.com/ferrynet/ferry/sdk/internal/portmap"
)

// TestMain checks that the lab test left no namespace behind.
func TestMain(m *testing.M) {
	code := m.Run()
	if left, err := natlab.OwnLeftovers(); err != nil || len(left) > 0 {
		fmt.Fprintf(os.Stderr, "natlab: namespaces left after the tests: %v %v\n", left, err)
		code = 1
	}
	os.Exit(code)
}

// TestMiniUPnPdInLab: behind a symmetric NAT running miniupnpd, the
// Mapper gets the site's public address with the socket's port, the
// mapping shows in miniupnpd's nftables rules, is renewed, carries an
// unsolicited packet from the server to the socket, and is deleted on
// Close.
func TestMiniUPnPdInLab(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.RequireBinary(t, "miniupnpd", "miniupnpd-nftables")
	testutil.RequireBinary(t, "turnserver", "coturn")
	testutil.Deadline(t, 2*time.Minute)
	lab := natlabtest.New(t, natlab.Config{Sites: []natlab.SiteConfig{
		{Name: "s", NAT: natlab.Symmetric, PortMapping: true},
	}})
	ctx := context.Background()
	site := lab.Site("s")
	h := site.Host(0)
	sock, err := h.ListenPacket(ctx, "udp4", h.Addr().String()+":0")
	if err != nil {
		t.Fatal(err)
	}
	defer sock.Close()
	localAP := sock.LocalAddr().(*net.UDPAddr).AddrPort()
	m, err := portmap.Start(portmap.Config{
		Gateway: h.Gateway(), Local: localAP, Lifetime: 12 * time.Second, Do: h.Do,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	want := netip.AddrPortFrom(site.PublicAddr, localAP.Port())
	testutil.WaitFor(t, 20*time.Second, "a mapped address", func() bool { return m.Addr() == want })
	rule := "to " + localAP.String()
	hasRule := func() bool {
		rules, err := site.PortMapper().Mappings(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return len(rules) == 1 && strings.Contains(rules[0], rule)
	}
	if !hasRule() {
		out, _ := site.PortMapper().Rules(ctx)
		t.Fatalf("no DNAT rule %q in miniupnpd's table:\n%s", rule, out)
	}
	// Granted 12 s: renewed after 6.
	testutil.WaitFor(t, 30*time.Second, "a renewal", func() bool { return m.Renewals() >= 2 })
	if !hasRule() {
		t.Fatal("the rule is gone after the renewal")
	}

	srv, err := lab.Server().ListenPacket(ctx, "udp4", natlab.ServerAddr.String()+":0")
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	got := make(chan error, 1)
	go func() {
		buf := make([]byte, 16)
		_ = sock.SetReadDeadline(time.Now().Add(20 * time.Second))
		n, _, err := sock.ReadFrom(buf)
		if err == nil && string(buf[:n]) != "hello" {
			err = fmt.Errorf("read %q", buf[:n])
		}
		got <- err
	}()
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for done := false; !done; {
		if _, err := srv.WriteTo([]byte("hello"), net.UDPAddrFromAddrPort(want)); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-got:
			if err != nil {
				t.Fatalf("through the mapping: %v", err)
			}
			done = true
		case <-tick.C:
		}
	}

	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if hasRule() {
		t.Fatal("the mapping survived Close")
	}
	if rules, _ := site.PortMapper().Mappings(ctx); len(rules) != 0 {
		t.Fatalf("rules after Close: %q", rules)
	}
}
