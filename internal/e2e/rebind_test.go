package e2e

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferrynet/ferry/internal/natlab"
	"github.com/ferrynet/ferry/internal/natlab/natlabtest"
	"github.com/ferrynet/ferry/internal/nattype"
	"github.com/ferrynet/ferry/internal/testutil"
	"github.com/ferrynet/ferry/sdk"
)

// The NAT rebinding tests: mid-transfer, the dialer's NAT forgets its
// mappings (conntrack flushed) or comes back on a new public address, and
// the connection must find a new path, lose no message, and end direct
// again. Both NATs are cones, so direct is possible before and after.

// rebindRate is the transfer each way: msgsPerSec messages of msgSize
// bytes, 1 MiB/s.
const (
	msgSize    = 16 << 10
	msgsPerSec = 64
)

// seqStream sends numbered messages at rebindRate on one conn and checks
// that the peer's arrive once, in order.
type seqStream struct {
	name  string
	c     *sdk.Conn
	sent  atomic.Uint64
	recvd atomic.Uint64
	last  atomic.Int64 // UnixNano of the last message received

	mu     sync.Mutex
	maxGap time.Duration // longest wait between two messages received
	err    error         // the first error of either loop
}

func (s *seqStream) fail(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err == nil {
		s.err = err
	}
}

func (s *seqStream) failure() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

func (s *seqStream) gap() time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.maxGap
}

// send sends until stop is closed, then flushes.
func (s *seqStream) send(ctx context.Context, stop <-chan struct{}) {
	tick := time.NewTicker(time.Second / msgsPerSec)
	defer tick.Stop()
	msg := make([]byte, msgSize)
	for i := range msg {
		msg[i] = byte(i)
	}
	for {
		select {
		case <-stop:
			if err := s.c.Flush(ctx); err != nil {
				s.fail(fmt.Errorf("%s: flush: %w", s.name, err))
			}
			return
		case <-tick.C:
		}
		binary.BigEndian.PutUint64(msg, s.sent.Load())
		// Send copies nothing it does not own: a fresh buffer each time.
		if err := s.c.Send(ctx, append([]byte(nil), msg...)); err != nil {
			s.fail(fmt.Errorf("%s: send %d: %w", s.name, s.sent.Load(), err))
			return
		}
		s.sent.Add(1)
	}
}

// recv receives until ctx ends, checking each message's number.
func (s *seqStream) recv(ctx context.Context) {
	prev := time.Now()
	for {
		m, err := s.c.Recv(ctx)
		if err != nil {
			if ctx.Err() == nil {
				s.fail(fmt.Errorf("%s: recv after %d: %w", s.name, s.recvd.Load(), err))
			}
			return
		}
		now := time.Now()
		s.mu.Lock()
		s.maxGap = max(s.maxGap, now.Sub(prev))
		s.mu.Unlock()
		prev = now
		s.last.Store(now.UnixNano())
		want := s.recvd.Load()
		if len(m) != msgSize {
			s.fail(fmt.Errorf("%s: message %d has %d bytes, want %d", s.name, want, len(m), msgSize))
			return
		}
		if got := binary.BigEndian.Uint64(m); got != want {
			s.fail(fmt.Errorf("%s: got message %d, want %d (lost, duplicated or reordered)", s.name, got, want))
			return
		}
		s.recvd.Add(1)
	}
}

// pathLog records a conn's path changes and states.
type pathLog struct {
	mu     sync.Mutex
	events []string
	relay  time.Time // first relayed path after the mark, if any
	mark   time.Time
}

func (l *pathLog) watch(ctx context.Context, c *sdk.Conn) {
	evs, cancel := c.Subscribe()
	go func() {
		defer cancel()
		for {
			select {
			case <-ctx.Done():
				return
			case ev, ok := <-evs:
				if !ok {
					return
				}
				l.mu.Lock()
				if !l.mark.IsZero() && ev.Time.After(l.mark) {
					l.events = append(l.events, fmt.Sprintf("+%v %s", ev.Time.Sub(l.mark).Round(time.Millisecond), ev))
					if ev.Path != nil && ev.Path.Relayed && l.relay.IsZero() {
						l.relay = ev.Time
					}
				}
				l.mu.Unlock()
			}
		}
	}()
}

func (l *pathLog) setMark(t time.Time) {
	l.mu.Lock()
	l.mark = t
	l.mu.Unlock()
}

func (l *pathLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.events, "; ")
}

func TestRebindConntrackFlush(t *testing.T) {
	runRebind(t, rebindCase{what: "conntrack flush", conntrack: true, act: func(ctx context.Context, lab *natlab.Lab) error {
		return lab.Site("a").FlushMappings(ctx)
	}})
}

func TestRebindNewPublicAddr(t *testing.T) {
	runRebind(t, rebindCase{what: "new public address", conntrack: true, act: func(ctx context.Context, lab *natlab.Lab) error {
		wan, err := lab.Site("a").ChangePublicAddr(ctx)
		if err == nil {
			t.Logf("the dialer's NAT moved to %v", wan)
		}
		return err
	}})
}

// The direct path dies (the routers between the two sites drop their
// packets) while the relay still works: the session moves to the relay
// within the heartbeat bound, without a reconnect, and back to a direct
// pair once the path heals.
func TestDirectPathDiesFallsBackToRelay(t *testing.T) {
	runRebind(t, rebindCase{
		what: "direct path blocked",
		act: func(ctx context.Context, lab *natlab.Lab) error {
			return lab.Site("a").Block(ctx, lab.Site("b").PublicAddr)
		},
		inSession: true,
		heal: func(ctx context.Context, lab *natlab.Lab) error {
			return lab.Site("a").Unblock(ctx)
		},
	})
}

// rebindCase is one way of breaking a running direct path.
type rebindCase struct {
	what string
	// act breaks the path, once both sides are direct and data flows.
	act func(context.Context, *natlab.Lab) error
	// inSession: the same session must carry on on the relay, both sides
	// relayed within the heartbeat bound, with no reconnect; then heal
	// mends the path and the session must move back to a direct pair.
	inSession bool
	heal      func(context.Context, *natlab.Lab) error
	// conntrack: act runs the conntrack program.
	conntrack bool
}

// rebindHeartbeat is the heartbeat of the rebinding tests: a dead session
// is declared after 3 × 2 s.
const (
	rebindHeartbeat = 2 * time.Second
	rebindMisses    = 3
)

// runRebind connects a dialer behind a port-restricted cone ("a") to a
// peer behind a full cone ("b"), runs the transfer both ways, breaks the
// path with rc.act once both sides are direct and data flows, and checks
// that the transfer resumes with nothing lost and ends direct again.
func runRebind(t *testing.T, rc rebindCase) {
	what := rc.what
	testutil.RequireRoot(t)
	if rc.conntrack {
		testutil.RequireBinary(t, natlab.ConntrackProgram, natlab.ConntrackPackage)
	}
	testutil.CheckLeaks(t)
	testutil.Deadline(t, 4*time.Minute)
	lab := natlabtest.New(t, natlab.Config{Sites: []natlab.SiteConfig{
		{Name: "a", NAT: nattype.PortRestrictedCone},
		{Name: "b", NAT: nattype.FullCone},
	}})
	w := newWorld(t, lab)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	na, nb, stop := twoNodes(t, ctx, w, lab.Site("a").Host(0), lab.Site("b").Host(0), sdk.WithHeartbeat(rebindHeartbeat, rebindMisses))
	defer stop()
	ca, cb := dialAccepted(ctx, t, na, nb, "dial")
	defer ca.Close()
	defer cb.Close()

	var la, lb pathLog
	la.watch(ctx, ca)
	lb.watch(ctx, cb)
	sa, sb := &seqStream{name: "a<-b", c: ca}, &seqStream{name: "b<-a", c: cb}
	stopSend := make(chan struct{})
	rctx, rcancel := context.WithCancel(ctx)
	var senders, receivers sync.WaitGroup
	for _, pair := range [][2]*seqStream{{sa, sb}, {sb, sa}} {
		senders.Add(1)
		receivers.Add(1)
		go func() { defer senders.Done(); pair[0].send(ctx, stopSend) }()
		go func() { defer receivers.Done(); pair[1].recv(rctx) }()
	}
	finished := false
	finish := func() {
		if finished {
			return
		}
		finished = true
		close(stopSend)
		senders.Wait() // each Flush returns once the peer has read everything
		rcancel()
		receivers.Wait()
	}
	defer func() {
		if t.Failed() {
			cancel() // unblock a Send or Flush waiting for a session
		}
		finish()
	}()

	bothDirect := func() bool { return ca.Path().Kind() == "direct" && cb.Path().Kind() == "direct" }
	bothRelayed := func() bool { return ca.Path().Relayed && cb.Path().Relayed }
	flowing := func(n uint64) bool { return sa.recvd.Load() >= n && sb.recvd.Load() >= n }
	progressed := func(from [2]uint64, n uint64) bool {
		return sa.recvd.Load() >= from[0]+n && sb.recvd.Load() >= from[1]+n
	}
	counts := func() [2]uint64 { return [2]uint64{sa.recvd.Load(), sb.recvd.Load()} }
	events := func() string { return fmt.Sprintf("events a: %s | b: %s", &la, &lb) }
	// Two seconds of traffic on a direct path first.
	testutil.WaitFor(t, time.Minute, "both sides direct with 2 s of traffic each way", func() bool {
		return bothDirect() && flowing(2*msgsPerSec) && errorsOf(sa, sb) == nil
	})
	before := counts()
	t.Logf("before the %s: a %s (%s -> %s), b %s; %d and %d messages in",
		what, ca.Path().Kind(), ca.Path().LocalCandidate, ca.Path().RemoteCandidate, cb.Path().Kind(), before[0], before[1])

	at := time.Now()
	la.setMark(at)
	lb.setMark(at)
	if err := rc.act(ctx, lab); err != nil {
		t.Fatal(err)
	}

	var relayedAfter time.Duration
	if rc.inSession {
		bound := rebindMisses * rebindHeartbeat
		if !testutil.Poll(bound, bothRelayed) {
			t.Fatalf("not on the relay within the heartbeat bound (%v) of the %s: a %s %s, b %s %s; %s",
				bound, what, ca.State(), ca.Path().Kind(), cb.State(), cb.Path().Kind(), events())
		}
		relayedAfter = time.Since(at)
	}
	// Resumed: a second of traffic more each way than before the event.
	resumed := testutil.Poll(90*time.Second, func() bool {
		return progressed(before, msgsPerSec) || errorsOf(sa, sb) != nil
	})
	resumedAfter := time.Since(at)
	if err := errorsOf(sa, sb); err != nil {
		t.Fatalf("after the %s: %v (%s)", what, err, events())
	}
	if !resumed {
		t.Fatalf("the transfer did not resume within 90 s of the %s: a %s %s, b %s %s; %s",
			what, ca.State(), ca.Path().Kind(), cb.State(), cb.Path().Kind(), events())
	}
	if rc.inSession {
		if s := ca.Stats().Sessions; s != 1 {
			t.Errorf("%d sessions: the connection reconnected instead of moving to the relay in its session (%s)", s, events())
		}
		if !bothRelayed() {
			t.Errorf("the transfer resumed, but not on the relay: a %s, b %s", ca.Path().Kind(), cb.Path().Kind())
		}
	}
	var healAt time.Time
	if rc.heal != nil {
		healAt = time.Now()
		if err := rc.heal(ctx, lab); err != nil {
			t.Fatal(err)
		}
	}
	// Ends direct, with traffic on that path.
	direct := testutil.Poll(90*time.Second, func() bool {
		return bothDirect() && ca.State() == sdk.StateConnected && cb.State() == sdk.StateConnected
	})
	directAfter := time.Since(at)
	if !direct {
		t.Fatalf("not direct again within 90 s of the %s: a %s, b %s; %s", what, ca.Path().Kind(), cb.Path().Kind(), events())
	}
	mark := counts()
	testutil.WaitFor(t, time.Minute, "a second of traffic on the direct path", func() bool {
		return progressed(mark, msgsPerSec) || errorsOf(sa, sb) != nil
	})

	finish()
	if err := errorsOf(sa, sb); err != nil {
		t.Fatal(err)
	}
	// Flush returned: every message sent was taken by the peer. Recv
	// was stopped after that, so every message must also have been read.
	for _, pr := range [][2]*seqStream{{sa, sb}, {sb, sa}} {
		if s, r := pr[0].sent.Load(), pr[1].recvd.Load(); s != r {
			t.Errorf("%s sent %d messages, %s received %d", pr[0].name, s, pr[1].name, r)
		}
	}
	if rc.inSession {
		if s := ca.Stats().Sessions; s != 1 {
			t.Errorf("%d sessions: the connection reconnected (%s)", s, events())
		}
	}
	st := ca.Stats()
	var phases []string
	if rc.inSession {
		phases = append(phases, fmt.Sprintf("relayed in %v", relayedAfter.Round(time.Millisecond)))
	}
	phases = append(phases, fmt.Sprintf("resumed in %v", resumedAfter.Round(time.Millisecond)))
	if !healAt.IsZero() {
		phases = append(phases, fmt.Sprintf("direct %v after the heal", time.Since(healAt).Round(time.Millisecond)))
	} else {
		phases = append(phases, fmt.Sprintf("direct in %v", directAfter.Round(time.Millisecond)))
	}
	t.Logf("after the %s: %s (longest gap a %v, b %v); sessions %d, resent %d, duplicates dropped %d/%d; a: %s %s -> %s; b: %s",
		what, strings.Join(phases, ", "), sa.gap().Round(time.Millisecond), sb.gap().Round(time.Millisecond),
		st.Sessions, st.Resent, st.Duplicates, cb.Stats().Duplicates,
		ca.Path().Kind(), ca.Path().LocalCandidate, ca.Path().RemoteCandidate, cb.Path().Kind())
	t.Logf("%s", events())
}

func errorsOf(ss ...*seqStream) error {
	for _, s := range ss {
		if err := s.failure(); err != nil {
			return err
		}
	}
	return nil
}

// A dialer that dies without a word (its packets stop, then its node goes,
// its GOAWAY lost on the dead path) leaves the acceptor reconnecting: the
// acceptor asks the rendezvous, which saw the dialer leave, and ends the
// conn with ErrPeerNotFound instead of waiting out its reconnect timeout.
func TestAcceptorNoticesDialerGone(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.CheckLeaks(t)
	testutil.Deadline(t, 3*time.Minute)
	lab := natlabtest.New(t, natlab.Config{Sites: []natlab.SiteConfig{
		{Name: "a", NAT: nattype.PortRestrictedCone},
		{Name: "b", NAT: nattype.FullCone},
	}})
	w := newWorld(t, lab)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const reconnectTimeout = 2 * time.Minute
	na, nb, stop := twoNodes(t, ctx, w, lab.Site("a").Host(0), lab.Site("b").Host(0),
		sdk.WithHeartbeat(rebindHeartbeat, rebindMisses), sdk.WithReconnectTimeout(reconnectTimeout))
	defer stop()
	ca, cb := dialAccepted(ctx, t, na, nb, "dial")
	defer cb.Close()
	if err := ca.Send(ctx, []byte("hello")); err != nil {
		t.Fatal(err)
	}
	if _, err := cb.Recv(ctx); err != nil {
		t.Fatal(err)
	}
	if ca.Path().Relayed {
		t.Fatalf("cone x cone got a relayed path: the test needs a direct one")
	}
	// The dialer's silence: nothing between the sites any more (a relayed
	// path would carry the GOAWAY of the Close below).
	if err := lab.Site("a").Block(ctx, lab.Site("b").PublicAddr); err != nil {
		t.Fatal(err)
	}
	at := time.Now()
	if err := na.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-cb.Done():
	case <-time.After(reconnectTimeout - 10*time.Second):
		t.Fatalf("acceptor still %s %v after the dialer left", cb.State(), time.Since(at).Round(time.Millisecond))
	}
	took := time.Since(at)
	if !errors.Is(cb.Err(), sdk.ErrPeerNotFound) {
		t.Fatalf("acceptor ended after %v with %v, want ErrPeerNotFound", took.Round(time.Millisecond), cb.Err())
	}
	t.Logf("acceptor ended %v after the dialer left (heartbeat bound %v, reconnect timeout %v): %v",
		took.Round(time.Millisecond), rebindMisses*rebindHeartbeat, reconnectTimeout, cb.Err())
}
