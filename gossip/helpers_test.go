package gossip

import (
	"crypto/ed25519"
	"testing"
	"time"

	dhtsim "github.com/ferrynet/ferry/dht/sim"
	"github.com/ferrynet/ferry/identity"
)

// testNet is a loss-free in-memory network in virtual time (the
// simulator's event loop), for the router's unit tests.
type testNet struct {
	t      *testing.T
	l      *dhtsim.Loop
	epoch  time.Time
	byID   map[identity.PeerID]*testNode
	frames int
}

type testNode struct {
	net  *testNet
	key  *identity.Identity
	r    *Router
	top  *Topic
	got  []Message
	down bool
}

func newTestNet(t *testing.T) *testNet {
	return &testNet{t: t, l: dhtsim.NewLoop(1, 0), epoch: time.Unix(1_800_000_000, 0), byID: map[identity.PeerID]*testNode{}}
}

func (n *testNet) Now() time.Time                      { return n.epoch.Add(n.l.Now()) }
func (n *testNet) AfterFunc(d time.Duration, f func()) { n.l.At(d, f) }

type testTransport struct {
	net  *testNet
	from identity.PeerID
}

func (tr testTransport) Send(to identity.PeerID, b []byte) {
	n := tr.net
	n.frames++
	dst := n.byID[to]
	from := tr.from
	if dst == nil || dst.down {
		n.l.At(100*time.Millisecond, func() {
			if src := n.byID[from]; src != nil && !src.down {
				src.r.PeerDown(to)
			}
		})
		return
	}
	n.l.At(10*time.Millisecond, func() {
		if !dst.down {
			dst.r.HandleFrame(from, b)
		}
	})
}

func testKey(t *testing.T, i int) *identity.Identity {
	t.Helper()
	seed := make([]byte, ed25519.SeedSize)
	seed[0], seed[1] = byte(i), byte(i>>8)
	k, err := identity.FromPrivateKey(ed25519.NewKeyFromSeed(seed))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// add starts a node on topic "t" and gives it every earlier node as a
// candidate.
func (n *testNet) add(opts ...Option) *testNode {
	n.t.Helper()
	key := testKey(n.t, len(n.byID)+1)
	tn := &testNode{net: n, key: key}
	var err error
	tn.r, err = New(key, testTransport{net: n, from: key.PeerID()}, append([]Option{WithClock(n)}, opts...)...)
	if err != nil {
		n.t.Fatal(err)
	}
	if tn.top, err = tn.r.Join("t"); err != nil {
		n.t.Fatal(err)
	}
	tn.top.OnMessage(func(m Message) { tn.got = append(tn.got, m) })
	var peers []identity.PeerID
	for id := range n.byID {
		peers = append(peers, id)
	}
	n.byID[key.PeerID()] = tn
	tn.top.AddPeers(peers...)
	return tn
}

// run runs events for d of virtual time.
func (n *testNet) run(d time.Duration) {
	stop := false
	n.l.At(d, func() { stop = true })
	for !stop && n.l.Step() {
	}
}

// signed builds a MSG frame from key on topic "t".
func signed(t *testing.T, key *identity.Identity, first, seq uint64, data []byte) []byte {
	t.Helper()
	f := Frame{Type: TypeMsg, Topic: "t", Msg: Msg{
		PublicKey: key.PublicKey(), First: first, Seq: seq, Data: data,
		Sig: key.Sign(signedBytes("t", first, seq, data)),
	}}
	b, err := f.Append(nil)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func ed25519NewKeyFromSeed(seed []byte) ed25519.PrivateKey { return ed25519.NewKeyFromSeed(seed) }

func ed25519Verify(pub ed25519.PublicKey, msg, sig []byte) bool { return ed25519.Verify(pub, msg, sig) }
