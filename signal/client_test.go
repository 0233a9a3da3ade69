package signal_test

import (
	"context"
	"errors"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/ferrynet/ferry/identity"
	"github.com/ferrynet/ferry/internal/testutil"
	"github.com/ferrynet/ferry/server/rendezvous"
	"github.com/ferrynet/ferry/signal"
	"github.com/ferrynet/ferry/wire"
)

func newID(t *testing.T) *identity.Identity {
	t.Helper()
	id, err := identity.Generate()
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func serve(t *testing.T, ln net.Listener) *rendezvous.Server {
	t.Helper()
	s, err := rendezvous.New(rendezvous.Config{Listener: ln, ServerNames: []string{"127.0.0.1"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func listen(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

func TestDialUsageErrors(t *testing.T) {
	ctx := context.Background()
	for _, url := range []string{"", "http//x", "ftp://127.0.0.1", "wss://", "://"} {
		if _, err := signal.Dial(ctx, url, newID(t)); err == nil {
			t.Errorf("Dial(%q) accepted", url)
		}
	}
	if _, err := signal.Dial(ctx, "ws://127.0.0.1:1", nil); err == nil {
		t.Error("Dial without an identity accepted")
	}
	for _, opt := range []signal.Option{
		signal.WithBackoff(0, time.Second), signal.WithBackoff(2*time.Second, time.Second),
		signal.WithInbox(-1), signal.WithPingInterval(0), signal.WithCAFile("/nonexistent/ca.pem"),
	} {
		if _, err := signal.Dial(ctx, "ws://127.0.0.1:1", newID(t), opt); err == nil {
			t.Error("Dial accepted a bad option")
		}
	}
}

// TestDialWaitsForServer: Dial retries a server that is not up yet, within
// its context, and gives up when the context ends.
func TestDialWaitsForServer(t *testing.T) {
	testutil.CheckLeaks(t)
	testutil.Deadline(t, 30*time.Second)
	ln := listen(t)
	addr := ln.Addr().String()
	ln.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	_, err := signal.Dial(ctx, "ws://"+addr, newID(t), signal.WithBackoff(20*time.Millisecond, 50*time.Millisecond))
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("no server: %v", err)
	}

	go func() {
		time.Sleep(300 * time.Millisecond)
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			t.Error(err)
			return
		}
		serve(t, ln)
	}()
	ctx, cancel = context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := signal.Dial(ctx, "ws://"+addr, newID(t), signal.WithBackoff(20*time.Millisecond, 100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	if c.State() != signal.StateConnected || c.ServerID() == "" {
		t.Fatalf("state %v, server %q", c.State(), c.ServerID())
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal("second Close:", err)
	}
	if !errors.Is(c.Err(), signal.ErrClosed) || c.State() != signal.StateClosed {
		t.Fatalf("after Close: %v %v", c.Err(), c.State())
	}
	if _, err := c.Credentials(context.Background()); !errors.Is(err, signal.ErrClosed) {
		t.Fatalf("Credentials after Close: %v", err)
	}
}

// TestLoginRefusedAtOnce: a refused login is not retried by Dial.
func TestLoginRefusedAtOnce(t *testing.T) {
	testutil.CheckLeaks(t)
	testutil.Deadline(t, 30*time.Second)
	s := serve(t, listen(t))
	url := "ws://" + s.Addr().String()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for name, opt := range map[string]signal.Option{
		"server name": signal.WithServerName("elsewhere.example"),
		"clock":       signal.WithClock(func() time.Time { return time.Now().Add(-time.Hour) }),
	} {
		start := time.Now()
		_, err := signal.Dial(ctx, url, newID(t), opt)
		var se *signal.ServerError
		if !errors.Is(err, signal.ErrLoginRefused) || !errors.As(err, &se) || se.Code != wire.SignalErrLoginFailed {
			t.Fatalf("%s: %v", name, err)
		}
		if time.Since(start) > 5*time.Second {
			t.Fatalf("%s: refused after %v", name, time.Since(start))
		}
	}
}

// TestHandlerAndClose: WithHandler receives the messages; closing a client
// while it reconnects stops it without leaking.
func TestHandlerAndClose(t *testing.T) {
	testutil.CheckLeaks(t)
	testutil.Deadline(t, 30*time.Second)
	ln := listen(t)
	s := serve(t, ln)
	url := "ws://" + s.Addr().String()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var mu sync.Mutex
	var got []signal.Message
	b, err := signal.Dial(ctx, url, newID(t), signal.WithHandler(func(m signal.Message) {
		mu.Lock()
		got = append(got, m)
		mu.Unlock()
	}))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	a, err := signal.Dial(ctx, url, newID(t), signal.WithBackoff(10*time.Millisecond, 20*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Bye(ctx, b.PeerID(), []byte("s"), "bye"); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 5*time.Second, "the handler to get the Bye", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(got) == 1
	})
	if got[0].From != a.PeerID() || got[0].Type != wire.TypeBye {
		t.Fatalf("handler got %+v", got[0])
	}
	// Stop the server: a reconnects in a loop; Close ends that.
	s.Close()
	testutil.WaitFor(t, 5*time.Second, "a to reconnect", func() bool { return a.State() == signal.StateReconnecting })
	sendCtx, sendCancel := context.WithTimeout(ctx, 100*time.Millisecond)
	if err := a.Offer(sendCtx, b.PeerID(), &wire.Offer{}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Send while reconnecting: %v", err)
	}
	sendCancel()
	a.Close()
	if _, ok := <-a.Messages(); ok {
		t.Fatal("Messages not closed")
	}
	if _, err := a.Recv(ctx); !errors.Is(err, signal.ErrClosed) {
		t.Fatalf("Recv after Close: %v", err)
	}
}

func TestServerErrorIs(t *testing.T) {
	for code, want := range map[wire.SignalErrorCode]error{
		wire.SignalErrPeerNotFound: signal.ErrPeerNotFound,
		wire.SignalErrBusy:         signal.ErrBusy,
		wire.SignalErrRateLimited:  signal.ErrRateLimited,
		wire.SignalErrUnavailable:  signal.ErrUnavailable,
		wire.SignalErrLoginFailed:  signal.ErrLoginRefused,
	} {
		err := error(&signal.ServerError{Code: code, Reason: "r"})
		if !errors.Is(err, want) || errors.Is(err, signal.ErrClosed) {
			t.Errorf("%v does not match only %v", code, want)
		}
	}
	if errors.Is(&signal.ServerError{Code: wire.SignalErrMalformed}, signal.ErrPeerNotFound) {
		t.Error("malformed matches peer not found")
	}
	if signal.StateReconnecting.String() != "reconnecting" || signal.State(9).String() != "State(9)" {
		t.Error("state names")
	}
}
