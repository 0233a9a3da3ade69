package sdk

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/ferrynet/ferry/identity"
	"github.com/ferrynet/ferry/internal/testutil"
	"github.com/ferrynet/ferry/wire"
)

func newIdentity(t testing.TB) *Identity {
	t.Helper()
	id, err := GenerateIdentity()
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func listenUDP(t testing.TB) net.PacketConn {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pc.Close() })
	return pc
}

// newEndpoint starts an endpoint on a loopback UDP socket, closed at cleanup.
func newEndpoint(t testing.TB, opts ...EndpointOption) *Endpoint {
	t.Helper()
	return newEndpointOn(t, listenUDP(t), opts...)
}

func newEndpointOn(t testing.TB, pc net.PacketConn, opts ...EndpointOption) *Endpoint {
	t.Helper()
	e, err := NewEndpoint(pc, newIdentity(t), opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := e.Close(); err != nil {
			t.Errorf("endpoint close: %v", err)
		}
	})
	return e
}

// connect dials b from a and returns both ends.
func connect(t testing.TB, a, b *Endpoint, opts ...EndpointDialOption) (ca, cb *Conn) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	type res struct {
		c   *Conn
		err error
	}
	accepted := make(chan res, 1)
	go func() {
		c, err := b.Accept(ctx)
		accepted <- res{c, err}
	}()
	ca, err := a.Dial(ctx, b.LocalAddr(), b.PeerID(), opts...)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	r := <-accepted
	if r.err != nil {
		t.Fatalf("accept: %v", r.err)
	}
	t.Cleanup(func() { _ = ca.Close(); _ = r.c.Close() })
	return ca, r.c
}

func ctxT(t testing.TB, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func TestSendRecvBothWays(t *testing.T) {
	testutil.CheckLeaks(t)
	testutil.Deadline(t, 30*time.Second)
	a, b := newEndpoint(t), newEndpoint(t)
	ca, cb := connect(t, a, b)
	if ca.RemotePeer() != b.PeerID() || cb.RemotePeer() != a.PeerID() {
		t.Fatal("peer IDs do not match the endpoints")
	}
	if ca.State() != StateConnected || cb.State() != StateConnected {
		t.Fatalf("states %v %v", ca.State(), cb.State())
	}
	ctx := ctxT(t, 10*time.Second)
	for i := range 100 {
		msg := fmt.Appendf(nil, "a->b %d", i)
		if err := ca.Send(ctx, msg); err != nil {
			t.Fatal(err)
		}
		if err := cb.Send(ctx, fmt.Appendf(nil, "b->a %d", i)); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 100 {
		got, err := cb.Recv(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if want := fmt.Sprintf("a->b %d", i); string(got) != want {
			t.Fatalf("b got %q want %q", got, want)
		}
		got, err = ca.Recv(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if want := fmt.Sprintf("b->a %d", i); string(got) != want {
			t.Fatalf("a got %q want %q", got, want)
		}
	}
	if err := ca.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	// Empty messages are messages too.
	if err := ca.Send(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if got, err := cb.Recv(ctx); err != nil || len(got) != 0 {
		t.Fatalf("empty message: %q %v", got, err)
	}
}

func TestMessageTooLarge(t *testing.T) {
	testutil.CheckLeaks(t)
	a, b := newEndpoint(t), newEndpoint(t, WithMaxPayload(4096))
	ca, cb := connect(t, a, b)
	ctx := ctxT(t, 10*time.Second)
	err := ca.Send(ctx, make([]byte, 4097))
	if !errors.Is(err, ErrMessageTooLarge) || !strings.Contains(err.Error(), "at most 4096") {
		t.Fatalf("Send(4097 bytes) = %v", err)
	}
	// b accepts 4096, and may send a.maxPayload (1 MiB) the other way.
	if err := ca.Send(ctx, make([]byte, 4096)); err != nil {
		t.Fatal(err)
	}
	if err := cb.Send(ctx, make([]byte, 1<<20)); err != nil {
		t.Fatal(err)
	}
	if m, err := ca.Recv(ctx); err != nil || len(m) != 1<<20 {
		t.Fatalf("recv 1 MiB: %d %v", len(m), err)
	}
}

func TestManInTheMiddleFailsHandshake(t *testing.T) {
	testutil.CheckLeaks(t)
	a := newEndpoint(t)
	b := newEndpoint(t)
	mallory := newEndpoint(t)
	// A means to reach B, but the traffic reaches Mallory, who answers with
	// her own key.
	ctx := ctxT(t, 10*time.Second)
	_, err := a.Dial(ctx, mallory.LocalAddr(), b.PeerID())
	var mm *identity.MismatchError
	if !errors.As(err, &mm) {
		t.Fatalf("dial through Mallory: %v, want a MismatchError", err)
	}
	if mm.Expected != b.PeerID() || mm.Presented != mallory.PeerID() {
		t.Fatalf("mismatch names expected %s presented %s", mm.Expected.Short(), mm.Presented.Short())
	}
	msg := err.Error()
	if !strings.Contains(msg, b.PeerID().String()) || !strings.Contains(msg, mallory.PeerID().String()) {
		t.Fatalf("error %q must name the expected and the presented PeerID", msg)
	}
	// Nothing reached Mallory's application.
	actx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if c, err := mallory.Accept(actx); err == nil {
		t.Fatalf("Mallory accepted a connection from %s", c.RemotePeer().Short())
	}
}

func TestAllowPeerRefusesDialer(t *testing.T) {
	testutil.CheckLeaks(t)
	a := newEndpoint(t)
	b := newEndpoint(t, WithAllowPeer(func(p PeerID) error {
		return fmt.Errorf("peer %s not welcome", p.Short())
	}))
	_, err := a.Dial(ctxT(t, 10*time.Second), b.LocalAddr(), b.PeerID())
	if err == nil {
		t.Fatal("dial to a refusing endpoint succeeded")
	}
}

func TestCloseSendsGoAwayAndPeerDrains(t *testing.T) {
	testutil.CheckLeaks(t)
	testutil.Deadline(t, 30*time.Second)
	a, b := newEndpoint(t), newEndpoint(t)
	ca, cb := connect(t, a, b)
	ctx := ctxT(t, 10*time.Second)
	for i := range 10 {
		if err := ca.Send(ctx, []byte{byte(i)}); err != nil {
			t.Fatal(err)
		}
	}
	// Flush waits for b's application, which has not read anything.
	fctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	if err := ca.Flush(fctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Flush before the peer consumed = %v", err)
	}
	testutil.WaitFor(t, 10*time.Second, "b to receive 10 messages", func() bool { return cb.Stats().MessagesReceived == 10 })
	if err := ca.Close(); err != nil {
		t.Fatal(err)
	}
	if err := ca.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if err := ca.Send(ctx, []byte("late")); !errors.Is(err, ErrClosed) {
		t.Fatalf("Send after Close = %v, want ErrClosed", err)
	}
	// b still gets what a sent before closing, then the reason.
	for i := range 10 {
		m, err := cb.Recv(ctx)
		if err != nil || len(m) != 1 || m[0] != byte(i) {
			t.Fatalf("message %d after peer close: %v %v", i, m, err)
		}
	}
	_, err := cb.Recv(ctx)
	var ga *GoAwayError
	if !errors.As(err, &ga) || !ga.Remote || ga.Code != wire.GoAwayNormal {
		t.Fatalf("Recv after peer close = %v, want a remote normal GOAWAY", err)
	}
	if cb.State() != StateClosed {
		t.Fatalf("b state %v, want closed", cb.State())
	}
}

func TestApplicationStreams(t *testing.T) {
	testutil.CheckLeaks(t)
	testutil.Deadline(t, 60*time.Second)
	a, b := newEndpoint(t), newEndpoint(t)
	ca, cb := connect(t, a, b)
	ctx := ctxT(t, 30*time.Second)
	const size = 10 << 20
	data := make([]byte, size)
	for i := range data {
		data[i] = byte(i * 7)
	}
	want := sha256.Sum256(data)
	errc := make(chan error, 1)
	go func() {
		st, err := ca.OpenStream(ctx, "bulk/1")
		if err != nil {
			errc <- err
			return
		}
		if _, err := st.Write(data); err != nil {
			errc <- err
			return
		}
		errc <- st.Close()
	}()
	st, err := cb.AcceptStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Protocol() != "bulk/1" {
		t.Fatalf("protocol %q", st.Protocol())
	}
	got, err := io.ReadAll(st)
	if err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if sha256.Sum256(got) != want {
		t.Fatalf("stream carried %d bytes with the wrong checksum", len(got))
	}
	// Both directions, both openers.
	st2, err := cb.OpenStream(ctx, "echo")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st2.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	_ = st2.Close()
	in, err := ca.AcceptStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	b2, _ := io.ReadAll(in)
	if !bytes.Equal(b2, []byte("ping")) || in.Protocol() != "echo" {
		t.Fatalf("got %q on %q", b2, in.Protocol())
	}
	_ = in.Close()
	if _, err := ca.OpenStream(ctx, ""); err == nil {
		t.Fatal("empty protocol name accepted")
	}
	if _, err := ca.OpenStream(ctx, strings.Repeat("x", 257)); err == nil {
		t.Fatal("257-byte protocol name accepted")
	}
}
