package sdk

import "testing"

func TestLANDefault(t *testing.T) {
	cases := []struct {
		name string
		opts []NodeOption
		want bool
	}{
		{"no rendezvous", nil, true},
		{"rendezvous", []NodeOption{WithRendezvous("ws://x")}, false},
		{"rendezvous, LAN on", []NodeOption{WithRendezvous("ws://x"), WithLAN(true)}, true},
		{"no rendezvous, LAN off", []NodeOption{WithLAN(false)}, false},
	}
	for _, c := range cases {
		cfg := defaultConfig()
		if err := applyOpts(&cfg, c.opts, NodeOption.applyNode); err != nil {
			t.Fatal(err)
		}
		if got := cfg.node.lanEnabled(); got != c.want {
			t.Errorf("%s: LAN %v, want %v", c.name, got, c.want)
		}
	}
}

func TestLANPeersOff(t *testing.T) {
	if ps := (&Node{}).LANPeers(); ps != nil {
		t.Fatalf("LANPeers with LAN off = %v", ps)
	}
}
