package sdk

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pion/stun/v4"

	"github.com/ferrynet/ferry/dht"
	"github.com/ferrynet/ferry/dht/kbucket"
	"github.com/ferrynet/ferry/internal/natprobe"
	"github.com/ferrynet/ferry/internal/nattype"
	"github.com/ferrynet/ferry/internal/rvtest"
	"github.com/ferrynet/ferry/server/rendezvous"
)

func TestReachVerdict(t *testing.T) {
	r := func(mode string, m, f nattype.Behaviour) *natprobe.Result {
		return &natprobe.Result{Mode: mode, Mapping: m, Filtering: f, NATType: nattype.Classify(m, f), Server: "192.0.2.1:3478"}
	}
	EI, AD, APD := nattype.EndpointIndependent, nattype.AddressDependent, nattype.AddressAndPortDependent
	for _, c := range []struct {
		name string
		res  *natprobe.Result
		err  error
		want DHTMode
		why  string
	}{
		{"open", r("rfc5780", nattype.NoNAT, EI), nil, DHTServer, "no NAT"},
		{"full cone", r("rfc5780", EI, EI), nil, DHTServer, "endpoint-independent"},
		{"firewalled", r("rfc5780", nattype.NoNAT, APD), nil, DHTClient, "filtering"},
		{"restricted", r("rfc5780", EI, AD), nil, DHTClient, "filtering"},
		{"port restricted", r("rfc5780", EI, APD), nil, DHTClient, "filtering"},
		{"symmetric", r("rfc5780", APD, APD), nil, DHTClient, "filtering"},
		{"symmetric, open filter", r("rfc5780", APD, EI), nil, DHTClient, "mapping"},
		{"unknown mapping", r("rfc5780", nattype.Unknown, EI), nil, DHTClient, "mapping"},
		{"basic server", r("basic", nattype.Unknown, nattype.Unknown), nil, DHTClient, "RFC 5780"},
		{"udp blocked", r("udp-blocked", nattype.Unknown, nattype.Unknown), nil, DHTClient, "RFC 5780"},
		{"probe error", nil, errors.New("boom"), DHTClient, "probe failed: boom"},
		{"no other address", nil, fmt.Errorf("STUN server x: %w", errNoRFC5780), DHTClient, "unknown: STUN server x: no RFC 5780"},
		{"no result", nil, nil, DHTClient, "no result"},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := reachVerdict(c.res, c.err)
			if got.mode != c.want || !strings.Contains(got.reason, c.why) {
				t.Fatalf("verdict %v (%q), want %v with %q", got.mode, got.reason, c.want, c.why)
			}
		})
	}
}

func TestDHTModeString(t *testing.T) {
	for m, want := range map[DHTMode]string{DHTAuto: "auto", DHTClient: "client", DHTServer: "server", 7: "DHTMode(7)"} {
		if m.String() != want {
			t.Errorf("%d: %q, want %q", int(m), m.String(), want)
		}
	}
}

func TestAsPeerRequest(t *testing.T) {
	for _, req := range []dht.Request{&dht.Ping{Server: true}, &dht.FindNode{Server: true}, &dht.Get{Server: true}, &dht.Put{Server: true}} {
		got := asPeerRequest(req)
		if got.FromServer() {
			t.Errorf("%v still says server", got.Type())
		}
		if !req.FromServer() {
			t.Errorf("%v: the original was changed", req.Type())
		}
	}
}

// fixedProbe is a probe hook returning res and err.
func fixedProbe(res *natprobe.Result, err error) reachProbeFunc {
	return func(context.Context) (*natprobe.Result, error) { return res, err }
}

// startDiscoveryOn starts discovery on a new node of in with o, retrying
// until the rendezvous' DHT node answers.
func startDiscoveryOn(t *testing.T, ctx context.Context, in *infra, o DiscoveryOptions) (*Node, *Discovery) {
	t.Helper()
	n := in.node(t)
	for {
		d, err := n.StartDiscovery(ctx, o)
		if err == nil {
			return n, d
		}
		if ctx.Err() != nil {
			t.Fatalf("start discovery: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestDiscoveryDHTModes: forced modes stand, auto follows the probe (a
// full cone serves, a failed probe does not), a bad mode is refused; a
// server node stores others' records and a later node finds the server
// nodes (and only them) in its routing table.
func TestDiscoveryDHTModes(t *testing.T) {
	in := newDHTInfra(t)
	ctx := ctxT(t, 90*time.Second)
	fullCone := &natprobe.Result{Mode: "rfc5780", Mapping: nattype.EndpointIndependent, Filtering: nattype.EndpointIndependent, NATType: "full-cone"}
	probeRan := false
	forced := func(context.Context) (*natprobe.Result, error) { probeRan = true; return fullCone, nil }

	n := in.node(t)
	if _, err := n.StartDiscovery(ctx, DiscoveryOptions{DHTMode: 9}); err == nil || !strings.Contains(err.Error(), "unknown DHT mode") {
		t.Fatalf("mode 9: %v, want an unknown-mode error", err)
	}

	_, fc := startDiscoveryOn(t, ctx, in, DiscoveryOptions{probe: fixedProbe(fullCone, nil)})
	_, srv := startDiscoveryOn(t, ctx, in, DiscoveryOptions{DHTMode: DHTServer, probe: forced})
	_, cli := startDiscoveryOn(t, ctx, in, DiscoveryOptions{DHTMode: DHTClient, probe: forced})
	_, failed := startDiscoveryOn(t, ctx, in, DiscoveryOptions{probe: fixedProbe(nil, errors.New("no answer"))})
	if probeRan {
		t.Error("a forced mode ran the probe")
	}
	for _, c := range []struct {
		name string
		d    *Discovery
		want DHTMode
		why  string
	}{
		{"auto, full cone", fc, DHTServer, "endpoint-independent"},
		{"forced server", srv, DHTServer, "forced"},
		{"forced client", cli, DHTClient, "forced"},
		{"auto, probe failed", failed, DHTClient, "no answer"},
	} {
		if c.d.Mode() != c.want || !strings.Contains(c.d.ModeReason(), c.why) {
			t.Errorf("%s: mode %v (%q), want %v with %q", c.name, c.d.Mode(), c.d.ModeReason(), c.want, c.why)
		}
	}

	// A server node stores a record for another node; a client refuses.
	rec := &dht.Record{Seq: 1, Expires: time.Now().Add(time.Hour), Rendezvous: []string{in.url}}
	if err := rec.Sign(newIdentity(t)); err != nil {
		t.Fatal(err)
	}
	put := func(to *Discovery) dht.PutCode {
		t.Helper()
		m, err := cli.tr.Request(ctx, kbucket.Contact{ID: to.n.PeerID()}, &dht.Put{Record: rec})
		if err != nil {
			t.Fatalf("put: %v", err)
		}
		pr, ok := m.(*dht.PutResult)
		if !ok {
			t.Fatalf("put answered with %v", m.Type())
		}
		return pr.Code
	}
	if c := put(srv); c != dht.PutStored {
		t.Errorf("server node answered a PUT with %v, want stored", c)
	}
	if c := put(failed); c != dht.PutNotServer {
		t.Errorf("client node answered a PUT with %v, want not-a-server", c)
	}

	// The server nodes announce themselves in the background; only
	// they do.
	waitFor(t, "the server nodes' announcements", func() bool {
		ps, err := cli.Lookup(ctx, DHTServersTopic)
		ids := make([]PeerID, 0, len(ps))
		for _, p := range ps {
			ids = append(ids, p.ID)
		}
		return err == nil && len(ids) == 2 && slices.Contains(ids, fc.n.PeerID()) && slices.Contains(ids, srv.n.PeerID())
	})
	// A node started now finds the server nodes through their
	// announcement and keeps them in its table; never the client nodes.
	_, late := startDiscoveryOn(t, ctx, in, DiscoveryOptions{DHTMode: DHTClient})
	waitFor(t, "the server nodes in the late node's table", func() bool {
		cs := late.Contacts()
		return slices.Contains(cs, fc.n.PeerID()) && slices.Contains(cs, srv.n.PeerID())
	})
	for _, c := range late.Contacts() {
		if c == cli.n.PeerID() || c == failed.n.PeerID() {
			t.Errorf("client node %s in the table", c.Short())
		}
	}
	// And its lookups get answers from them: the record stored only on
	// the server node is found.
	got, err := late.d.Get(ctx, rec.Key())
	if err != nil || !slices.ContainsFunc(got, func(r *dht.Record) bool { return r.PeerID() == rec.PeerID() }) {
		t.Fatalf("lookup of the record stored on a server node: %d records, err %v", len(got), err)
	}
}

// TestDiscoveryAutoProbeLoopback runs the real probe against a rendezvous
// whose STUN has two loopback addresses and two ports (RFC 5780): on
// loopback there is no NAT and no filtering, so the node serves.
func TestDiscoveryAutoProbeLoopback(t *testing.T) {
	conns := rfc5780Loopback(t)
	rv, url := rvtest.Start(t, rendezvous.Config{STUNConns: conns, DHTIdentity: newIdentity(t)})
	in := &infra{rv: rv, url: url}
	ctx := ctxT(t, 60*time.Second)
	_, d := startDiscoveryOn(t, ctx, in, DiscoveryOptions{})
	if d.Mode() != DHTServer || !strings.Contains(d.ModeReason(), "no NAT") {
		t.Fatalf("mode %v (%q), want server: no NAT", d.Mode(), d.ModeReason())
	}
	// A server whose STUN has one address cannot tell: client.
	in1 := newDHTInfra(t)
	_, d1 := startDiscoveryOn(t, ctx, in1, DiscoveryOptions{})
	if d1.Mode() != DHTClient || !strings.Contains(d1.ModeReason(), "RFC 5780") {
		t.Fatalf("one STUN address: mode %v (%q), want client: no RFC 5780", d1.Mode(), d1.ModeReason())
	}
}

// rfc5780Loopback binds STUN sockets on 127.0.0.1 and 127.0.0.2, each on
// the same two ports.
func rfc5780Loopback(t *testing.T) []net.PacketConn {
	t.Helper()
	var lc net.ListenConfig
	for range 20 {
		a, err := lc.ListenPacket(t.Context(), "udp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		b, err := lc.ListenPacket(t.Context(), "udp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		conns := []net.PacketConn{a, b}
		ok := true
		for _, pc := range []net.PacketConn{a, b} {
			port := netip.MustParseAddrPort(pc.LocalAddr().String()).Port()
			c, err := lc.ListenPacket(t.Context(), "udp4", fmt.Sprintf("127.0.0.2:%d", port))
			if err != nil {
				ok = false
				break
			}
			conns = append(conns, c)
		}
		if ok {
			t.Cleanup(func() {
				for _, c := range conns {
					_ = c.Close()
				}
			})
			return conns
		}
		for _, c := range conns {
			_ = c.Close()
		}
	}
	t.Fatal("no two ports free on both 127.0.0.1 and 127.0.0.2")
	return nil
}

// TestCheckRFC5780 covers the one-Binding check against bad servers: one
// without OTHER-ADDRESS, one whose OTHER-ADDRESS is itself, one with a
// proper one, and one that never answers.
func TestCheckRFC5780(t *testing.T) {
	var lc net.ListenConfig
	fake := func(t *testing.T, other func(self netip.AddrPort) *stun.OtherAddress) string {
		t.Helper()
		pc, err := lc.ListenPacket(t.Context(), "udp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = pc.Close() })
		self := netip.MustParseAddrPort(pc.LocalAddr().String())
		if other == nil {
			return self.String() // never answers
		}
		go func() {
			buf := make([]byte, 1500)
			for {
				n, from, err := pc.ReadFrom(buf)
				if err != nil {
					return
				}
				req := &stun.Message{Raw: append([]byte(nil), buf[:n]...)}
				if req.Decode() != nil {
					continue
				}
				ua := from.(*net.UDPAddr)
				setters := []stun.Setter{req, stun.BindingSuccess, &stun.XORMappedAddress{IP: ua.IP, Port: ua.Port}}
				if o := other(self); o != nil && o.Port != 0 {
					setters = append(setters, o)
				}
				resp, err := stun.Build(setters...)
				if err != nil {
					continue
				}
				_, _ = pc.WriteTo(resp.Raw, from)
			}
		}()
		return self.String()
	}
	cfg := func(server string) natprobe.Config {
		return natprobe.Config{Server: server, ListenPacket: lc.ListenPacket}
	}
	n := &Node{}
	ctx := ctxT(t, 30*time.Second)
	none := fake(t, func(netip.AddrPort) *stun.OtherAddress { return &stun.OtherAddress{} })
	if err := n.checkRFC5780(ctx, cfg(none)); !errors.Is(err, errNoRFC5780) {
		t.Errorf("no OTHER-ADDRESS: %v, want errNoRFC5780", err)
	}
	same := fake(t, func(s netip.AddrPort) *stun.OtherAddress {
		return &stun.OtherAddress{IP: s.Addr().AsSlice(), Port: int(s.Port())}
	})
	if err := n.checkRFC5780(ctx, cfg(same)); !errors.Is(err, errNoRFC5780) || !strings.Contains(err.Error(), "does not differ") {
		t.Errorf("OTHER-ADDRESS is the server itself: %v, want errNoRFC5780", err)
	}
	good := fake(t, func(s netip.AddrPort) *stun.OtherAddress {
		return &stun.OtherAddress{IP: net.IPv4(127, 0, 0, 2), Port: int(s.Port()) + 1}
	})
	if err := n.checkRFC5780(ctx, cfg(good)); err != nil {
		t.Errorf("proper OTHER-ADDRESS: %v", err)
	}
	silent := fake(t, nil)
	if err := n.checkRFC5780(ctx, cfg(silent)); err == nil || errors.Is(err, errNoRFC5780) {
		t.Errorf("silent server: %v, want a timeout", err)
	}
}
