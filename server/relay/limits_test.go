package relay

import (
	"net/netip"
	"testing"
)

// The unauthenticated-reply limit counts an IPv6 /64 as one source, and an
// IPv4-mapped address as the IPv4 address.
func TestIPLimiterKeysSources(t *testing.T) {
	for _, pair := range [][2]string{
		{"2001:db8:1:2::1", "2001:db8:1:2:ffff::9"},
		{"192.0.2.7", "::ffff:192.0.2.7"},
	} {
		l := newIPLimiter(0.001) // burst 1, no refill during the test
		if !l.allow(netip.MustParseAddr(pair[0])) {
			t.Fatalf("first reply to %s refused", pair[0])
		}
		if l.allow(netip.MustParseAddr(pair[1])) {
			t.Errorf("%s got a reply of its own after %s used up their shared one", pair[1], pair[0])
		}
	}
	if l := newIPLimiter(-1); !l.allow(netip.MustParseAddr("192.0.2.1")) {
		t.Error("a negative rate must mean no limit")
	}
}

// The per-IP allocation and connection caps count an IPv6 /64 as one source
// and an IPv4-mapped address as the IPv4 address; releases give back what
// was taken.
func TestPerSourceCounters(t *testing.T) {
	a := netip.MustParseAddr
	q := newQuota(-1, 2, 0)
	if r := q.acquire("u1", a("2001:db8:1:2::1")); r != "" {
		t.Fatal(r)
	}
	if r := q.acquire("u2", a("2001:db8:1:2:ffff::9")); r != "" {
		t.Fatal(r)
	}
	if r := q.acquire("u3", a("2001:db8:1:2::3")); r != QuotaIP {
		t.Fatalf("third allocation from one /64: %q, want %q", r, QuotaIP)
	}
	if r := q.acquire("u3", a("2001:db8:1:3::3")); r != "" {
		t.Fatalf("the next /64: %q", r)
	}
	q.release("u1", a("2001:db8:1:2::1"))
	if r := q.check("u4", a("2001:db8:1:2::4")); r != "" {
		t.Fatalf("after a release: %q", r)
	}
	c := newIPCounter(1)
	if !c.acquire(a("192.0.2.7")) || c.acquire(a("::ffff:192.0.2.7")) || !c.full(a("192.0.2.7")) {
		t.Fatal("an IPv4-mapped address is not the same source as its IPv4 address")
	}
	c.release(a("::ffff:192.0.2.7"))
	if c.full(a("192.0.2.7")) || len(c.n) != 0 {
		t.Fatalf("release left %v", c.n)
	}
}

// A user ID carries the user and the source, whatever the username holds.
func TestUserIDCarriesSource(t *testing.T) {
	for _, tc := range []struct{ user, src, key string }{
		{"1700000000:alice", "192.0.2.7", "192.0.2.7"},
		{"static", "::ffff:192.0.2.7", "192.0.2.7"},
		{"weird\x00name\x00", "2001:db8:1:2::99", "2001:db8:1:2::"},
		{"", "2001:db8::1", "2001:db8::"},
	} {
		user, src := splitUserID(userIDOf(tc.user, netip.MustParseAddr(tc.src)))
		if user != tc.user || src != netip.MustParseAddr(tc.key) {
			t.Errorf("%q from %s: got %q, %v; want %q, %s", tc.user, tc.src, user, src, tc.user, tc.key)
		}
	}
	if user, src := splitUserID("plain"); user != "plain" || src.IsValid() {
		t.Errorf("a user ID without source: %q %v", user, src)
	}
}
