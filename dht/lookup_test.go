package dht

import (
	"errors"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/ferrynet/ferry/dht/kbucket"
	"github.com/ferrynet/ferry/identity"
)

func randomID(r *rand.Rand) identity.PeerID {
	var id identity.PeerID
	for i := range id {
		id[i] = byte(r.Uint32())
	}
	return id
}

// world is a network of full Kademlia tables: every node was offered every
// other, in random order, so buckets near the node are complete and far ones
// hold 20 of many; a lookup needs hops.
type world struct {
	ids    []identity.PeerID
	tables map[identity.PeerID]*kbucket.Table
}

func newWorld(t *testing.T, n int, r *rand.Rand) *world {
	t.Helper()
	w := &world{tables: map[identity.PeerID]*kbucket.Table{}}
	for range n {
		w.ids = append(w.ids, randomID(r))
	}
	for _, id := range w.ids {
		tab, err := kbucket.New(id, kbucket.WithIPLimits(0, 0))
		if err != nil {
			t.Fatal(err)
		}
		for _, j := range r.Perm(n) {
			tab.Seen(kbucket.Contact{ID: w.ids[j]})
		}
		w.tables[id] = tab
	}
	return w
}

func (w *world) trueClosest(target identity.PeerID, k int) []identity.PeerID {
	ids := slices.Clone(w.ids)
	slices.SortFunc(ids, func(a, b identity.PeerID) int {
		if kbucket.Closer(a, b, target) {
			return -1
		}
		if kbucket.Closer(b, a, target) {
			return 1
		}
		return 0
	})
	return ids[:k]
}

// drive runs l to the end, answering synchronously in the order Next asks;
// dead nodes fail.
func (w *world) drive(l *Lookup, dead map[identity.PeerID]bool, onQuery func(kbucket.Contact)) {
	var queue []kbucket.Contact
	for {
		for {
			c, ok := l.Next()
			if !ok {
				break
			}
			queue = append(queue, c)
		}
		if len(queue) == 0 {
			return
		}
		c := queue[0]
		queue = queue[1:]
		if onQuery != nil {
			onQuery(c)
		}
		if dead[c.ID] {
			l.Failure(c.ID)
			continue
		}
		l.Response(c.ID, w.tables[c.ID].Closest(l.Target(), 20))
	}
}

func TestLookupFindsClosest(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 1))
	w := newWorld(t, 1000, r)
	maxHops := 0
	for trial := range 50 {
		self := w.ids[trial]
		target := w.ids[r.IntN(len(w.ids))]
		if trial%2 == 0 {
			target = randomID(r)
		}
		l, err := NewLookup(target, self, w.tables[self].Closest(target, 20), LookupConfig{Confirm: trial%3 != 0})
		if err != nil {
			t.Fatal(err)
		}
		w.drive(l, nil, nil)
		if trial%3 == 0 {
			// The β rule alone: the β closest answered.
			got := l.Result()
			want := w.trueClosest(target, 4)
			want = slices.DeleteFunc(want, func(id identity.PeerID) bool { return id == self })
			for i := range 3 {
				if got[i].ID != want[i] {
					t.Fatalf("trial %d (beta rule): result %d is not the true %d-th closest", trial, i, i)
				}
			}
			continue
		}
		if !l.Done() || l.InFlight() != 0 {
			t.Fatal("lookup did not end")
		}
		got := l.Result()
		want := w.trueClosest(target, 21)
		// Confirmed: the k closest (not counting self) must be found.
		var wantIDs []identity.PeerID
		for _, id := range want {
			if id != self {
				wantIDs = append(wantIDs, id)
			}
		}
		for i := range 20 {
			if got[i].ID != wantIDs[i] {
				t.Fatalf("trial %d: result %d is not the true %d-th closest", trial, i, i)
			}
		}
		if len(got) != 20 {
			t.Fatalf("trial %d: %d results, want 20", trial, len(got))
		}
		if d, ok := l.Heard(wantIDs[0]); ok {
			maxHops = max(maxHops, d)
		}
		for _, c := range got {
			if c.ID == self {
				t.Fatal("the lookup returned its own node")
			}
		}
	}
	if maxHops == 0 {
		t.Error("every target was in the seeds; the test world is too small to need hops")
	}
}

func TestLookupAlphaAndFailures(t *testing.T) {
	r := rand.New(rand.NewPCG(2, 2))
	w := newWorld(t, 500, r)
	self, target := w.ids[0], randomID(r)
	dead := map[identity.PeerID]bool{}
	for _, id := range w.trueClosest(target, 2) {
		dead[id] = true // the two closest are down
	}
	l, err := NewLookup(target, self, w.tables[self].Closest(target, 20), LookupConfig{Alpha: 2, Paths: 1})
	if err != nil {
		t.Fatal(err)
	}
	// α bounds what is in flight.
	n := 0
	for {
		if _, ok := l.Next(); !ok {
			break
		}
		n++
	}
	if n != 2 || l.InFlight() != 2 {
		t.Fatalf("with alpha 2, %d requests in flight", n)
	}
	l2, _ := NewLookup(target, self, w.tables[self].Closest(target, 20), LookupConfig{Confirm: true})
	w.drive(l2, dead, nil)
	for _, c := range l2.Result() {
		if dead[c.ID] {
			t.Fatal("a node that failed is in the result")
		}
	}
	if got, want := l2.Result()[0].ID, w.trueClosest(target, 3)[2]; got != want {
		t.Fatal("with the two closest dead, the third closest is not first")
	}
	// An answer from a node never asked changes nothing.
	if h := l2.Response(randomID(r), nil); h != 0 {
		t.Fatal("unsolicited answer accepted")
	}
}

func TestLookupStarvesAndStops(t *testing.T) {
	l, err := NewLookup(identity.PeerID{1}, identity.PeerID{2}, nil, LookupConfig{})
	if err != nil {
		t.Fatal(err)
	}
	if !l.Done() {
		t.Fatal("a lookup without seeds is not done")
	}
	seeds := []kbucket.Contact{{ID: identity.PeerID{3}}, {ID: identity.PeerID{4}}}
	l, _ = NewLookup(identity.PeerID{1}, identity.PeerID{2}, seeds, LookupConfig{})
	c, _ := l.Next()
	l.Stop()
	if !l.Done() {
		t.Fatal("stopped lookup not done")
	}
	if _, ok := l.Next(); ok {
		t.Fatal("stopped lookup asks for more")
	}
	l.Response(c.ID, nil)
	if len(l.Result()) != 1 {
		t.Fatal("answer after stop lost")
	}
}

// Disjoint paths never query one node twice and each reach the target.
func TestLookupDisjointPaths(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 3))
	w := newWorld(t, 1000, r)
	self := w.ids[0]
	target := w.ids[1]
	l, err := NewLookup(target, self, w.tables[self].Closest(target, 60), LookupConfig{Paths: 3})
	if err != nil {
		t.Fatal(err)
	}
	queried := map[identity.PeerID]int{}
	w.drive(l, nil, func(c kbucket.Contact) { queried[c.ID]++ })
	for id, n := range queried {
		if n > 1 {
			t.Fatalf("%s queried %d times", id.Short(), n)
		}
	}
	if !l.Answered(target) {
		t.Fatal("no path reached the target")
	}
	if l.Sent() != len(queried) {
		t.Fatalf("Sent %d, queried %d", l.Sent(), len(queried))
	}
}

func TestLookupBadConfig(t *testing.T) {
	for _, c := range []LookupConfig{{K: -1}, {Alpha: -1}, {Beta: 30}, {Paths: 17}} {
		if _, err := NewLookup(identity.PeerID{}, identity.PeerID{}, nil, c); !errors.Is(err, ErrBadOption) {
			t.Errorf("%+v: %v", c, err)
		}
	}
}
