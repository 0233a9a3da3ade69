package dht

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/ferrynet/ferry/dht/kbucket"
	"github.com/ferrynet/ferry/identity"
	"github.com/ferrynet/ferry/internal/testutil"
)

// memNet is an in-memory transport for goroutine tests: every request and
// response goes through the codec, nodes can be made silent.
type memNet struct {
	mu     sync.Mutex
	nodes  map[identity.PeerID]*Node
	silent map[identity.PeerID]bool
	sent   int
}

var errUnreachable = errors.New("memnet: unreachable")

type memTransport struct {
	net  *memNet
	self kbucket.Contact
}

func (t *memTransport) Request(ctx context.Context, to kbucket.Contact, req Request) (Message, error) {
	b, err := AppendMessage(nil, req)
	if err != nil {
		return nil, err
	}
	t.net.mu.Lock()
	n, silent := t.net.nodes[to.ID], t.net.silent[to.ID]
	t.net.sent++
	t.net.mu.Unlock()
	if n == nil {
		return nil, errUnreachable
	}
	if silent {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	m, err := ParseMessage(b)
	if err != nil {
		return nil, err
	}
	resp, err := n.Handle(ctx, t.self, m.(Request))
	if err != nil {
		return nil, err
	}
	if b, err = AppendMessage(nil, resp); err != nil {
		return nil, err
	}
	return ParseMessage(b)
}

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

type cluster struct {
	net   *memNet
	nodes []*Node
	clk   *clock
}

func contactOf(i int, n *Node) kbucket.Contact {
	return kbucket.Contact{ID: n.ID(), Addr: netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}), 4000)}
}

// newCluster starts n server nodes and bootstraps each through the first.
func newCluster(t *testing.T, n int, opts ...Option) *cluster {
	t.Helper()
	c := &cluster{net: &memNet{nodes: map[identity.PeerID]*Node{}, silent: map[identity.PeerID]bool{}}, clk: &clock{t: testNow}}
	for i := range n {
		c.add(t, i, opts...)
	}
	// Two rounds: in the first, early nodes learn little (the nodes they
	// ask have not yet pinged back the ones before); the second is the
	// refresh a running node would do.
	ctx := t.Context()
	for range 2 {
		for i, nd := range c.nodes[1:] {
			if err := nd.Bootstrap(ctx, []kbucket.Contact{contactOf(0, c.nodes[0])}); err != nil {
				t.Fatalf("node %d: %v", i+1, err)
			}
		}
		c.settle(t)
	}
	return c
}

// settle waits until no node has a background ping running.
func (c *cluster) settle(t *testing.T) {
	t.Helper()
	testutil.WaitFor(t, 10*time.Second, "background pings to finish", func() bool {
		for _, n := range c.nodes {
			n.mu.Lock()
			busy := len(n.pinging) > 0
			n.mu.Unlock()
			if busy {
				return false
			}
		}
		return true
	})
}

func (c *cluster) add(t *testing.T, i int, opts ...Option) *Node {
	t.Helper()
	id := testIdentity(t, fmt.Sprintf("node-%d", i))
	tr := &memTransport{net: c.net, self: kbucket.Contact{ID: id.PeerID(), Addr: netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}), 4000)}}
	nd, err := New(id, tr, append([]Option{WithClock(c.clk.now), WithRequestTimeout(time.Second)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nd.Close() })
	c.net.mu.Lock()
	c.net.nodes[nd.ID()] = nd
	c.net.mu.Unlock()
	c.nodes = append(c.nodes, nd)
	return nd
}

func TestNodeFindClosest(t *testing.T) {
	testutil.CheckLeaks(t)
	testutil.Deadline(t, time.Minute)
	c := newCluster(t, 60)
	ids := make([]identity.PeerID, len(c.nodes))
	for i, n := range c.nodes {
		ids[i] = n.ID()
	}
	target := testIdentity(t, "target").PeerID()
	got, err := c.nodes[7].FindClosest(t.Context(), target)
	if err != nil {
		t.Fatal(err)
	}
	slices.SortFunc(ids, func(a, b identity.PeerID) int {
		if kbucket.Closer(a, b, target) {
			return -1
		}
		return 1
	})
	ids = slices.DeleteFunc(ids, func(id identity.PeerID) bool { return id == c.nodes[7].ID() })
	if len(got) != 20 {
		t.Fatalf("%d contacts, want 20", len(got))
	}
	for i := range got {
		if got[i].ID != ids[i] {
			t.Fatalf("contact %d is not the true %d-th closest", i, i)
		}
	}
}

func TestNodePublishFindPeer(t *testing.T) {
	testutil.CheckLeaks(t)
	testutil.Deadline(t, time.Minute)
	c := newCluster(t, 40)
	alice := c.nodes[3]
	rv := []string{"wss://rv.example.net/v1/signal"}
	stored, err := alice.Publish(t.Context(), rv, nil)
	if err != nil || stored != 20 {
		t.Fatalf("Publish: stored on %d, %v", stored, err)
	}
	rec, err := c.nodes[30].FindPeer(t.Context(), alice.ID())
	if err != nil {
		t.Fatal(err)
	}
	if rec.PeerID() != alice.ID() || !slices.Equal(rec.Rendezvous, rv) || len(rec.Addrs) != 0 {
		t.Fatalf("found %+v", rec)
	}
	// With alice gone, the storers still answer.
	c.net.mu.Lock()
	delete(c.net.nodes, alice.ID())
	c.net.mu.Unlock()
	if rec, err = c.nodes[12].FindPeer(t.Context(), alice.ID()); err != nil || rec.PeerID() != alice.ID() {
		t.Fatalf("record of a departed peer: %v", err)
	}
	if _, err := c.nodes[12].FindPeer(t.Context(), testIdentity(t, "nobody").PeerID()); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown peer: %v, want ErrNotFound", err)
	}
}

func TestNodeTopics(t *testing.T) {
	testutil.CheckLeaks(t)
	testutil.Deadline(t, time.Minute)
	c := newCluster(t, 30)
	for _, i := range []int{2, 9, 17} {
		if _, err := c.nodes[i].Announce(t.Context(), "ferry/chat", []string{fmt.Sprintf("wss://rv%d", i)}, nil); err != nil {
			t.Fatal(err)
		}
	}
	peers, err := c.nodes[25].Peers(t.Context(), "ferry/chat")
	if err != nil {
		t.Fatal(err)
	}
	var got []identity.PeerID
	for _, r := range peers {
		got = append(got, r.PeerID())
	}
	for _, i := range []int{2, 9, 17} {
		if !slices.Contains(got, c.nodes[i].ID()) {
			t.Fatalf("node %d's announcement missing from %d peers", i, len(got))
		}
	}
	if len(got) != 3 {
		t.Fatalf("%d peers, want 3", len(got))
	}
}

// A client looks up and publishes but enters no one's table and stores
// nothing.
func TestNodeClientMode(t *testing.T) {
	testutil.CheckLeaks(t)
	testutil.Deadline(t, time.Minute)
	c := newCluster(t, 25)
	cl := c.add(t, 100, WithClientMode())
	if err := cl.Bootstrap(t.Context(), []kbucket.Contact{contactOf(0, c.nodes[0])}); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.Publish(t.Context(), []string{"wss://rv"}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := c.nodes[5].FindPeer(t.Context(), cl.ID()); err != nil {
		t.Fatalf("a client's record is not found: %v", err)
	}
	// Let background pings settle, then check no table holds the client.
	c.settle(t)
	for i, n := range c.nodes {
		for _, ct := range n.Contacts() {
			if ct.ID == cl.ID() {
				t.Fatalf("server %d has the client in its table", i)
			}
		}
	}
	resp, err := cl.Handle(t.Context(), contactOf(1, c.nodes[1]), &Put{Record: signedRecord(t, testIdentity(t, "x"), 1, nil)})
	if err != nil || resp.(*PutResult).Code != PutNotServer {
		t.Fatalf("client asked to store: %v %v", resp, err)
	}
}

// Silent nodes cost a request timeout each, and the lookup still ends with
// the live ones; a cancelled ctx ends a lookup at once.
func TestNodeTimeoutsAndCtx(t *testing.T) {
	testutil.CheckLeaks(t)
	testutil.Deadline(t, time.Minute)
	c := newCluster(t, 30, WithRequestTimeout(50*time.Millisecond))
	target := c.nodes[20].ID()
	c.net.mu.Lock()
	for _, n := range c.nodes[10:15] {
		c.net.silent[n.ID()] = true
	}
	c.net.mu.Unlock()
	got, err := c.nodes[2].FindClosest(t.Context(), target)
	if err != nil {
		t.Fatal(err)
	}
	for _, ct := range got {
		for _, n := range c.nodes[10:15] {
			if ct.ID == n.ID() {
				t.Fatal("a silent node is in the result")
			}
		}
	}
	// All silent: ctx cancellation ends the lookup with ctx's error.
	c.net.mu.Lock()
	for _, n := range c.nodes {
		c.net.silent[n.ID()] = true
	}
	c.net.mu.Unlock()
	slow := c.add(t, 200, WithRequestTimeout(time.Hour))
	slow.mu.Lock()
	for _, n := range c.nodes[:5] {
		slow.table.Seen(contactOf(0, n))
	}
	slow.mu.Unlock()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		_, err := slow.FindClosest(ctx, target)
		done <- err
	}()
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled lookup: %v, want context.Canceled", err)
	}
	// The per-lookup deadline ends it too.
	short := c.add(t, 201, WithRequestTimeout(time.Hour), WithLookupTimeout(20*time.Millisecond))
	short.mu.Lock()
	short.table.Seen(contactOf(0, c.nodes[0]))
	short.mu.Unlock()
	if _, err := short.FindClosest(t.Context(), target); !errors.Is(err, ErrNotFound) {
		t.Fatalf("lookup past its deadline: %v, want ErrNotFound", err)
	}
	// Close ends it with ErrClosed and is idempotent.
	go func() {
		_, err := slow.FindClosest(t.Context(), target)
		done <- err
	}()
	testutil.WaitFor(t, 5*time.Second, "the lookup to send", func() bool {
		c.net.mu.Lock()
		defer c.net.mu.Unlock()
		return c.net.sent > 0
	})
	if err := slow.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; !errors.Is(err, ErrClosed) {
		t.Fatalf("lookup on a closed node: %v, want ErrClosed", err)
	}
	if err := slow.Close(); err != nil {
		t.Fatal(err)
	}
}

// The publisher re-signs and re-stores its record before it expires.
func TestNodeRepublish(t *testing.T) {
	testutil.CheckLeaks(t)
	testutil.Deadline(t, time.Minute)
	c := newCluster(t, 25, WithRecordTimes(time.Hour, 30*time.Minute), WithMaintainInterval(5*time.Millisecond))
	alice := c.nodes[4]
	if _, err := alice.Publish(t.Context(), []string{"wss://rv"}, nil); err != nil {
		t.Fatal(err)
	}
	storedSeq := func() (uint64, int) {
		var seq uint64
		holders := 0
		for _, n := range c.nodes {
			if n == alice {
				continue
			}
			n.mu.Lock()
			for _, r := range n.store.Get(alice.ID()) {
				seq = max(seq, r.Seq)
				holders++
			}
			n.mu.Unlock()
		}
		return seq, holders
	}
	first, holders := storedSeq()
	if holders == 0 {
		t.Fatal("nobody stores the record")
	}
	c.clk.advance(31 * time.Minute)
	testutil.WaitFor(t, 20*time.Second, "a republished record", func() bool {
		seq, _ := storedSeq()
		return seq > first
	})
	// Past the first record's expiry the stores hold the new one.
	c.clk.advance(40 * time.Minute)
	testutil.WaitFor(t, 20*time.Second, "the stores to hold only live records", func() bool {
		seq, n := storedSeq()
		return seq > first && n > 0
	})
}

func TestNodeBadOptions(t *testing.T) {
	id := testIdentity(t, "x")
	tr := &memTransport{net: &memNet{}}
	for name, o := range map[string]Option{
		"k":        WithK(0),
		"alpha":    WithAlpha(0),
		"beta":     WithBeta(0),
		"paths":    WithDisjointPaths(0),
		"timeout":  WithRequestTimeout(0),
		"lookup":   WithLookupTimeout(-1),
		"times":    WithRecordTimes(time.Hour, 2*time.Hour),
		"maintain": WithMaintainInterval(0),
		"clock":    WithClock(nil),
		"log":      WithLogger(nil),
		"table":    WithTableOptions(kbucket.WithK(0)),
		"store":    WithStoreOptions(WithStoreLimits(0, 1, 1)),
	} {
		if _, err := New(id, tr, o); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := New(id, tr, WithK(2), WithBeta(3)); !errors.Is(err, ErrBadOption) {
		t.Errorf("beta > k: %v", err)
	}
}

func TestNodeBootstrapAndHandleErrors(t *testing.T) {
	testutil.CheckLeaks(t)
	testutil.Deadline(t, time.Minute)
	c := newCluster(t, 3, WithRequestTimeout(20*time.Millisecond))
	lone := c.add(t, 50)
	if err := lone.Bootstrap(t.Context(), nil); !errors.Is(err, ErrBadOption) {
		t.Fatalf("no seeds: %v", err)
	}
	c.net.mu.Lock()
	c.net.silent[c.nodes[0].ID()] = true
	c.net.mu.Unlock()
	if err := lone.Bootstrap(t.Context(), []kbucket.Contact{contactOf(0, c.nodes[0])}); err == nil {
		t.Fatal("bootstrap through a silent seed succeeded")
	}
	if _, err := lone.FindPeer(t.Context(), c.nodes[1].ID()); !errors.Is(err, ErrNotFound) {
		t.Fatalf("lookup with an empty table: %v, want ErrNotFound", err)
	}
	from := contactOf(1, c.nodes[1])
	if _, err := lone.Handle(t.Context(), from, fakeRequest{&Pong{}}); !errors.Is(err, ErrUnexpectedResponse) {
		t.Fatalf("a response handled as a request: %v", err)
	}
	lone.Close()
	if _, err := lone.Handle(t.Context(), from, &Ping{}); !errors.Is(err, ErrClosed) {
		t.Fatalf("Handle after Close: %v", err)
	}
	if _, err := lone.FindClosest(t.Context(), from.ID); !errors.Is(err, ErrClosed) {
		t.Fatalf("lookup after Close: %v", err)
	}
}

// fakeRequest passes a response off as a request.
type fakeRequest struct{ Message }

func (fakeRequest) FromServer() bool { return false }
