package dht

import (
	"crypto/ed25519"
	"crypto/sha256"
	"net/netip"
	"testing"
	"time"

	"github.com/ferrynet/ferry/dht/kbucket"
	"github.com/ferrynet/ferry/identity"
)

// testIdentity returns a deterministic identity named by name.
func testIdentity(t testing.TB, name string) *identity.Identity {
	t.Helper()
	seed := sha256.Sum256([]byte("dht test key " + name))
	id, err := identity.FromPrivateKey(ed25519.NewKeyFromSeed(seed[:]))
	if err != nil {
		t.Fatal(err)
	}
	return id
}

var testNow = time.Unix(1_800_000_000, 0)

func signedRecord(t testing.TB, id *identity.Identity, seq uint64, mod func(*Record)) *Record {
	t.Helper()
	r := &Record{
		Seq:        seq,
		Expires:    testNow.Add(time.Hour),
		Rendezvous: []string{"wss://rv1.example.net/v1/signal"},
	}
	if mod != nil {
		mod(r)
	}
	if err := r.Sign(id); err != nil {
		t.Fatal(err)
	}
	return r
}

func testContact(t testing.TB, name string, addr string) kbucket.Contact {
	t.Helper()
	c := kbucket.Contact{ID: testIdentity(t, name).PeerID()}
	if addr != "" {
		c.Addr = netip.MustParseAddrPort(addr)
	}
	return c
}

func parseAddrs(ss ...string) []netip.AddrPort {
	var out []netip.AddrPort
	for _, s := range ss {
		out = append(out, netip.MustParseAddrPort(s))
	}
	return out
}
