package icepath

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/transport/v5/vnet"

	"github.com/ferrynet/ferry/internal/testutil"
	"github.com/ferrynet/ferry/sdk/internal/vnetlab"
)

const (
	natIPA = vnetlab.NATIPA
	natIPB = vnetlab.NATIPB
)

var (
	fullCone  = vnetlab.FullCone
	portRestr = vnetlab.PortRestrictedCone
	symmetric = vnetlab.Symmetric
)

type lab struct{ *vnetlab.Lab }

func newLab(t *testing.T, natA, natB *vnet.NATType) *lab {
	t.Helper()
	l, err := vnetlab.New(natA, natB, vnetlab.Auth{User: "user", Password: "pass"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() })
	return &lab{l}
}

func (l *lab) config(n *vnet.Net, policy Policy) Config {
	return Config{
		STUN:   []string{vnetlab.STUNURL()},
		TURN:   []TURN{{URL: vnetlab.TURNURL(), Username: "user", Password: "pass"}},
		Policy: policy,
		Net:    n,
		Timing: Timing{FailedTimeout: 3 * time.Second},
	}
}

// connectPair runs both agents with in-memory signaling and returns the
// paths, or the dialer's error.
func connectPair(t *testing.T, a, b *Agent) (*PacketConn, *PacketConn, error) {
	t.Helper()
	return connectPairVia(t, a, b, func(to *Agent, cand string) {
		if err := to.AddRemote(cand); err != nil {
			t.Errorf("add remote: %v", err)
		}
	})
}

// connectPairVia is connectPair with signaling that hands each candidate to
// deliver, which passes it to the other agent (or holds it back).
func connectPairVia(t *testing.T, a, b *Agent, deliver func(to *Agent, cand string)) (*PacketConn, *PacketConn, error) {
	t.Helper()
	ua, pa, err := a.Credentials()
	if err != nil {
		t.Fatal(err)
	}
	ub, pb, err := b.Credentials()
	if err != nil {
		t.Fatal(err)
	}
	trickle := func(from, to *Agent) {
		if err := from.Gather(func(c string) {
			if c != "" {
				deliver(to, c)
			}
		}); err != nil {
			t.Fatal(err)
		}
	}
	trickle(a, b)
	trickle(b, a)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	type res struct {
		pc  *PacketConn
		err error
	}
	accepted := make(chan res, 1)
	go func() {
		pc, err := b.Connect(ctx, ua, pa)
		accepted <- res{pc, err}
	}()
	pcA, errA := a.Connect(ctx, ub, pb)
	rb := <-accepted
	if errA != nil {
		return nil, nil, errA
	}
	if rb.err != nil {
		return nil, nil, rb.err
	}
	return pcA, rb.pc, nil
}

func newAgent(t *testing.T, cfg Config, controlling bool) *Agent {
	t.Helper()
	ag, err := New(cfg, controlling)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ag.Close() })
	return ag
}

func exchange(t *testing.T, a, b *PacketConn) {
	t.Helper()
	for i := range 20 {
		msg := fmt.Appendf(nil, "packet %d", i)
		if _, err := a.WriteTo(msg, a.Peer()); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 1500)
		_ = b.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, from, err := b.ReadFrom(buf)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(buf[:n], msg) || from.String() != b.Peer().String() {
			t.Fatalf("got %q from %v", buf[:n], from)
		}
		a, b = b, a
	}
}

func TestPathsAcrossVirtualNATs(t *testing.T) {
	testutil.CheckLeaks(t)
	testutil.Deadline(t, 2*time.Minute)
	cases := []struct {
		name       string
		natA, natB *vnet.NATType
		policy     Policy
		relayed    bool
	}{
		{"full-cone x full-cone", fullCone, fullCone, PolicyAuto, false},
		{"port-restricted x port-restricted", portRestr, portRestr, PolicyAuto, false},
		{"symmetric x full-cone", symmetric, fullCone, PolicyAuto, false},
		{"symmetric x port-restricted", symmetric, portRestr, PolicyAuto, true},
		{"symmetric x symmetric", symmetric, symmetric, PolicyAuto, true},
		{"full-cone x full-cone, relay always", fullCone, fullCone, PolicyAlways, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			l := newLab(t, c.natA, c.natB)
			a := newAgent(t, l.config(l.NetA, c.policy), true)
			b := newAgent(t, l.config(l.NetB, c.policy), false)
			start := time.Now()
			pa, pb, err := connectPair(t, a, b)
			if err != nil {
				t.Fatal(err)
			}
			took := time.Since(start)
			if !c.relayed {
				// The first pair that works carries the path, a relayed
				// one too; the direct pair takes over when it answers.
				testutil.Poll(15*time.Second, func() bool {
					ia, _ := a.Path()
					ib, _ := b.Path()
					return !ia.Relayed && !ib.Relayed
				})
			}
			info, ok := a.Path()
			if !ok {
				t.Fatal("no selected path")
			}
			t.Logf("%s: %s %s -> %s %s in %v (relayed %v)", c.name, info.LocalType, info.LocalAddr, info.RemoteType, info.RemoteAddr, took.Round(time.Millisecond), info.Relayed)
			if info.Relayed != c.relayed {
				t.Errorf("relayed = %v, want %v", info.Relayed, c.relayed)
			}
			if info.Relayed && info.LocalType == "relay" && (info.RelayAddr != vnetlab.ServerIP+":"+fmt.Sprint(vnetlab.Port) || info.RelayProtocol != "udp") {
				t.Errorf("relay %q over %q, want the TURN server %s:%d over udp", info.RelayAddr, info.RelayProtocol, vnetlab.ServerIP, vnetlab.Port)
			}
			relayed := func() int64 {
				ia, _ := a.Path()
				ib, _ := b.Path()
				return ia.RelayBytes + ib.RelayBytes
			}
			before := relayed()
			exchange(t, pa, pb)
			// 20 packets of 8 or 9 bytes, each through the relay once
			// when relayed (counted by the side that owns the
			// allocation it crosses), never when direct.
			if d := relayed() - before; info.Relayed && d < 20*8 || !info.Relayed && d != 0 {
				t.Errorf("relayed %v: %d bytes of the exchange crossed the relay", info.Relayed, d)
			}
			if err := pa.Close(); err != nil {
				t.Error(err)
			}
			if err := pb.Close(); err != nil {
				t.Error(err)
			}
		})
	}
}

func TestNoPathExplainsWhatWasTried(t *testing.T) {
	testutil.CheckLeaks(t)
	testutil.Deadline(t, time.Minute)
	l := newLab(t, symmetric, symmetric)
	a := newAgent(t, l.config(l.NetA, PolicyNever), true)
	b := newAgent(t, l.config(l.NetB, PolicyNever), false)
	_, _, err := connectPair(t, a, b)
	if !errors.Is(err, ErrNoPath) {
		t.Fatalf("symmetric x symmetric without relays: %v, want ErrNoPath", err)
	}
	msg := err.Error()
	for _, want := range []string{"local candidates", "srflx", natIPA, "remote candidates", natIPB, "pairs checked"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error does not mention %q: %s", want, msg)
		}
	}
}

func TestBadRemoteCandidate(t *testing.T) {
	ag, err := New(Config{}, true)
	if err != nil {
		t.Fatal(err)
	}
	defer ag.Close()
	for _, c := range []string{"", "garbage", "candidate:1 1 udp 1 999.1.1.1 1 typ host", "1 1 udp x 10.0.0.1 1 typ host"} {
		if err := ag.AddRemote(c); err == nil {
			t.Errorf("AddRemote(%q) accepted", c)
		}
	}
	if _, err := New(Config{STUN: []string{"http://nope"}}, true); err == nil {
		t.Error("bad STUN URL accepted")
	}
	if _, err := New(Config{TURN: []TURN{{URL: "stun:1.2.3.4"}}}, true); err == nil {
		t.Error("stun: URL accepted as TURN")
	}
}

// A relayed pair names the relay server of its TURN URL (matched by
// transport, then by the allocation's address), never the local socket
// that reaches it; a pair relayed only on the peer's side names the
// peer's allocation.
func TestRelayAddress(t *testing.T) {
	ag, err := New(Config{TURN: []TURN{
		{URL: "turn:198.51.100.7:3478?transport=udp"},
		{URL: "turn:198.51.100.9:3478?transport=udp"},
		{URL: "turn:relay.test:3478?transport=tcp"},
		{URL: "turns:relay.test:5349?transport=tcp"},
	}}, true)
	if err != nil {
		t.Fatal(err)
	}
	defer ag.Close()
	remote, err := ice.NewCandidateHost(&ice.CandidateHostConfig{Network: "udp", Address: "203.0.113.5", Port: 4000, Component: 1})
	if err != nil {
		t.Fatal(err)
	}
	relayed := func(addr, proto string) ice.Candidate {
		c, err := ice.NewCandidateRelay(&ice.CandidateRelayConfig{Network: "udp", Address: addr, Port: 50000, Component: 1, RelAddr: "0.0.0.0", RelPort: 40055, RelayProtocol: proto})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	for _, c := range []struct{ alloc, proto, want string }{
		{"198.51.100.9", "udp", "198.51.100.9:3478"},
		{"198.51.100.7", "udp", "198.51.100.7:3478"},
		{"198.51.100.8", "udp", "198.51.100.7:3478"}, // no host matches: the first udp relay
		{"198.51.100.9", "tcp", "relay.test:3478"},
		{"198.51.100.9", "tls", "relay.test:5349"},
	} {
		inf := ag.pairInfo(relayed(c.alloc, c.proto), remote)
		if !inf.Relayed || inf.RelayAddr != c.want || inf.RelayProtocol != c.proto || inf.LocalProtocol != c.proto {
			t.Errorf("allocation %s over %s: relay %q over %q (relayed %v), want %q", c.alloc, c.proto, inf.RelayAddr, inf.RelayProtocol, inf.Relayed, c.want)
		}
	}
	host, err := ice.NewCandidateHost(&ice.CandidateHostConfig{Network: "udp", Address: "10.1.0.2", Port: 4000, Component: 1})
	if err != nil {
		t.Fatal(err)
	}
	if inf := ag.pairInfo(host, relayed("198.51.100.20", "udp")); !inf.Relayed || inf.RelayAddr != "198.51.100.20:50000" || inf.RelayProtocol != "udp" {
		t.Errorf("peer's relayed candidate: relay %q over %q (relayed %v), want its allocation over udp", inf.RelayAddr, inf.RelayProtocol, inf.Relayed)
	}
	if inf := ag.pairInfo(host, remote); inf.Relayed || inf.RelayAddr != "" || inf.RelayProtocol != "" {
		t.Errorf("direct pair: %+v names a relay", inf)
	}
}
