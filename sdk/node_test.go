package sdk

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferrynet/ferry/internal/rvtest"
	"github.com/ferrynet/ferry/internal/testutil"
	"github.com/ferrynet/ferry/server/relay"
	"github.com/ferrynet/ferry/server/rendezvous"
)

// infra is a rendezvous server (signaling and STUN) and a TURN relay on
// loopback, as a node test's outside world.
type infra struct {
	rv    *rendezvous.Server
	relay *relay.Server
	url   string
}

const testRelaySecret = "node-test-secret"

func newInfra(t *testing.T) *infra {
	t.Helper()
	relayPC := listenUDP(t)
	rl, err := relay.New(relay.Config{
		PacketConns: []net.PacketConn{relayPC},
		Realm:       "ferry.test",
		AuthSecrets: []string{testRelaySecret},
		RelayIPs:    []netip.Addr{netip.MustParseAddr("127.0.0.1")},
		AllowPeers:  []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")},
		Logger:      slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rl.Close() })
	rv, url := rvtest.Start(t, rendezvous.Config{
		RelaySecret: testRelaySecret,
		RelayURLs:   []string{"turn:" + relayPC.LocalAddr().String() + "?transport=udp"},
	})
	return &infra{rv: rv, relay: rl, url: url}
}

func (in *infra) node(t *testing.T, opts ...NodeOption) *Node {
	t.Helper()
	ctx := ctxT(t, 10*time.Second)
	// Loopback only: the test's traffic must not touch the host's other
	// interfaces.
	opts = append([]NodeOption{
		WithIdentity(newIdentity(t)), WithRendezvous(in.url),
		WithLoopbackCandidates(), WithCandidateFilter(func(ip net.IP) bool { return ip.IsLoopback() }),
	}, opts...)
	n, err := New(ctx, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := n.Close(); err != nil {
			t.Errorf("node close: %v", err)
		}
	})
	return n
}

// nodePair dials b from a and returns both ends.
func nodePair(t *testing.T, a, b *Node, opts ...DialOption) (*Conn, *Conn) {
	t.Helper()
	ctx := ctxT(t, 20*time.Second)
	acc := make(chan *Conn, 1)
	go func() {
		c, err := b.Accept(ctx)
		if err != nil {
			t.Error(err)
		}
		acc <- c
	}()
	ca, err := a.Dial(ctx, b.PeerID(), opts...)
	if err != nil {
		t.Fatal(err)
	}
	cb := <-acc
	if cb == nil {
		t.FailNow()
	}
	return ca, cb
}

func TestNodeDialAccept(t *testing.T) {
	testutil.CheckLeaks(t)
	testutil.Deadline(t, time.Minute)
	in := newInfra(t)
	for _, policy := range []RelayPolicy{RelayAuto, RelayAlways} {
		t.Run(policy.String(), func(t *testing.T) {
			a := in.node(t, WithRelayPolicy(policy))
			b := in.node(t, WithRelayPolicy(policy))
			ca, cb := nodePair(t, a, b)
			if ca.RemotePeer() != b.PeerID() || cb.RemotePeer() != a.PeerID() {
				t.Fatal("wrong peers")
			}
			p := ca.Path()
			t.Logf("%s: %s path %s %s -> %s %s, relay %s/%s, connect %v", policy, p.Kind(), p.LocalCandidate, p.LocalAddr, p.RemoteCandidate, p.RemoteAddr, p.Relay, p.RelayProtocol, p.ConnectTime)
			if want := policy == RelayAlways; p.Relayed != want {
				t.Errorf("relayed = %v, want %v", p.Relayed, want)
			}
			if p.ConnectTime <= 0 || p.LocalCandidate == "" {
				t.Errorf("path %+v", p)
			}
			ctx := ctxT(t, 20*time.Second)
			const size = 1 << 20
			data := make([]byte, size)
			for i := range data {
				data[i] = byte(i)
			}
			go func() {
				for i := 0; i < size; i += 16 << 10 {
					if err := ca.Send(ctx, data[i:i+16<<10]); err != nil {
						t.Error(err)
						return
					}
				}
			}()
			h := sha256.New()
			for got := 0; got < size; {
				m, err := cb.Recv(ctx)
				if err != nil {
					t.Fatal(err)
				}
				h.Write(m)
				got += len(m)
			}
			if sum := sha256.Sum256(data); string(h.Sum(nil)) != string(sum[:]) {
				t.Fatal("1 MiB arrived corrupted")
			}
			st, err := cb.OpenStream(ctx, "back")
			if err != nil {
				t.Fatal(err)
			}
			if _, err := st.Write([]byte("over the same path")); err != nil {
				t.Fatal(err)
			}
			_ = st.Close()
			rs, err := ca.AcceptStream(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if b, _ := io.ReadAll(rs); string(b) != "over the same path" {
				t.Fatalf("stream %q", b)
			}
			_ = ca.Close()
			_ = cb.Close()
		})
	}
}

func TestNodeDialOfflinePeer(t *testing.T) {
	testutil.CheckLeaks(t)
	testutil.Deadline(t, time.Minute)
	in := newInfra(t)
	a := in.node(t)
	ghost := newIdentity(t).PeerID()
	start := time.Now()
	_, err := a.Dial(ctxT(t, 10*time.Second), ghost)
	took := time.Since(start)
	if !errors.Is(err, ErrPeerNotFound) {
		t.Fatalf("dial offline peer: %v", err)
	}
	t.Logf("offline peer reported in %v: %v", took, err)
	if took > 2*time.Second {
		t.Errorf("ErrPeerNotFound took %v, want under 2 s", took)
	}
}

// The dialer's path dies: the conn reconnects through signaling and ICE,
// and resumes with nothing lost.
func TestNodeReconnectsOverNewPath(t *testing.T) {
	testutil.CheckLeaks(t)
	testutil.Deadline(t, time.Minute)
	in := newInfra(t)
	a := in.node(t, WithHeartbeat(200*time.Millisecond, 3))
	// A tiny receive window keeps most messages unsent at each kill.
	b := in.node(t, WithHeartbeat(200*time.Millisecond, 3), WithRecvWindow(64))
	ca, cb := nodePair(t, a, b)
	ctx := ctxT(t, 30*time.Second)
	const n = 2000
	done := make(chan error, 1)
	go func() {
		for i := range n {
			if err := ca.Send(ctx, fmt.Appendf(nil, "m%d", i)); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	for i := range n {
		if i == n/3 || i == 2*n/3 {
			testutil.WaitFor(t, 10*time.Second, "connected", func() bool { return ca.State() == StateConnected })
			_ = currentQUIC(ca).CloseWithError(codeAbandoned, "test: path lost")
		}
		m, err := cb.Recv(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if want := fmt.Sprintf("m%d", i); string(m) != want {
			t.Fatalf("got %q want %q", m, want)
		}
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if s := ca.Stats().Sessions; s < 3 {
		t.Fatalf("%d sessions, want 3", s)
	}
	t.Logf("path after reconnects: %s, %s", ca.Path().Kind(), ca.Path().LocalAddr)
}

func TestNewNodeErrors(t *testing.T) {
	ctx := ctxT(t, 5*time.Second)
	// Without an identity, New makes one (TestNewGeneratesIdentity).
	// (With no rendezvous, LAN discovery is on by default: internal/e2e
	// lan_test.go, in lab namespaces.)
	if _, err := New(ctx, WithIdentity(newIdentity(t)), WithLAN(false)); err == nil || !strings.Contains(err.Error(), "rendezvous") {
		t.Fatalf("no rendezvous: %v", err)
	}
	short, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancel()
	if _, err := New(short, WithIdentity(newIdentity(t)), WithRendezvous("ws://127.0.0.1:1/v1/signal")); err == nil {
		t.Fatal("unreachable rendezvous accepted")
	}
}

func TestEventHook(t *testing.T) {
	testutil.CheckLeaks(t)
	testutil.Deadline(t, time.Minute)
	in := newInfra(t)
	var mu sync.Mutex
	var got []string
	hook := WithEventHook(func(p PeerID, ev Event) {
		mu.Lock()
		got = append(got, p.Short()+" "+ev.State.String())
		mu.Unlock()
	})
	a := in.node(t, hook)
	b := in.node(t)
	ca, _ := nodePair(t, a, b)
	_ = ca.Close()
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	want := []string{b.PeerID().Short() + " connecting", b.PeerID().Short() + " connected", b.PeerID().Short() + " closed"}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("hook saw %v, want %v", got, want)
	}
}
