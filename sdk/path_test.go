package sdk

import (
	"testing"
	"time"

	"github.com/ferrynet/ferry/internal/testutil"
)

// The zero Path (no session) is neither direct nor relayed.
func TestPathKind(t *testing.T) {
	cases := []struct {
		p    Path
		want string
	}{
		{Path{}, "none"},
		{Path{RTT: time.Millisecond}, "none"},
		{Path{LocalAddr: "10.0.0.1:1", RemoteAddr: "10.0.0.2:2"}, "direct"},
		{Path{Relayed: true, LocalAddr: "10.0.0.1:1", RemoteAddr: "10.0.0.2:2"}, "relay"},
	}
	for _, c := range cases {
		if got := c.p.Kind(); got != c.want {
			t.Errorf("%+v: Kind() = %q, want %q", c.p, got, c.want)
		}
	}
}

// A relayed Path names the relay server (where its TURN URL points), not
// the local socket that reaches it; it says when it was selected; and a
// closed connection's Path is "none".
func TestPathTellsTheRelay(t *testing.T) {
	testutil.CheckLeaks(t)
	testutil.Deadline(t, time.Minute)
	in := newInfra(t)
	a := in.node(t, WithRelayPolicy(RelayAlways))
	b := in.node(t, WithRelayPolicy(RelayAlways))
	before := time.Now()
	ca, cb := nodePair(t, a, b)
	want := in.relay.UDPAddrs()[0].String()
	for side, c := range map[string]*Conn{"dialer": ca, "acceptor": cb} {
		p := c.Path()
		if p.Kind() != "relay" || p.Relay != want || p.RelayProtocol != "udp" {
			t.Errorf("%s: path %s, relay %q over %q; want relay %q over udp", side, p.Kind(), p.Relay, p.RelayProtocol, want)
		}
		if p.SelectedAt.Before(before) || p.SelectedAt.After(time.Now()) {
			t.Errorf("%s: selected at %v, not between the dial (%v) and now", side, p.SelectedAt, before)
		}
		if p.Upgrades != 0 {
			t.Errorf("%s: %d upgrades on a relay-only path", side, p.Upgrades)
		}
	}
	if err := ca.Close(); err != nil {
		t.Fatal(err)
	}
	if p := ca.Path(); p.Kind() != "none" || p.Relay != "" {
		t.Errorf("closed connection's path: %s %+v, want none", p.Kind(), p)
	}
	_ = cb.Close()
}
