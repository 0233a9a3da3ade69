package streams

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/ferrynet/ferry/gossip"
	"github.com/ferrynet/ferry/identity"
	"github.com/ferrynet/ferry/internal/testutil"
)

type tnode struct {
	key *identity.Identity
	r   *gossip.Router
	tr  *Transport
	top *gossip.Topic
	sub <-chan gossip.Message
	ln  net.Listener
}

// loopbackMesh starts n routers on TCP loopback. A dialler first writes
// its PeerID (the test's stand-in for the authenticated peer of a Ferry
// stream).
func loopbackMesh(t *testing.T, n int) []*tnode {
	t.Helper()
	var mu sync.Mutex
	addrs := map[identity.PeerID]string{}
	nodes := make([]*tnode, n)
	for i := range nodes {
		seed := make([]byte, ed25519.SeedSize)
		seed[0] = byte(i + 1)
		key, err := identity.FromPrivateKey(ed25519.NewKeyFromSeed(seed))
		if err != nil {
			t.Fatal(err)
		}
		self := key.PeerID()
		tr := New(func(ctx context.Context, p identity.PeerID) (net.Conn, error) {
			mu.Lock()
			a, ok := addrs[p]
			mu.Unlock()
			if !ok {
				return nil, fmt.Errorf("no address for %s", p.Short())
			}
			var d net.Dialer
			c, err := d.DialContext(ctx, "tcp", a)
			if err != nil {
				return nil, err
			}
			if _, err := c.Write(self[:]); err != nil {
				_ = c.Close()
				return nil, err
			}
			return c, nil
		})
		r, err := gossip.New(key, tr)
		if err != nil {
			t.Fatal(err)
		}
		tr.Attach(r)
		var lc net.ListenConfig
		ln, err := lc.Listen(t.Context(), "tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		addrs[self] = ln.Addr().String()
		mu.Unlock()
		nd := &tnode{key: key, r: r, tr: tr, ln: ln}
		done := make(chan struct{})
		go func() {
			defer close(done)
			_ = tr.Serve(ln, func(c net.Conn) (identity.PeerID, error) {
				var id identity.PeerID
				_, err := io.ReadFull(c, id[:])
				return id, err
			})
		}()
		t.Cleanup(func() {
			_ = r.Close()
			_ = ln.Close()
			_ = tr.Close()
			<-done
		})
		if nd.top, err = r.Join("t"); err != nil {
			t.Fatal(err)
		}
		nd.sub, _ = nd.top.Subscribe()
		nodes[i] = nd
	}
	for i, nd := range nodes {
		var peers []identity.PeerID
		for j, o := range nodes {
			if j != i {
				peers = append(peers, o.key.PeerID())
			}
		}
		nd.top.AddPeers(peers...)
	}
	return nodes
}

func TestLoopback(t *testing.T) {
	testutil.CheckLeaks(t)
	defer testutil.Deadline(t, 2*time.Minute)()
	nodes := loopbackMesh(t, 5)
	testutil.WaitFor(t, 30*time.Second, "every node has a neighbour", func() bool {
		for _, n := range nodes {
			if e, l := n.top.Neighbours(); len(e)+len(l) == 0 {
				return false
			}
		}
		return true
	})
	const per = 50
	pubs := nodes[:2]
	for i := range per {
		for _, p := range pubs {
			if err := p.top.Publish(t.Context(), fmt.Appendf(nil, "%d", i)); err != nil {
				t.Fatal(err)
			}
		}
	}
	for i, n := range nodes {
		want := per * len(pubs)
		if i < len(pubs) {
			want = per
		}
		last := map[identity.PeerID]uint64{}
		for range want {
			select {
			case m := <-n.sub:
				if s, ok := last[m.Origin]; ok && m.Seq != s+1 {
					t.Errorf("node %d: seq %d after %d", i, m.Seq, s)
				}
				last[m.Origin] = m.Seq
			case <-time.After(30 * time.Second):
				t.Fatalf("node %d: timed out after %v", i, last)
			}
		}
		select {
		case m := <-n.sub:
			t.Errorf("node %d: extra message %+v", i, m)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func TestPeerDownOnClose(t *testing.T) {
	testutil.CheckLeaks(t)
	defer testutil.Deadline(t, 2*time.Minute)()
	nodes := loopbackMesh(t, 3)
	gone := nodes[2]
	has := func(n *tnode) bool {
		e, l := n.top.Neighbours()
		for _, p := range append(e, l...) {
			if p == gone.key.PeerID() {
				return true
			}
		}
		return false
	}
	testutil.WaitFor(t, 30*time.Second, "node 2 in both meshes", func() bool { return has(nodes[0]) && has(nodes[1]) })
	// The transport alone goes (no LEAVE is sent): its streams break.
	if err := gone.tr.Close(); err != nil {
		t.Fatal(err)
	}
	_ = gone.ln.Close()
	testutil.WaitFor(t, 30*time.Second, "node 2 out of both meshes", func() bool { return !has(nodes[0]) && !has(nodes[1]) })
}

func TestReadFramesBounds(t *testing.T) {
	var b bytes.Buffer
	var hdr [4]byte
	binary.BigEndian.PutUint32(hdr[:], MaxFrame+1)
	b.Write(hdr[:])
	if err := readFrames(&b, func([]byte) { t.Error("frame delivered") }); !errors.Is(err, ErrFrameTooLarge) {
		t.Errorf("oversized: %v", err)
	}
	b.Reset()
	binary.BigEndian.PutUint32(hdr[:], 10)
	b.Write(hdr[:])
	b.WriteString("short")
	if err := readFrames(&b, func([]byte) { t.Error("frame delivered") }); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("truncated: %v", err)
	}
	b.Reset()
	binary.BigEndian.PutUint32(hdr[:], 2)
	b.Write(hdr[:])
	b.WriteString("ok")
	n := 0
	if err := readFrames(&b, func(f []byte) { n++ }); !errors.Is(err, io.EOF) || n != 1 {
		t.Errorf("one frame then EOF: %v, %d frames", err, n)
	}
}

func FuzzReadFrames(f *testing.F) {
	f.Add([]byte{0, 0, 0, 2, 'o', 'k'})
	f.Add([]byte{0, 0, 0, 0})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		total := 0
		err := readFrames(bytes.NewReader(b), func(fr []byte) {
			if len(fr) > MaxFrame {
				t.Fatalf("frame of %d bytes", len(fr))
			}
			total += 4 + len(fr)
		})
		if err == nil || total > len(b) {
			t.Fatalf("err %v, %d of %d bytes", err, total, len(b))
		}
	})
}

// pipeNode is a router whose transport dials net.Pipes; the test holds the
// far ends.
type pipeNode struct {
	tr    *Transport
	top   *gossip.Topic
	peer  identity.PeerID
	dials chan net.Conn // far ends of the streams dialled
}

func newPipeNode(t *testing.T) *pipeNode {
	t.Helper()
	key, err := identity.Generate()
	if err != nil {
		t.Fatal(err)
	}
	other, err := identity.Generate()
	if err != nil {
		t.Fatal(err)
	}
	pn := &pipeNode{peer: other.PeerID(), dials: make(chan net.Conn, 8)}
	pn.tr = New(func(ctx context.Context, _ identity.PeerID) (net.Conn, error) {
		a, b := net.Pipe()
		select {
		case pn.dials <- b:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		return a, nil
	})
	r, err := gossip.New(key, pn.tr)
	if err != nil {
		t.Fatal(err)
	}
	pn.tr.Attach(r)
	t.Cleanup(func() { _ = r.Close(); _ = pn.tr.Close() })
	if pn.top, err = r.Join("t"); err != nil {
		t.Fatal(err)
	}
	pn.top.AddPeers(pn.peer) // a neighbour now: it is sent a JOIN
	return pn
}

func (pn *pipeNode) neighbour() bool {
	e, l := pn.top.Neighbours()
	return slices.Contains(e, pn.peer) || slices.Contains(l, pn.peer)
}

func (pn *pipeNode) incoming() int {
	pn.tr.mu.Lock()
	defer pn.tr.mu.Unlock()
	return len(pn.tr.in)
}

// readFrame reads one length-prefixed frame from c.
func readFrame(t *testing.T, c net.Conn) gossip.Frame {
	t.Helper()
	var hdr [4]byte
	_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.ReadFull(c, hdr[:]); err != nil {
		t.Fatal(err)
	}
	b := make([]byte, binary.BigEndian.Uint32(hdr[:]))
	if _, err := io.ReadFull(c, b); err != nil {
		t.Fatal(err)
	}
	f, err := gossip.ParseFrame(b)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// TestNewerIncomingStreamWins: when a peer has opened a second stream (it
// restarted), the end of its first one does not report it down; the end
// of its latest one does.
func TestNewerIncomingStreamWins(t *testing.T) {
	testutil.CheckLeaks(t)
	defer testutil.Deadline(t, time.Minute)()
	pn := newPipeNode(t)
	out := <-pn.dials
	defer out.Close()
	go func() { _, _ = io.Copy(io.Discard, out) }()
	old, oldFar := net.Pipe()
	cur, curFar := net.Pipe()
	if err := pn.tr.ServeConn(old, pn.peer); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 10*time.Second, "the first stream read", func() bool { return pn.incoming() == 1 })
	if err := pn.tr.ServeConn(cur, pn.peer); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 10*time.Second, "the second stream read", func() bool {
		pn.tr.mu.Lock()
		defer pn.tr.mu.Unlock()
		return pn.tr.last[pn.peer] == cur
	})
	_ = oldFar.Close()
	testutil.WaitFor(t, 10*time.Second, "the first stream's end seen", func() bool { return pn.incoming() == 1 })
	if !pn.neighbour() {
		t.Fatal("the end of an older stream reported the peer down")
	}
	_ = curFar.Close()
	testutil.WaitFor(t, 10*time.Second, "the peer down", func() bool { return !pn.neighbour() })
}

// TestRedial: Redial moves the outgoing stream to a new dial, keeps the
// queue, and does not report the peer down.
func TestRedial(t *testing.T) {
	testutil.CheckLeaks(t)
	defer testutil.Deadline(t, time.Minute)()
	pn := newPipeNode(t)
	first := <-pn.dials
	defer first.Close()
	if f := readFrame(t, first); f.Type != gossip.TypeJoin {
		t.Fatalf("first frame %v, want JOIN", f.Type)
	}
	pn.tr.Redial(pn.peer)
	second := <-pn.dials
	defer second.Close()
	go func() { _, _ = io.Copy(io.Discard, first) }()
	if err := pn.top.Publish(t.Context(), []byte("after the redial")); err != nil {
		t.Fatal(err)
	}
	if f := readFrame(t, second); f.Type != gossip.TypeMsg || string(f.Msg.Data) != "after the redial" {
		t.Fatalf("on the new stream: %v %q", f.Type, f.Msg.Data)
	}
	if !pn.neighbour() {
		t.Fatal("Redial reported the peer down")
	}
	if pn.tr.Links() != 1 {
		t.Fatalf("%d links, want 1", pn.tr.Links())
	}
	pn.tr.Redial(identity.PeerID{}) // no stream: nothing happens
}

// TestRedialDuringDial: Redial ends a dial that hangs (on a connection the
// peer left) and dials again; the queued frames go on the new stream.
func TestRedialDuringDial(t *testing.T) {
	testutil.CheckLeaks(t)
	defer testutil.Deadline(t, time.Minute)()
	key, err := identity.Generate()
	if err != nil {
		t.Fatal(err)
	}
	other, err := identity.Generate()
	if err != nil {
		t.Fatal(err)
	}
	hanging := make(chan struct{})
	far := make(chan net.Conn, 1)
	calls := 0
	tr := New(func(ctx context.Context, _ identity.PeerID) (net.Conn, error) {
		calls++ // the link's writer goroutine alone dials
		if calls == 1 {
			close(hanging)
			<-ctx.Done() // hangs until Redial cancels it
			return nil, ctx.Err()
		}
		a, b := net.Pipe()
		far <- b
		return a, nil
	})
	r, err := gossip.New(key, tr)
	if err != nil {
		t.Fatal(err)
	}
	tr.Attach(r)
	defer func() { _ = r.Close(); _ = tr.Close() }()
	top, err := r.Join("t")
	if err != nil {
		t.Fatal(err)
	}
	top.AddPeers(other.PeerID()) // queues a JOIN and starts the dial
	<-hanging
	tr.Redial(other.PeerID())
	c := <-far
	defer c.Close()
	if f := readFrame(t, c); f.Type != gossip.TypeJoin {
		t.Fatalf("first frame on the new stream: %v, want the queued JOIN", f.Type)
	}
	e, l := top.Neighbours()
	if !slices.Contains(e, other.PeerID()) && !slices.Contains(l, other.PeerID()) {
		t.Fatal("the redial reported the peer down")
	}
}
