package rendezvous

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/ferrynet/ferry/identity"
	"github.com/ferrynet/ferry/internal/testutil"
	"github.com/ferrynet/ferry/internal/turnrest"
	"github.com/ferrynet/ferry/signal"
	"github.com/ferrynet/ferry/wire"
)

// exchange runs the signaling of one ICE session between a and b: offer,
// answer, trickled candidates both ways, end of candidates, bye.
func exchange(t *testing.T, a, b *signal.Client) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sid := []byte("session-0123456789")
	offer := &wire.Offer{
		RouteHeader: wire.RouteHeader{SessionID: sid},
		Ufrag:       "ufA1", Pwd: "pwd-a-0123456789abcdefgh",
		Candidates: []string{"candidate:1 1 udp 2130706431 10.0.0.1 5000 typ host"},
		Metadata:   []byte("conn-id"),
	}
	if err := a.Offer(ctx, b.PeerID(), offer); err != nil {
		t.Fatalf("offer: %v", err)
	}
	m := recv(t, b)
	got, ok := m.Msg.(*wire.Offer)
	if !ok || m.From != a.PeerID() || m.Type != wire.TypeOffer || !bytes.Equal(m.SessionID, sid) {
		t.Fatalf("b got %+v", m)
	}
	if got.Ufrag != offer.Ufrag || got.Pwd != offer.Pwd || !slices.Equal(got.Candidates, offer.Candidates) ||
		!bytes.Equal(got.Metadata, offer.Metadata) || identity.PeerID(got.Peer) != a.PeerID() {
		t.Fatalf("offer arrived as %+v", got)
	}
	if err := b.Answer(ctx, a.PeerID(), &wire.Answer{RouteHeader: wire.RouteHeader{SessionID: sid}, Ufrag: "ufB1", Pwd: "pwd-b-0123456789abcdefgh"}); err != nil {
		t.Fatalf("answer: %v", err)
	}
	m = recv(t, a)
	if ans, ok := m.Msg.(*wire.Answer); !ok || m.From != b.PeerID() || ans.Ufrag != "ufB1" {
		t.Fatalf("a got %+v", m)
	}
	// Candidates trickle both ways, in order.
	const n = 10
	for i := range n {
		if err := a.Candidate(ctx, b.PeerID(), sid, "ufA1", fmt.Sprintf("candidate:%d 1 udp 1 192.0.2.1 %d typ host", i, 1000+i)); err != nil {
			t.Fatal(err)
		}
		if err := b.Candidate(ctx, a.PeerID(), sid, "ufB1", fmt.Sprintf("candidate:%d 1 udp 1 192.0.2.2 %d typ host", i, 2000+i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.EndOfCandidates(ctx, b.PeerID(), sid, "ufA1"); err != nil {
		t.Fatal(err)
	}
	for _, side := range []struct {
		c    *signal.Client
		from identity.PeerID
		port int
		eoc  bool
	}{{b, a.PeerID(), 1000, true}, {a, b.PeerID(), 2000, false}} {
		for i := range n {
			m := recv(t, side.c)
			c, ok := m.Msg.(*wire.Candidate)
			if !ok || m.From != side.from || !strings.HasSuffix(c.Candidate, strconv.Itoa(side.port+i)+" typ host") {
				t.Fatalf("candidate %d: %+v", i, m)
			}
		}
		if side.eoc {
			if m := recv(t, side.c); m.Type != wire.TypeEndOfCandidates || m.Msg.(*wire.EndOfCandidates).Ufrag != "ufA1" {
				t.Fatalf("end of candidates: %+v", m)
			}
		}
	}
	if err := b.Bye(ctx, a.PeerID(), sid, "done"); err != nil {
		t.Fatal(err)
	}
	if m := recv(t, a); m.Type != wire.TypeBye || m.Msg.(*wire.Bye).Reason != "done" {
		t.Fatalf("bye: %+v", m)
	}
}

func TestSignalTwoPeers(t *testing.T) {
	testutil.CheckLeaks(t)
	testutil.Deadline(t, 30*time.Second)
	s := newServer(t, nil)
	a, b := dial(t, s), dial(t, s)
	if s.Peers() != 2 {
		t.Fatalf("%d peers online", s.Peers())
	}
	exchange(t, a, b)
	// The routed counter moves after the frame is queued, so the receiver
	// may see the last frame first.
	testutil.WaitFor(t, 10*time.Second, "24 routed messages (offer, answer, 20 candidates, end, bye)", func() bool {
		return counter(s.m.routed.WithLabelValues(PathLocal)) == 24
	})
	if got := counter(s.m.logins.WithLabelValues(LoginOK)); got != 2 {
		t.Fatalf("logins ok = %v", got)
	}
}

func TestSignalPeerNotFound(t *testing.T) {
	testutil.CheckLeaks(t)
	testutil.Deadline(t, 30*time.Second)
	s := newServer(t, nil)
	a := dial(t, s)
	nobody := newIdentity(t).PeerID()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	start := time.Now()
	err := a.Offer(ctx, nobody, &wire.Offer{Ufrag: "u", Pwd: "p"})
	if !errors.Is(err, signal.ErrPeerNotFound) {
		t.Fatalf("offer to an offline peer: %v", err)
	}
	var se *signal.ServerError
	if !errors.As(err, &se) || se.Fatal || !strings.Contains(se.Reason, nobody.String()) {
		t.Fatalf("error %+v", se)
	}
	t.Logf("peer not found after %v", time.Since(start))
	// A posted message is refused through Messages.
	if err := a.Candidate(ctx, nobody, []byte("s"), "u", "candidate:x"); err != nil {
		t.Fatal(err)
	}
	m := recv(t, a)
	if m.Err == nil || !errors.Is(m.Err, signal.ErrPeerNotFound) || m.From != nobody || m.Type != wire.TypeSignalError {
		t.Fatalf("posted to an offline peer: %+v", m)
	}
	// The connection goes on.
	b := dial(t, s)
	exchange(t, a, b)
	if got := counter(s.m.dropped.WithLabelValues(DropPeerNotFound)); got != 2 {
		t.Fatalf("dropped peer_not_found = %v", got)
	}
}

// TestSignalBusy: a target that does not read fills its bounded queue, and
// further messages are refused with "busy" rather than queued.
func TestSignalBusy(t *testing.T) {
	testutil.CheckLeaks(t)
	testutil.Deadline(t, 60*time.Second)
	s := newServer(t, func(c *Config) { c.QueueSize = 8; c.PeerRate = -1 })
	a := dial(t, s)
	// b never reads: its inbox holds 1 message, after which the client
	// stops reading the socket, then the socket buffers fill, then the
	// server's queue.
	b := dial(t, s, signal.WithInbox(1))
	big := &wire.Offer{Ufrag: "u", Pwd: "p", Metadata: bytes.Repeat([]byte{'x'}, wire.MaxMetadataLen)}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var busy, sent int
	for busy == 0 && sent < 100000 {
		err := a.Offer(ctx, b.PeerID(), big)
		switch {
		case err == nil:
			sent++
		case errors.Is(err, signal.ErrBusy):
			busy++
		default:
			t.Fatalf("after %d offers: %v", sent, err)
		}
	}
	if busy == 0 {
		t.Fatalf("%d offers queued for a peer that never reads", sent)
	}
	t.Logf("busy after %d offers of %d bytes", sent, big.Len())
	st := s.hub.local(b.PeerID())
	st.mu.Lock()
	queued := len(st.queue)
	st.mu.Unlock()
	if queued > s.cfg.QueueSize {
		t.Fatalf("queue holds %d frames, bound %d", queued, s.cfg.QueueSize)
	}
	if got := counter(s.m.dropped.WithLabelValues(DropBusy)); got < 1 {
		t.Fatalf("dropped busy = %v", got)
	}
	// Once b reads again, its messages arrive.
	for range 3 {
		recv(t, b)
	}
}

func TestSignalReplace(t *testing.T) {
	testutil.CheckLeaks(t)
	testutil.Deadline(t, 30*time.Second)
	s := newServer(t, nil)
	id := newIdentity(t)
	var mu sync.Mutex
	var states []signal.State
	first := dialAs(t, s, id, signal.WithStateHook(func(st signal.State, _ error) {
		if st == signal.StateClosed {
			// A slow hook, as on a loaded machine: Done must still
			// wait for the hook to have seen the final state.
			time.Sleep(50 * time.Millisecond)
		}
		mu.Lock()
		states = append(states, st)
		mu.Unlock()
	}))
	second := dialAs(t, s, id)
	select {
	case <-first.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the replaced client is still running")
	}
	if !errors.Is(first.Err(), signal.ErrReplaced) {
		t.Fatalf("replaced client: %v", first.Err())
	}
	mu.Lock()
	got := slices.Clone(states)
	mu.Unlock()
	if len(got) == 0 || got[len(got)-1] != signal.StateClosed || slices.Contains(got, signal.StateReconnecting) {
		t.Fatalf("states %v: a replaced client must stop, not reconnect, and be closed once Done", got)
	}
	if s.Peers() != 1 {
		t.Fatalf("%d peers", s.Peers())
	}
	other := dial(t, s)
	exchange(t, other, second)
}

func TestSignalCredentials(t *testing.T) {
	testutil.CheckLeaks(t)
	testutil.Deadline(t, 30*time.Second)
	now := time.Unix(1_700_000_000, 0)
	stun := listenUDP(t, "127.0.0.1:0")
	s := newServer(t, func(c *Config) {
		c.RelaySecret = "s3cret"
		c.RelayURLs = []string{"turn:relay.example.com:3478?transport=udp", "turns:relay.example.com:443?transport=tcp"}
		c.CredentialTTL = 5 * time.Minute
		c.STUNConns = []net.PacketConn{stun}
		c.now = func() time.Time { return now }
	})
	a := dial(t, s, signal.WithClock(func() time.Time { return now }))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cr, err := a.Credentials(ctx)
	if err != nil {
		t.Fatal(err)
	}
	wantUser := strconv.FormatInt(now.Add(5*time.Minute).Unix(), 10) + ":" + a.PeerID().String()
	if cr.Username != wantUser || !cr.Expires.Equal(now.Add(5*time.Minute)) {
		t.Fatalf("credentials %+v, want user %s", cr, wantUser)
	}
	// A relay with the same secret accepts them until they expire.
	if _, err := turnrest.Verify("s3cret", cr.Username, cr.Password, ":", now.Add(5*time.Minute)); err != nil {
		t.Fatalf("the relay's check refuses the credentials: %v", err)
	}
	if !slices.Equal(cr.RelayURLs, s.cfg.RelayURLs) {
		t.Fatalf("relay URLs %v", cr.RelayURLs)
	}
	if want := "stun:" + stun.LocalAddr().String(); !slices.Equal(cr.STUNURLs, []string{want}) {
		t.Fatalf("STUN URLs %v, want %s", cr.STUNURLs, want)
	}

	// Without a secret: STUN only.
	s2 := newServer(t, func(c *Config) { c.STUNURLs = []string{"stun:stun.example.com:3478"} })
	b := dial(t, s2)
	cr, err = b.Credentials(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if cr.Username != "" || cr.Password != "" || len(cr.RelayURLs) != 0 || !slices.Equal(cr.STUNURLs, []string{"stun:stun.example.com:3478"}) {
		t.Fatalf("credentials without relays: %+v", cr)
	}
}

func TestSignalBootstrap(t *testing.T) {
	testutil.CheckLeaks(t)
	testutil.Deadline(t, 30*time.Second)
	s := newServer(t, func(c *Config) {
		c.BootstrapSeeds = []string{"wss://seed.example.com/v1/signal"}
		c.BootstrapPeers = 2
	})
	a := dial(t, s, signal.WithCapabilities("dht"))
	var dhtPeers []identity.PeerID
	for range 3 {
		dhtPeers = append(dhtPeers, dial(t, s, signal.WithCapabilities("dht")).PeerID())
	}
	dial(t, s) // not DHT-capable
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	bs, err := a.Bootstrap(ctx)
	if err != nil {
		t.Fatal(err)
	}
	self := "ws://127.0.0.1:" + strconv.Itoa(s.Addr().(*net.TCPAddr).Port) + "/v1/signal"
	if !slices.Equal(bs.Seeds, []string{self, "wss://seed.example.com/v1/signal"}) {
		t.Fatalf("seeds %v, want this server first", bs.Seeds)
	}
	if len(bs.Peers) != 2 {
		t.Fatalf("peers %v, want 2 (the cap)", bs.Peers)
	}
	for _, p := range bs.Peers {
		if !slices.Contains(dhtPeers, p) {
			t.Fatalf("peer %v is not a DHT-capable peer other than the requester", p)
		}
	}
}

// TestSignalReconnect restarts the server under a logged-in client: the
// client gets GOAWAY with a retry hint, reconnects to the new server on the
// same address, logs in again and carries on.
func TestSignalReconnect(t *testing.T) {
	testutil.CheckLeaks(t)
	testutil.Deadline(t, 60*time.Second)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	start := func(l net.Listener) *Server {
		s, err := New(Config{Listener: l, ServerNames: []string{"127.0.0.1"}, ShutdownRetry: 100 * time.Millisecond, Logger: testLogger(t)})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	s1 := start(ln)
	states := make(chan signal.State, 16)
	hook := signal.WithStateHook(func(st signal.State, _ error) { states <- st })
	a := dialAs(t, s1, newIdentity(t), hook, signal.WithBackoff(50*time.Millisecond, 200*time.Millisecond))
	b := dialAs(t, s1, newIdentity(t), signal.WithBackoff(50*time.Millisecond, 200*time.Millisecond))
	if st := <-states; st != signal.StateConnected {
		t.Fatalf("state %v", st)
	}
	firstID := a.ServerID()
	if err := s1.Close(); err != nil {
		t.Fatal(err)
	}
	if st := <-states; st != signal.StateReconnecting {
		t.Fatalf("after the restart: %v", st)
	}
	var ln2 net.Listener
	testutil.WaitFor(t, 5*time.Second, "the old server's port to be free", func() bool {
		ln2, err = net.Listen("tcp", addr)
		return err == nil
	})
	s2 := start(ln2)
	defer s2.Close()
	select {
	case st := <-states:
		if st != signal.StateConnected {
			t.Fatalf("state %v", st)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("no reconnection")
	}
	if a.ServerID() == firstID {
		t.Fatal("still on the old server")
	}
	// b reconnects too (at its own time).
	testutil.WaitFor(t, 20*time.Second, "b to reconnect to the new server", func() bool { return s2.Peers() >= 2 })
	exchange(t, a, b)
}

// TestCloseDuringUpgrades closes the server right after a connection's
// upgrade, while its handler may still be on the way to registering the
// session: an upgrade that completes after Close has killed the sessions
// must be turned away instead of starting a session nobody stops (the race
// detector saw that as WaitGroup.Add racing Wait), and nothing leaks.
func TestCloseDuringUpgrades(t *testing.T) {
	testutil.CheckLeaks(t)
	testutil.Deadline(t, 60*time.Second)
	for range 200 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		s, err := New(Config{Listener: ln, ServerNames: []string{"127.0.0.1"}, Logger: testLogger(t)})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		c, resp, err := websocket.Dial(ctx, wsURL(s), nil)
		if resp != nil && resp.Body != nil {
			resp.Body.Close()
		}
		if err != nil {
			t.Fatal(err)
		}
		read := make(chan struct{})
		go func() { // a client that reads answers the server's close
			defer close(read)
			for {
				if _, _, err := c.Read(ctx); err != nil {
					return
				}
			}
		}()
		if err := s.Close(); err != nil {
			t.Error(err)
		}
		<-read
		cancel()
		c.CloseNow()
	}
}
