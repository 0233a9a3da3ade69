package main

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestDHTOptions(t *testing.T) {
	o := &options{}
	if id, err := o.dhtIdentity(); err != nil || id != nil {
		t.Fatalf("no DHT flags: identity %v, err %v", id, err)
	}
	o.DHTBootstrap = []string{"ws://b/v1/signal", "ws://c/v1/signal"}
	o.BootstrapSeeds = []string{"ws://c/v1/signal"}
	if got, want := o.seeds(), []string{"ws://c/v1/signal", "ws://b/v1/signal"}; !slices.Equal(got, want) {
		t.Fatalf("seeds %q, want %q", got, want)
	}
	a, err := o.dhtIdentity()
	if err != nil || a == nil {
		t.Fatalf("--dht-bootstrap without a key file: %v, %v", a, err)
	}
	o.DHTIdentity = filepath.Join(t.TempDir(), "dht.key")
	k1, err := o.dhtIdentity()
	if err != nil {
		t.Fatal(err)
	}
	k2, err := o.dhtIdentity()
	if err != nil || k2.PeerID() != k1.PeerID() {
		t.Fatalf("the key file was not kept: %v", err)
	}
	bad := filepath.Join(t.TempDir(), "bad.key")
	if err := os.WriteFile(bad, []byte("not a key"), 0o600); err != nil {
		t.Fatal(err)
	}
	o.DHTIdentity = bad
	if _, err := o.dhtIdentity(); err == nil || !strings.Contains(err.Error(), "--dht-identity") {
		t.Fatalf("corrupt key file: %v", err)
	}
}
