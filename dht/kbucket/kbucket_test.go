package kbucket

import (
	"errors"
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/ferrynet/ferry/identity"
)

type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time          { return c.t }
func (c *fakeClock) advance(d time.Duration) { c.t = c.t.Add(d) }

func newTable(t *testing.T, self identity.PeerID, opts ...Option) (*Table, *fakeClock) {
	t.Helper()
	clk := &fakeClock{t: time.Unix(1_700_000_000, 0)}
	tab, err := New(self, append([]Option{WithClock(clk.now)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return tab, clk
}

// idWithCPL returns an ID sharing exactly cpl bits with self, the rest
// drawn from r.
func idWithCPL(self identity.PeerID, cpl int, r *rand.Rand) identity.PeerID {
	tab := &Table{self: self}
	return tab.RandomID(cpl, r)
}

// addr returns a public address in the /24 numbered group.
func addr(group, host int) netip.AddrPort {
	return netip.AddrPortFrom(netip.AddrFrom4([4]byte{11, byte(group >> 8), byte(group), byte(host)}), 4000)
}

func TestRandomIDFallsInBucket(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	var self identity.PeerID
	self[0], self[31] = 0xa5, 0x3c
	tab, _ := newTable(t, self)
	for cpl := range IDBits {
		id := tab.RandomID(cpl, r)
		if got := CommonPrefixLen(self, id); got != cpl {
			t.Fatalf("RandomID(%d) has common prefix %d", cpl, got)
		}
	}
}

func TestSeenOrderAndUpdate(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	self := identity.PeerID{1}
	tab, clk := newTable(t, self, WithK(3))
	ids := []identity.PeerID{idWithCPL(self, 0, r), idWithCPL(self, 0, r), idWithCPL(self, 0, r)}
	for i, id := range ids {
		clk.advance(time.Second)
		if o, _ := tab.Seen(Contact{ID: id, Addr: addr(i, 1)}); o != Added {
			t.Fatalf("contact %d: %v, want added", i, o)
		}
	}
	// Seeing the head again moves it to the tail.
	clk.advance(time.Second)
	if o, _ := tab.Seen(Contact{ID: ids[0]}); o != Updated {
		t.Fatalf("re-seen contact: %v, want updated", o)
	}
	got := tab.Contacts()
	want := []identity.PeerID{ids[1], ids[2], ids[0]}
	for i := range want {
		if got[i].ID != want[i] {
			t.Fatalf("order after update: position %d is %s, want %s", i, got[i].ID.Short(), want[i].Short())
		}
	}
	if got[2].Addr != addr(0, 1) {
		t.Errorf("a contact seen without address lost its address: %v", got[2].Addr)
	}
	if ls, ok := tab.LastSeen(ids[0]); !ok || !ls.Equal(clk.t) {
		t.Errorf("LastSeen = %v %v, want %v", ls, ok, clk.t)
	}
	if o, _ := tab.Seen(Contact{ID: self}); o != Rejected {
		t.Errorf("own ID: %v, want rejected", o)
	}
}

// A full bucket keeps its head while the head answers the eviction ping, and
// replaces it with the newest replacement when the ping fails.
func TestPingBeforeEvict(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	self := identity.PeerID{2}
	tab, _ := newTable(t, self, WithK(2))
	a, b, c, d := idWithCPL(self, 1, r), idWithCPL(self, 1, r), idWithCPL(self, 1, r), idWithCPL(self, 1, r)
	tab.Seen(Contact{ID: a})
	tab.Seen(Contact{ID: b})
	o, ping := tab.Seen(Contact{ID: c})
	if o != Pending || ping.ID != a {
		t.Fatalf("newcomer to a full bucket: %v ping %s, want pending ping %s", o, ping.ID.Short(), a.Short())
	}
	if o2, _ := tab.Seen(Contact{ID: d}); o2 != Cached {
		t.Fatalf("second newcomer while pinging: %v, want cached", o2)
	}
	if tab.Contains(c) || tab.Contains(d) {
		t.Fatal("a newcomer entered a full bucket without an eviction")
	}
	// The head answers: it stays and moves to the tail.
	if o2, _ := tab.Seen(Contact{ID: a}); o2 != Updated {
		t.Fatalf("head answering its ping: %v", o2)
	}
	if got := tab.Contacts(); got[0].ID != b || got[1].ID != a {
		t.Fatal("the head that answered did not move to the tail")
	}
	// Next newcomer pings the new head, b, which fails: d (the newest
	// replacement) takes its place.
	e := idWithCPL(self, 1, r)
	o, ping = tab.Seen(Contact{ID: e})
	if o != Pending || ping.ID != b {
		t.Fatalf("got %v ping %s, want pending ping %s", o, ping.ID.Short(), b.Short())
	}
	if !tab.Failed(b) {
		t.Fatal("a failed eviction ping did not remove the head")
	}
	if !tab.Contains(e) || tab.Contains(b) || tab.Len() != 2 {
		t.Fatalf("after eviction: contains e %v, b %v, len %d", tab.Contains(e), tab.Contains(b), tab.Len())
	}
}

func TestFailuresRemoveAfterLimit(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	self := identity.PeerID{3}
	tab, _ := newTable(t, self, WithMaxFailures(2))
	a := idWithCPL(self, 4, r)
	tab.Seen(Contact{ID: a})
	if tab.Failed(a) {
		t.Fatal("one failure removed the contact")
	}
	tab.Seen(Contact{ID: a}) // an answer resets the count
	if tab.Failed(a) {
		t.Fatal("the failure count survived an answer")
	}
	if !tab.Failed(a) || tab.Contains(a) {
		t.Fatal("two failures in a row did not remove the contact")
	}
	if tab.Failed(identity.PeerID{9}) {
		t.Fatal("an unknown ID reported as removed")
	}
}

func TestIPDiversity(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 10))
	self := identity.PeerID{4}
	tab, _ := newTable(t, self, WithIPLimits(2, 3))
	// Two per bucket from one /24.
	for i := range 2 {
		if o, _ := tab.Seen(Contact{ID: idWithCPL(self, 0, r), Addr: addr(7, i)}); o != Added {
			t.Fatalf("contact %d of the /24: %v", i, o)
		}
	}
	if o, _ := tab.Seen(Contact{ID: idWithCPL(self, 0, r), Addr: addr(7, 9)}); o != Rejected {
		t.Fatalf("third of a /24 in one bucket: %v, want rejected", o)
	}
	// A third in another bucket is allowed (table limit 3), a fourth not.
	if o, _ := tab.Seen(Contact{ID: idWithCPL(self, 1, r), Addr: addr(7, 10)}); o != Added {
		t.Fatalf("third of a /24 in the table: %v", o)
	}
	if o, _ := tab.Seen(Contact{ID: idWithCPL(self, 2, r), Addr: addr(7, 11)}); o != Rejected {
		t.Fatalf("fourth of a /24 in the table: %v, want rejected", o)
	}
	// Other groups, private addresses and unknown addresses are not limited.
	for i := range 3 {
		for _, a := range []netip.AddrPort{
			addr(8, i),
			netip.MustParseAddrPort("192.168.1.1:1"),
			netip.MustParseAddrPort("127.0.0.1:1"),
			{},
		} {
			if o, _ := tab.Seen(Contact{ID: idWithCPL(self, 3+i, r), Addr: a}); o != Added {
				t.Fatalf("contact at %v: %v", a, o)
			}
		}
	}
	// IPv6 groups by /48.
	v6 := func(s string) netip.AddrPort { return netip.MustParseAddrPort("[" + s + "]:1") }
	tab.Seen(Contact{ID: idWithCPL(self, 9, r), Addr: v6("2001:db8:1:1::1")})
	tab.Seen(Contact{ID: idWithCPL(self, 9, r), Addr: v6("2001:db8:1:2::1")})
	if o, _ := tab.Seen(Contact{ID: idWithCPL(self, 9, r), Addr: v6("2001:db8:1:ffff::1")}); o != Rejected {
		t.Fatalf("third of a /48 in a bucket: %v, want rejected", o)
	}
	if o, _ := tab.Seen(Contact{ID: idWithCPL(self, 9, r), Addr: v6("2001:db8:2::1")}); o != Added {
		t.Fatalf("another /48: %v", o)
	}
	// A v4-mapped v6 address counts as its v4 /24.
	if o, _ := tab.Seen(Contact{ID: idWithCPL(self, 12, r), Addr: v6("::ffff:11.0.7.99")}); o != Rejected {
		t.Fatalf("v4-mapped address of a full /24: %v, want rejected", o)
	}
}

// A replacement that would break a diversity limit is not promoted.
func TestPromoteRespectsDiversity(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 12))
	self := identity.PeerID{5}
	tab, _ := newTable(t, self, WithK(2), WithIPLimits(1, 0))
	a, b := idWithCPL(self, 0, r), idWithCPL(self, 0, r)
	tab.Seen(Contact{ID: a, Addr: addr(1, 1)})
	tab.Seen(Contact{ID: b, Addr: addr(2, 1)})
	good, bad := idWithCPL(self, 0, r), idWithCPL(self, 0, r)
	tab.Seen(Contact{ID: good, Addr: addr(3, 1)}) // pending, ping a
	tab.Seen(Contact{ID: bad, Addr: addr(2, 2)})  // cached; same /24 as b
	tab.Failed(a)
	if !tab.Contains(good) || tab.Contains(bad) {
		t.Fatalf("promotion: good %v bad %v; want the diverse replacement", tab.Contains(good), tab.Contains(bad))
	}
}

func TestClosestMatchesSort(t *testing.T) {
	r := rand.New(rand.NewPCG(13, 14))
	var self identity.PeerID
	self[0] = 0x5a
	tab, _ := newTable(t, self, WithIPLimits(0, 0))
	var all []Contact
	for range 2000 {
		var id identity.PeerID
		for i := range id {
			id[i] = byte(r.Uint32())
		}
		if o, _ := tab.Seen(Contact{ID: id}); o == Added {
			all = append(all, Contact{ID: id})
		}
	}
	for trial := range 200 {
		var target identity.PeerID
		for i := range target {
			target[i] = byte(r.Uint32())
		}
		if trial%4 == 0 {
			target = tab.RandomID(r.IntN(8), r) // near self
		}
		if trial == 1 {
			target = self
		}
		want := slices.Clone(all)
		slices.SortFunc(want, func(a, b Contact) int { return compareDist(a.ID, b.ID, target) })
		for _, n := range []int{1, 20, 50} {
			got := tab.Closest(target, n)
			if len(got) != n {
				t.Fatalf("Closest(%d) returned %d", n, len(got))
			}
			for i := range got {
				if got[i].ID != want[i].ID {
					t.Fatalf("trial %d n %d: position %d differs from a full sort", trial, n, i)
				}
			}
		}
	}
	excl := all[0].ID
	for _, c := range tab.AppendClosest(nil, excl, 20, excl, true) {
		if c.ID == excl {
			t.Fatal("AppendClosest returned the excluded ID")
		}
	}
}

func TestStaleBuckets(t *testing.T) {
	r := rand.New(rand.NewPCG(15, 16))
	self := identity.PeerID{6}
	tab, clk := newTable(t, self, WithRefreshInterval(time.Minute))
	for cpl := range 3 {
		tab.Seen(Contact{ID: idWithCPL(self, cpl, r)})
	}
	if s := tab.StaleBuckets(); len(s) != 0 {
		t.Fatalf("fresh table has stale buckets %v", s)
	}
	clk.advance(time.Minute)
	tab.Touch(idWithCPL(self, 1, r))
	if s := tab.StaleBuckets(); !slices.Equal(s, []int{0, 2}) {
		t.Fatalf("stale buckets %v, want [0 2]", s)
	}
	clk.advance(30 * time.Second)
	tab.Touch(tab.RandomID(0, r))
	if s := tab.StaleBuckets(); !slices.Equal(s, []int{2}) {
		t.Fatalf("stale buckets %v, want [2]", s)
	}
}

func TestBadOptions(t *testing.T) {
	for name, o := range map[string]Option{
		"k0":       WithK(0),
		"k-big":    WithK(1000),
		"repl":     WithReplacementSize(-1),
		"ip":       WithIPLimits(-1, 2),
		"refresh":  WithRefreshInterval(0),
		"fails":    WithMaxFailures(0),
		"nilclock": WithClock(nil),
	} {
		if _, err := New(identity.PeerID{}, o); !errors.Is(err, ErrBadOption) {
			t.Errorf("%s: err %v, want ErrBadOption", name, err)
		}
	}
}

func TestRemove(t *testing.T) {
	r := rand.New(rand.NewPCG(17, 18))
	self := identity.PeerID{7}
	tab, _ := newTable(t, self, WithK(1))
	a, b := idWithCPL(self, 0, r), idWithCPL(self, 0, r)
	tab.Seen(Contact{ID: a})
	tab.Seen(Contact{ID: b}) // replacement
	if !tab.Remove(a) || !tab.Contains(b) {
		t.Fatal("Remove did not promote the replacement")
	}
	if tab.Remove(a) {
		t.Fatal("second Remove reported success")
	}
}

func TestHasRoom(t *testing.T) {
	r := rand.New(rand.NewPCG(19, 20))
	self := identity.PeerID{8}
	tab, _ := newTable(t, self, WithK(1))
	a, b := idWithCPL(self, 3, r), idWithCPL(self, 3, r)
	if !tab.HasRoom(a) || tab.HasRoom(self) {
		t.Fatal("HasRoom on an empty table")
	}
	tab.Seen(Contact{ID: a})
	if tab.HasRoom(a) || tab.HasRoom(b) {
		t.Fatal("HasRoom for a present contact or a full bucket")
	}
	if !tab.HasRoom(idWithCPL(self, 4, r)) {
		t.Fatal("HasRoom for another, empty bucket")
	}
}
