package sdk

// These tests handle every error with errors.Is and errors.As on the SDK's
// own sentinels and types: this file imports neither quic-go nor wire, as
// an application would not.

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/ferrynet/ferry/internal/testutil"
)

func TestErrClosedIsNetErrClosed(t *testing.T) {
	testutil.CheckLeaks(t)
	testutil.Deadline(t, 30*time.Second)
	if !errors.Is(ErrClosed, net.ErrClosed) {
		t.Fatal("ErrClosed does not match net.ErrClosed")
	}
	a, b := newEndpoint(t), newEndpoint(t)
	ca, cb := connect(t, a, b)
	ctx := ctxT(t, 10*time.Second)
	st, err := ca.OpenStream(ctx, "p")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	in, err := cb.AcceptStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	readErr := make(chan error, 1)
	go func() {
		_, err := io.ReadAll(in)
		readErr <- err
	}()
	if err := ca.Close(); err != nil {
		t.Fatal(err)
	}
	for name, err := range map[string]error{
		"Send":       ca.Send(ctx, []byte("x")),
		"Recv":       second(ca.Recv(ctx)),
		"OpenStream": second(ca.OpenStream(ctx, "p")),
		"Stream.Read after Close": func() error {
			_, err := st.Read(make([]byte, 1))
			return err
		}(),
	} {
		if !errors.Is(err, ErrClosed) || !errors.Is(err, net.ErrClosed) {
			t.Errorf("%s after Close: %v, want ErrClosed (net.ErrClosed)", name, err)
		}
	}
	// The peer's side of the stream sees a normal close, in SDK terms.
	if err := <-readErr; !errors.Is(err, ErrPeerClosed) {
		t.Errorf("peer's stream read after Close: %v, want ErrPeerClosed", err)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Accept(ctx); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Endpoint.Accept after Close: %v, want net.ErrClosed", err)
	}
}

func TestErrPeerClosed(t *testing.T) {
	testutil.CheckLeaks(t)
	testutil.Deadline(t, 30*time.Second)
	a, b := newEndpoint(t), newEndpoint(t)
	ca, cb := connect(t, a, b)
	ctx := ctxT(t, 10*time.Second)
	if err := ca.Send(ctx, []byte("bye")); err != nil {
		t.Fatal(err)
	}
	if m, err := cb.Recv(ctx); err != nil || string(m) != "bye" {
		t.Fatalf("Recv = %q, %v", m, err)
	}
	if err := ca.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if err := ca.Close(); err != nil {
		t.Fatal(err)
	}
	_, err := cb.Recv(ctx)
	var ga *GoAwayError
	if !errors.Is(err, ErrPeerClosed) || !errors.As(err, &ga) || !ga.Remote {
		t.Fatalf("Recv after the peer's Close: %v, want ErrPeerClosed", err)
	}
	if errors.Is(err, ErrProtocol) || errors.Is(err, ErrSessionLost) {
		t.Errorf("a normal close also matches a failure: %v", err)
	}
	if err := cb.Send(ctx, []byte("x")); !errors.Is(err, ErrPeerClosed) {
		t.Errorf("Send after the peer's Close: %v", err)
	}
}

func TestStreamResetByPeer(t *testing.T) {
	testutil.CheckLeaks(t)
	testutil.Deadline(t, 30*time.Second)
	a, b := newEndpoint(t), newEndpoint(t)
	ca, cb := connect(t, a, b)
	ctx := ctxT(t, 10*time.Second)
	for _, tc := range []struct {
		reset func(*Stream)
		code  uint32
	}{
		{(*Stream).Reset, 0},
		{func(s *Stream) { s.ResetWithCode(7) }, 7},
		{func(s *Stream) { s.ResetWithCode(1 << 31) }, 1 << 31},
	} {
		st, err := ca.OpenStream(ctx, "p")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := st.Write([]byte("x")); err != nil {
			t.Fatal(err)
		}
		in, err := cb.AcceptStream(ctx)
		if err != nil {
			t.Fatal(err)
		}
		tc.reset(in)
		_, err = io.ReadAll(st)
		var re *StreamResetError
		if !errors.Is(err, ErrStreamReset) || !errors.As(err, &re) || re.Code != tc.code {
			t.Fatalf("Read after the peer's reset with code %d: %v", tc.code, err)
		}
		_ = st.Close()
	}
}

// TestStreamSessionLost: a stream's Read fails with ErrSessionLost when the
// path goes silent; the connection reconnects underneath.
func TestStreamSessionLost(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := newMemNet()
		n.latency = 5 * time.Millisecond
		opts := []EndpointOption{WithHeartbeat(time.Second, 3), WithHandshakeTimeout(2 * time.Second)}
		a, b := memEndpoint(t, n, opts...), memEndpoint(t, n, opts...)
		ca, cb := memConnect(t, a, b)
		ctx := context.Background()
		st, err := ca.OpenStream(ctx, "p")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := st.Write([]byte("x")); err != nil {
			t.Fatal(err)
		}
		in, err := cb.AcceptStream(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(in, make([]byte, 1)); err != nil {
			t.Fatal(err)
		}
		n.blackhole.Store(true)
		_, err = in.Read(make([]byte, 8))
		var lost *SessionLostError
		if !errors.Is(err, ErrSessionLost) || !errors.As(err, &lost) {
			t.Fatalf("Read on a dead path: %v, want ErrSessionLost", err)
		}
		if errors.Is(err, ErrClosed) || errors.Is(err, ErrPeerClosed) {
			t.Errorf("a lost session also matches a close: %v", err)
		}
		n.blackhole.Store(false)
		_ = st.Close()
	})
}

func TestNoPathErrorIsOneLine(t *testing.T) {
	e := &NoPathError{Dump: strings.Repeat("candidate 1.2.3.4 host\n", 100)}
	if !errors.Is(e, ErrNoPath) {
		t.Fatal("NoPathError does not match ErrNoPath")
	}
	if msg := e.Error(); strings.Contains(msg, "\n") || len(msg) > 120 {
		t.Fatalf("Error() is %d bytes: %q", len(msg), msg)
	}
}

func second[T any](_ T, err error) error { return err }
