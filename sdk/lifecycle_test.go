package sdk

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/ferrynet/ferry/internal/testutil"
	"github.com/ferrynet/ferry/wire"
)

// A full send buffer blocks Send until the peer consumes. The endpoints run
// over an in-memory network in a synctest bubble, so "Send is blocked" is
// checked once every goroutine has settled, not after a guessed delay.
func TestSendBlocksOnFullBuffer(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := newMemNet()
		a, b := memEndpoint(t, n), memEndpoint(t, n)
		ca, cb := memConnect(t, a, b, WithSendBuffer(64<<10))
		ctx := context.Background()
		msg := make([]byte, 16<<10)
		for range 4 {
			if err := ca.Send(ctx, msg); err != nil {
				t.Fatal(err)
			}
		}
		// The buffer holds 64 KiB: the fifth message waits for b.
		short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
		defer cancel()
		if err := ca.Send(short, msg); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Send into a full buffer = %v, want it to block", err)
		}
		if st := ca.Stats(); st.Unacked != 4 || st.UnackedBytes != 64<<10 {
			t.Fatalf("stats %+v", st)
		}
		sent := make(chan error, 1)
		go func() { sent <- ca.Send(ctx, msg) }()
		synctest.Wait()
		select {
		case err := <-sent:
			t.Fatalf("Send returned %v while the buffer was full", err)
		default:
		}
		for range 4 {
			if _, err := cb.Recv(ctx); err != nil {
				t.Fatal(err)
			}
		}
		if err := <-sent; err != nil {
			t.Fatal(err)
		}
	})
}

// The receive window stops the sender even when its own buffer is larger:
// an app that never reads costs the receiver at most its window.
func TestRecvWindowBoundsPeer(t *testing.T) {
	testutil.CheckLeaks(t)
	testutil.Deadline(t, 30*time.Second)
	a, b := newEndpoint(t), newEndpoint(t, WithRecvWindow(32<<10))
	ca, cb := connect(t, a, b)
	ctx := ctxT(t, 10*time.Second)
	msg := make([]byte, 8<<10)
	n := 0
	for {
		short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
		err := ca.Send(short, msg)
		cancel()
		if err != nil {
			break
		}
		n++
		if n > 100 {
			t.Fatal("sender was never stopped by the receive window")
		}
	}
	if n != 4 {
		t.Fatalf("sender buffered %d messages of 8 KiB against a 32 KiB window", n)
	}
	testutil.WaitFor(t, 10*time.Second, "b to receive 4", func() bool { return cb.Stats().MessagesReceived == 4 })
}

// When every redial fails, the conn gives up after the reconnect timeout
// the app set, and Send and Recv say so.
func TestReconnectTimeout(t *testing.T) {
	testutil.CheckLeaks(t)
	testutil.Deadline(t, 30*time.Second)
	a, b := newEndpoint(t), newEndpoint(t)
	var attempts atomic.Int32
	redial := func(ctx context.Context) (PacketPath, error) {
		attempts.Add(1)
		return PacketPath{}, errNoPath
	}
	ca, cb := connect(t, a, b, WithRedial(redial), WithReconnectTimeout(300*time.Millisecond))
	ctx := ctxT(t, 10*time.Second)
	if err := ca.Send(ctx, []byte("unacked")); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 10*time.Second, "delivery", func() bool { return cb.Stats().MessagesReceived == 1 })
	drainEvents(ca)
	_ = currentQUIC(ca).CloseWithError(codeAbandoned, "test: path gone")
	waitEvent(t, ca, StateDisconnected)
	waitEvent(t, ca, StateReconnecting)
	var closed Event
	for ev := range ca.Events() {
		closed = ev
	}
	if closed.State != StateClosed || !errors.Is(closed.Err, ErrReconnectTimeout) || !errors.Is(closed.Err, errNoPath) {
		t.Fatalf("last event %v, want Closed with ErrReconnectTimeout naming the last failure", closed)
	}
	if attempts.Load() < 2 {
		t.Fatalf("only %d redial attempts in 300ms", attempts.Load())
	}
	if err := ca.Send(ctx, []byte("x")); !errors.Is(err, ErrReconnectTimeout) {
		t.Fatalf("Send after reconnect timeout = %v", err)
	}
	if _, err := ca.Recv(ctx); !errors.Is(err, ErrReconnectTimeout) {
		t.Fatalf("Recv after reconnect timeout = %v", err)
	}
	// Flush reports the loss.
	if err := ca.Flush(ctx); err == nil || !strings.Contains(err.Error(), "1 messages not acknowledged") {
		t.Fatalf("Flush after loss = %v", err)
	}
}

// The acceptor side has its own reconnect deadline: a dialer that never
// comes back closes the conn.
func TestAcceptorReconnectTimeout(t *testing.T) {
	testutil.CheckLeaks(t)
	testutil.Deadline(t, 30*time.Second)
	a := newEndpoint(t)
	b := newEndpoint(t, WithReconnectTimeout(200*time.Millisecond))
	ca, cb := connect(t, a, b, WithRedial(func(ctx context.Context) (PacketPath, error) {
		<-ctx.Done()
		return PacketPath{}, ctx.Err()
	}))
	_ = currentQUIC(ca).CloseWithError(codeAbandoned, "test: path gone")
	select {
	case <-cb.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("acceptor never gave up")
	}
	if err := cb.Err(); !errors.Is(err, ErrReconnectTimeout) {
		t.Fatalf("acceptor ended with %v", err)
	}
}

// A dialer that resumes at an acceptor which forgot the connection (it
// restarted) gets a clear, final error instead of retrying forever.
func TestResumeAtRestartedAcceptor(t *testing.T) {
	testutil.CheckLeaks(t)
	testutil.Deadline(t, 30*time.Second)
	pc := listenUDP(t)
	addr := pc.LocalAddr()
	id := newIdentity(t)
	b, err := NewEndpoint(pc, id)
	if err != nil {
		t.Fatal(err)
	}
	a := newEndpoint(t, WithHeartbeat(100*time.Millisecond, 3))
	ctx := ctxT(t, 10*time.Second)
	go func() { _, _ = b.Accept(ctx) }()
	ca, err := a.Dial(ctx, addr, id.PeerID())
	if err != nil {
		t.Fatal(err)
	}
	defer ca.Close()
	// b's process crashes: its socket goes first, so no GOAWAY leaves...
	_ = pc.Close()
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	// ...and it restarts with the same key and address, and no memory.
	pc2, err := net.ListenPacket("udp", addr.String())
	if err != nil {
		t.Fatal(err)
	}
	defer pc2.Close()
	b2, err := NewEndpoint(pc2, id)
	if err != nil {
		t.Fatal(err)
	}
	defer b2.Close()
	select {
	case <-ca.Done():
	case <-time.After(15 * time.Second):
		t.Fatalf("dialer still %v", ca.State())
	}
	var ga *GoAwayError
	err = ca.Err()
	if !errors.As(err, &ga) || ga.Code != wire.GoAwayPolicy || !strings.Contains(ga.Reason, "unknown connection") {
		t.Fatalf("dialer ended with %v, want the restarted peer's refusal", err)
	}
	t.Logf("dialer ended with: %v", err)
}

// Closing an endpoint closes its conns and leaves nothing running.
func TestEndpointCloseClosesConns(t *testing.T) {
	testutil.CheckLeaks(t)
	testutil.Deadline(t, 30*time.Second)
	pcA, pcB := listenUDP(t), listenUDP(t)
	a, err := NewEndpoint(pcA, newIdentity(t))
	if err != nil {
		t.Fatal(err)
	}
	b, err := NewEndpoint(pcB, newIdentity(t))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ctx := ctxT(t, 10*time.Second)
	go func() { _, _ = b.Accept(ctx) }()
	ca, err := a.Dial(ctx, b.LocalAddr(), b.PeerID())
	if err != nil {
		t.Fatal(err)
	}
	// Accepted but never taken by Accept: also closed.
	if _, err := a.Dial(ctx, b.LocalAddr(), b.PeerID()); err != nil {
		t.Fatal(err)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if err := a.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if ca.State() != StateClosed || !errors.Is(ca.Err(), ErrClosed) {
		t.Fatalf("conn after endpoint close: %v %v", ca.State(), ca.Err())
	}
	if _, err := a.Dial(ctx, b.LocalAddr(), b.PeerID()); err == nil {
		t.Fatal("Dial on a closed endpoint succeeded")
	}
	if _, err := a.Accept(ctx); !errors.Is(err, ErrClosed) {
		t.Fatalf("Accept on a closed endpoint = %v", err)
	}
}

func TestOptionsValidate(t *testing.T) {
	cases := []struct {
		name string
		opt  EndpointOption
		want string
	}{
		{"heartbeat", WithHeartbeat(0, 3), "heartbeat interval"},
		{"misses", WithHeartbeat(time.Second, 0), "heartbeat misses"},
		{"payload small", WithMaxPayload(10), "max payload"},
		{"payload big", WithMaxPayload(1 << 30), "max payload"},
		{"send buffer", WithSendBuffer(0), "send buffer"},
		{"window", WithRecvWindow(-1), "receive window"},
		{"handshake", WithHandshakeTimeout(0), "handshake timeout"},
		{"reconnect", WithReconnectTimeout(-time.Second), "reconnect timeout"},
		{"backlog", WithAcceptBacklog(0), "backlogs"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := NewEndpoint(listenUDP(t), newIdentity(t), c.opt)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want an error about %s", err, c.want)
			}
		})
	}
}

// The dialer's session is replaced while the acceptor's still looks alive:
// the acceptor swaps sessions and reports the change as events.
func TestAcceptorSeesReplacementEvents(t *testing.T) {
	testutil.CheckLeaks(t)
	testutil.Deadline(t, 30*time.Second)
	a, b := newEndpoint(t), newEndpoint(t)
	var paths []*lossyConn
	redial := func(ctx context.Context) (PacketPath, error) {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			return PacketPath{}, err
		}
		l := newLossyConn(pc, 0, 0, 1)
		paths = append(paths, l)
		return PacketPath{Conn: l, Addr: b.LocalAddr()}, nil
	}
	ca, cb := connect(t, a, b, WithRedial(redial))
	drainEvents(cb)
	ctx := ctxT(t, 10*time.Second)
	// First replacement: the dialer abandons its session.
	_ = currentQUIC(ca).CloseWithError(codeAbandoned, "test")
	waitEvent(t, cb, StateConnected)
	// Second: the dialer's path vanishes without a word; only the new
	// session tells the acceptor.
	testutil.WaitFor(t, 10*time.Second, "a reconnected", func() bool { return ca.State() == StateConnected })
	drainEvents(cb)
	paths[len(paths)-1].kill()
	ev := waitEvent(t, cb, StateDisconnected)
	if !errors.Is(ev.Err, errReplaced) {
		t.Logf("acceptor noticed on its own first: %v", ev.Err)
	}
	waitEvent(t, cb, StateConnected)
	if err := ca.Send(ctx, []byte("after")); err != nil {
		t.Fatal(err)
	}
	if m, err := cb.Recv(ctx); err != nil || string(m) != "after" {
		t.Fatalf("%q %v", m, err)
	}
	if s := cb.Stats().Sessions; s != 3 {
		t.Fatalf("acceptor ran %d sessions, want 3", s)
	}
}

// TestCloseWhileAccepting closes the accepting endpoint right after a dial
// completes, while its side of the handshake may still be starting the
// session: the session must either start before Close terminates it or not
// start at all (the race detector once saw WaitGroup.Add racing Wait), and
// nothing may leak.
func TestCloseWhileAccepting(t *testing.T) {
	testutil.CheckLeaks(t)
	testutil.Deadline(t, 60*time.Second)
	for range 100 {
		a, err := NewEndpoint(listenUDP(t), newIdentity(t))
		if err != nil {
			t.Fatal(err)
		}
		b, err := NewEndpoint(listenUDP(t), newIdentity(t))
		if err != nil {
			t.Fatal(err)
		}
		ctx := ctxT(t, 10*time.Second)
		if _, err := a.Dial(ctx, b.LocalAddr(), b.PeerID()); err != nil {
			t.Fatal(err)
		}
		if err := b.Close(); err != nil {
			t.Fatal(err)
		}
		if err := a.Close(); err != nil {
			t.Fatal(err)
		}
	}
}
