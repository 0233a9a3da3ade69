package sdk

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/ferrynet/ferry/internal/testutil"
)

// liveSession returns the session under c, failing when there is none.
func liveSession(t *testing.T, c *Conn) *session {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.sess == nil {
		t.Fatalf("%v: no session", c.role)
	}
	return c.sess
}

// stateEvents returns the state changes queued on c's events so far,
// skipping path changes and reconnect attempts.
func stateEvents(c *Conn) []Event {
	var evs []Event
	for {
		select {
		case ev := <-c.Events():
			if ev.Path == nil && ev.Attempt == 0 {
				evs = append(evs, ev)
			}
		default:
			return evs
		}
	}
}

// TestLivenessCountsStreamData: both sides lose every PING and PONG (the
// sessions are deaf to them) while bulk data flows both ways on an
// application stream. The stream data alone keeps the peers alive for many
// heartbeat bounds; once it stops, the same deaf sessions are declared
// dead within the bound, which shows the heartbeats were really lost.
func TestLivenessCountsStreamData(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const interval = time.Second
		n := newMemNet()
		n.latency = 10 * time.Millisecond
		opts := []EndpointOption{WithHeartbeat(interval, 3), WithHandshakeTimeout(2 * time.Second)}
		a := memEndpoint(t, n, opts...)
		b := memEndpoint(t, n, opts...)
		ca, cb := memConnect(t, a, b)
		time.Sleep(interval) // let the first PING/PONG settle
		synctest.Wait()
		drainEvents(ca)
		drainEvents(cb)
		liveSession(t, ca).deafToHeartbeats.Store(true)
		liveSession(t, cb).deafToHeartbeats.Store(true)

		ctx := context.Background()
		sa, err := ca.OpenStream(ctx, "bulk")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := sa.Write([]byte("hi")); err != nil { // makes the peer see the stream
			t.Fatal(err)
		}
		sb, err := cb.AcceptStream(ctx)
		if err != nil {
			t.Fatal(err)
		}
		stop := make(chan struct{})
		var wg sync.WaitGroup
		var got [2]int
		for i, st := range []*Stream{sa, sb} {
			wg.Go(func() { // writer: 4 KiB every 100 ms
				chunk := make([]byte, 4<<10)
				tick := time.NewTicker(100 * time.Millisecond)
				defer tick.Stop()
				for {
					select {
					case <-stop:
						return
					case <-tick.C:
					}
					if _, err := st.Write(chunk); err != nil {
						return
					}
				}
			})
			wg.Go(func() { // reader
				buf := make([]byte, 32<<10)
				for {
					k, err := st.Read(buf)
					got[i] += k
					if err != nil {
						return
					}
				}
			})
		}

		// Ten heartbeat bounds of stream traffic with no heartbeat at all.
		time.Sleep(30 * interval)
		synctest.Wait()
		for _, c := range []*Conn{ca, cb} {
			if evs := stateEvents(c); len(evs) > 0 || c.State() != StateConnected {
				t.Fatalf("%v: with stream data flowing but heartbeats lost: state %v, events %v", c.role, c.State(), evs)
			}
		}

		// The traffic stops: the deaf sessions now hear nothing at all.
		close(stop)
		quietAt := time.Now()
		for _, c := range []*Conn{ca, cb} {
			ev := waitEvent(t, c, StateDisconnected)
			took := ev.Time.Sub(quietAt)
			t.Logf("%v: disconnected %v after the stream went quiet: %v", c.role, took, ev.Err)
			if took < 2*interval || took > 4*interval {
				t.Errorf("%v: Disconnected %v after the traffic stopped, want 3 intervals of %v +- 1", c.role, took, interval)
			}
		}
		sa.Reset()
		sb.Reset()
		wg.Wait()
		if got[0] == 0 || got[1] == 0 {
			t.Fatalf("stream carried %d / %d bytes", got[0], got[1])
		}
	})
}

// TestReconnectAttemptsAreEvents: while the network is down the dialer
// reports each failed redial as an Event numbering the attempt, with its
// error and the wait before the next one.
func TestReconnectAttemptsAreEvents(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const interval = time.Second
		n := newMemNet()
		n.latency = 10 * time.Millisecond
		opts := []EndpointOption{WithHeartbeat(interval, 3), WithHandshakeTimeout(time.Second)}
		a := memEndpoint(t, n, opts...)
		b := memEndpoint(t, n, opts...)
		ca, _ := memConnect(t, a, b)
		drainEvents(ca)
		n.blackhole.Store(true)
		waitEvent(t, ca, StateReconnecting)
		want := 1
		for want <= 3 {
			ev := <-ca.Events()
			if ev.State == StateClosed {
				t.Fatalf("closed while reconnecting: %v", ev.Err)
			}
			if ev.Attempt == 0 {
				continue
			}
			t.Logf("event: %v", ev)
			if ev.Attempt != want || ev.From != StateReconnecting || ev.State != StateReconnecting {
				t.Fatalf("event %+v, want attempt %d while reconnecting", ev, want)
			}
			if ev.Err == nil || ev.NextAttempt <= 0 || ev.NextAttempt > redialMaxBackoff {
				t.Fatalf("attempt %d: error %v, next attempt in %v", ev.Attempt, ev.Err, ev.NextAttempt)
			}
			if !strings.Contains(ev.String(), fmt.Sprintf("attempt %d", want)) {
				t.Fatalf("event string %q", ev.String())
			}
			want++
		}
		n.blackhole.Store(false)
		waitEvent(t, ca, StateConnected)
	})
}

// TestReconnectEndsWhenPeerGone: once the rendezvous keeps reporting the
// peer gone, the dialer's reconnect ends with ErrPeerNotFound about
// peerGoneGrace later, not at the (here one hour) reconnect timeout. The
// dial is swapped for one that reports what a rendezvous would.
func TestReconnectEndsWhenPeerGone(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const interval = time.Second
		n := newMemNet()
		n.latency = 10 * time.Millisecond
		opts := []EndpointOption{WithHeartbeat(interval, 3), WithHandshakeTimeout(time.Second), WithReconnectTimeout(time.Hour)}
		a := memEndpoint(t, n, opts...)
		b := memEndpoint(t, n, opts...)
		ca, _ := memConnect(t, a, b)
		drainEvents(ca)
		var dials int
		ca.mu.Lock()
		ca.dial = func(context.Context) (*session, error) {
			dials++
			return nil, fmt.Errorf("sdk: dial %s: %w: rendezvous: not logged in", ca.remote.Short(), ErrPeerNotFound)
		}
		ca.mu.Unlock()
		n.blackhole.Store(true)
		lost := waitEvent(t, ca, StateReconnecting)
		var attempts int
		for ev := range ca.Events() {
			if ev.Attempt > 0 {
				attempts++
				continue
			}
			if ev.State != StateClosed {
				continue
			}
			took := ev.Time.Sub(lost.Time)
			t.Logf("closed %v after the session was lost, %d attempts: %v", took, attempts, ev.Err)
			if !errors.Is(ev.Err, ErrPeerNotFound) || !errors.Is(ca.Err(), ErrPeerNotFound) {
				t.Fatalf("closed with %v (Err %v), want ErrPeerNotFound", ev.Err, ca.Err())
			}
			if took < peerGoneGrace || took > peerGoneGrace+time.Second {
				t.Fatalf("gave up %v after the session was lost, want about %v", took, peerGoneGrace)
			}
			if attempts < 2 || attempts != dials {
				t.Fatalf("%d attempt events for %d dials", attempts, dials)
			}
			return
		}
		t.Fatal("events ended without Closed")
	})
}

// TestReconnectNotFoundOnceIsNotFatal: a single ErrPeerNotFound (a peer
// whose signaling blipped) does not end the conn when the next redial
// works.
func TestReconnectNotFoundOnceIsNotFatal(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := newMemNet()
		n.latency = 10 * time.Millisecond
		opts := []EndpointOption{WithHeartbeat(time.Second, 3), WithHandshakeTimeout(time.Second)}
		a := memEndpoint(t, n, opts...)
		b := memEndpoint(t, n, opts...)
		ca, cb := memConnect(t, a, b)
		drainEvents(ca)
		ca.mu.Lock()
		real := ca.dial
		var dials int
		ca.dial = func(ctx context.Context) (*session, error) {
			dials++
			if dials == 1 {
				return nil, fmt.Errorf("%w: not logged in", ErrPeerNotFound)
			}
			return real(ctx)
		}
		ca.mu.Unlock()
		_ = currentQUIC(ca).CloseWithError(codeAbandoned, "test: path lost")
		waitEvent(t, ca, StateConnected)
		ctx := context.Background()
		if err := ca.Send(ctx, []byte("still here")); err != nil {
			t.Fatal(err)
		}
		if m, err := cb.Recv(ctx); err != nil || string(m) != "still here" {
			t.Fatalf("after reconnect: %q %v", m, err)
		}
	})
}

// The helper peer for TestKilledPeerIsNoticed runs in a child process: a
// node that accepts one conn and sends messages until it is killed.
const (
	livenessPeerEnv = "FERRY_TEST_LIVENESS_PEER_RENDEZVOUS"
	livenessPeerTag = "LIVENESS-PEER "
)

func TestLivenessHelperPeer(t *testing.T) {
	url := os.Getenv(livenessPeerEnv)
	if url == "" {
		return // only runs as TestKilledPeerIsNoticed's child process
	}
	ctx := ctxT(t, time.Minute)
	n, err := New(ctx, WithIdentity(newIdentity(t)), WithRendezvous(url),
		WithLoopbackCandidates(), WithCandidateFilter(func(ip net.IP) bool { return ip.IsLoopback() }))
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	fmt.Printf("%s%s\n", livenessPeerTag, n.PeerID())
	c, err := n.Accept(ctx)
	if err != nil {
		t.Fatal(err)
	}
	msg := make([]byte, 8<<10)
	for {
		if err := c.Send(ctx, msg); err != nil {
			t.Fatal(err)
		}
	}
}

// TestKilledPeerIsNoticed: a peer in another process is SIGKILLed in the
// middle of a transfer. The dialer reports Disconnected within the
// heartbeat bound (3 intervals, +1 of slack for a loaded machine), and its
// reconnect ends with ErrPeerNotFound a few seconds later, since the
// rendezvous saw the peer's signaling connection die with it.
func TestKilledPeerIsNoticed(t *testing.T) {
	testutil.CheckLeaks(t)
	testutil.Deadline(t, time.Minute)
	const interval, misses = 2 * time.Second, 3
	in := newInfra(t)
	a := in.node(t, WithHeartbeat(interval, misses), WithReconnectTimeout(time.Hour))

	cmd := exec.Command(os.Args[0], "-test.run=^TestLivenessHelperPeer$")
	cmd.Env = append(os.Environ(), livenessPeerEnv+"="+in.url)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	peerc := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if s, ok := strings.CutPrefix(sc.Text(), livenessPeerTag); ok {
				peerc <- s
			}
		}
		close(peerc)
		_, _ = io.Copy(io.Discard, out)
	}()
	var peer PeerID
	select {
	case s, ok := <-peerc:
		if !ok {
			t.Fatal("the helper peer exited without saying its PeerID")
		}
		if peer, err = ParsePeerID(s); err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the helper peer did not start")
	}

	ctx := ctxT(t, 40*time.Second)
	c, err := a.Dial(ctx, peer)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var got int
	for got < 1<<20 { // 1 MiB in: the transfer is under way
		m, err := c.Recv(ctx)
		if err != nil {
			t.Fatal(err)
		}
		got += len(m)
	}
	drainEvents(c)
	if err := cmd.Process.Kill(); err != nil { // SIGKILL
		t.Fatal(err)
	}
	killedAt := time.Now()
	go func() { // keep reading what was already in flight
		for {
			if _, err := c.Recv(ctx); err != nil {
				return
			}
		}
	}()

	lost := waitEvent(t, c, StateDisconnected)
	took := lost.Time.Sub(killedAt)
	t.Logf("SIGKILLed peer reported %v later (bound %d x %v): %v", took, misses, interval, lost.Err)
	if took > (misses+1)*interval {
		t.Errorf("Disconnected %v after the kill, want within %d heartbeat intervals of %v", took, misses, interval)
	}
	for ev := range c.Events() {
		if ev.State != StateClosed {
			continue
		}
		gone := ev.Time.Sub(lost.Time)
		t.Logf("reconnect gave up %v after Disconnected: %v", gone, ev.Err)
		if !errors.Is(ev.Err, ErrPeerNotFound) {
			t.Fatalf("closed with %v, want ErrPeerNotFound", ev.Err)
		}
		if gone > peerGoneGrace+2*redialMaxBackoff {
			t.Errorf("reconnect to a gone peer took %v, want about %v", gone, peerGoneGrace)
		}
		return
	}
	t.Fatal("events ended without Closed")
}
