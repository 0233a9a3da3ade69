package sdk

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/pion/transport/v5/vnet"

	"github.com/ferrynet/ferry/internal/testutil"
	"github.com/ferrynet/ferry/sdk/internal/vnetlab"
	"github.com/ferrynet/ferry/server/rendezvous"
)

// TestNodeOnVirtualNATs runs the whole glue (signaling through a real
// rendezvous server on loopback, ICE through pion's virtual NATs, QUIC on
// the path) without root: nodes behind cone NATs connect directly, behind
// symmetric NATs through the relay.
func TestNodeOnVirtualNATs(t *testing.T) {
	testutil.CheckLeaks(t)
	testutil.Deadline(t, 2*time.Minute)
	const secret = "vnet-secret"
	cases := []struct {
		name       string
		natA, natB *vnet.NATType
		relayed    bool
	}{
		{"full-cone x port-restricted", vnetlab.FullCone, vnetlab.PortRestrictedCone, false},
		{"port-restricted x port-restricted", vnetlab.PortRestrictedCone, vnetlab.PortRestrictedCone, false},
		{"symmetric x symmetric", vnetlab.Symmetric, vnetlab.Symmetric, true},
		{"symmetric x port-restricted", vnetlab.Symmetric, vnetlab.PortRestrictedCone, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			l, url := vnetWorld(t, c.natA, c.natB, secret, true)
			a, b := vnetNode(t, url, l.NetA), vnetNode(t, url, l.NetB)
			ca, cb := nodePair(t, a, b)
			if !c.relayed {
				// The first pair that works carries the session, the
				// relay too; a direct pair takes over as soon as it
				// answers.
				testutil.Poll(15*time.Second, func() bool { return !ca.Path().Relayed && !cb.Path().Relayed })
			}
			p := ca.Path()
			t.Logf("%s: %s %s -> %s %s", p.Kind(), p.LocalCandidate, p.LocalAddr, p.RemoteCandidate, p.RemoteAddr)
			if p.Relayed != c.relayed {
				t.Errorf("relayed = %v, want %v", p.Relayed, c.relayed)
			}
			ctx := ctxT(t, 10*time.Second)
			if err := ca.Send(ctx, []byte("over the virtual NATs")); err != nil {
				t.Fatal(err)
			}
			if m, err := cb.Recv(ctx); err != nil || string(m) != "over the virtual NATs" {
				t.Fatalf("%q %v", m, err)
			}
			_ = ca.Close()
			_ = cb.Close()
		})
	}
}

// Dial honours ctx while ICE is still trying, and ErrNoPath explains a
// failure when nothing can work.
func TestNodeDialCancelAndNoPath(t *testing.T) {
	testutil.CheckLeaks(t)
	testutil.Deadline(t, time.Minute)
	l, url := vnetWorld(t, vnetlab.Symmetric, vnetlab.Symmetric, "s", false)
	node := func(n *vnet.Net) *Node {
		return vnetNode(t, url, n, WithRelayPolicy(RelayNever), WithICETiming(ICETiming{FailedTimeout: 2 * time.Second}))
	}
	a, b := node(l.NetA), node(l.NetB)
	go func() {
		for {
			if _, err := b.Accept(context.Background()); err != nil {
				return
			}
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := a.Dial(ctx, b.PeerID())
	if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > 2*time.Second {
		t.Fatalf("Dial with a 300ms ctx: %v after %v", err, time.Since(start))
	}
	// A cancelled Dial says so in one line, without the ICE dump.
	if msg := err.Error(); len(msg) > 120 || strings.Contains(msg, "\n") {
		t.Errorf("cancelled Dial's error is %d bytes: %q", len(msg), msg)
	}
	_, err = a.Dial(ctxT(t, 20*time.Second), b.PeerID())
	var np *NoPathError
	if !errors.Is(err, ErrNoPath) || !errors.As(err, &np) {
		t.Fatalf("symmetric x symmetric without relays: %v", err)
	}
	if np.Peer != b.PeerID() || !strings.Contains(np.Dump, "candidate") {
		t.Errorf("NoPathError names %s, dump %q", np.Peer.Short(), np.Dump)
	}
	if msg := err.Error(); len(msg) > 160 || strings.Contains(msg, "\n") {
		t.Errorf("no-path error is %d bytes: %q", len(msg), msg)
	}
	t.Logf("no path: %v\n%s", err, np.Dump)
}

// vnetWorld builds a virtual NAT lab and a rendezvous server for it:
// signaling runs on real loopback, and the STUN server it names (and, with
// relays, the TURN server, which takes REST credentials made with secret)
// lives in the virtual network. It returns the lab and the signaling URL.
func vnetWorld(t *testing.T, natA, natB *vnet.NATType, secret string, relays bool) (*vnetlab.Lab, string) {
	t.Helper()
	l, err := vnetlab.New(natA, natB, vnetlab.Auth{RESTSecret: secret})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg := rendezvous.Config{
		Listener:    ln,
		ServerNames: []string{"127.0.0.1"},
		STUNURLs:    []string{vnetlab.STUNURL()},
		Logger:      slog.New(slog.DiscardHandler),
	}
	if relays {
		cfg.RelaySecret, cfg.RelayURLs = secret, []string{vnetlab.TURNURL()}
	}
	rv, err := rendezvous.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rv.Close() })
	return l, "ws://" + rv.Addr().String() + "/v1/signal"
}

// vnetNode starts a node on n that signals through url, closed at cleanup.
func vnetNode(t *testing.T, url string, n *vnet.Net, opts ...NodeOption) *Node {
	t.Helper()
	var d net.Dialer
	opts = append([]NodeOption{WithIdentity(newIdentity(t)), WithRendezvous(url), WithNetwork(n, d.DialContext)}, opts...)
	nd, err := New(ctxT(t, 10*time.Second), opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = nd.Close() })
	return nd
}
