package sdk

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/ferrynet/ferry/internal/testutil"
	"github.com/ferrynet/ferry/sdk/internal/secure"
	"github.com/ferrynet/ferry/wire"
)

// rawPeer speaks to an endpoint below the SDK: an authenticated QUIC
// session whose control stream the test writes byte by byte.
type rawPeer struct {
	t    *testing.T
	qc   *quic.Conn
	ctrl *quic.Stream
	rd   *wire.Reader
}

func dialRaw(t *testing.T, e *Endpoint) *rawPeer {
	t.Helper()
	tr := &quic.Transport{Conn: listenUDP(t)}
	t.Cleanup(func() { _ = tr.Close() })
	tlsConf, _, err := secure.ClientConfig(newIdentity(t), e.PeerID())
	if err != nil {
		t.Fatal(err)
	}
	ctx := ctxT(t, 10*time.Second)
	qc, err := tr.Dial(ctx, e.LocalAddr(), tlsConf, &quic.Config{MaxIdleTimeout: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = qc.CloseWithError(0, "") })
	ctrl, err := qc.OpenStreamSync(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return &rawPeer{t: t, qc: qc, ctrl: ctrl, rd: wire.NewReader(ctrl, wire.DefaultMaxPayload)}
}

func (r *rawPeer) write(b []byte) {
	r.t.Helper()
	if _, err := r.ctrl.Write(b); err != nil {
		r.t.Fatalf("raw write: %v", err)
	}
}

func (r *rawPeer) send(m wire.Message) {
	r.t.Helper()
	b, err := wire.AppendMessage(nil, m)
	if err != nil {
		r.t.Fatal(err)
	}
	r.write(b)
}

func (r *rawPeer) hello(h *wire.Hello) {
	r.t.Helper()
	if h == nil {
		h = &wire.Hello{Versions: []uint32{protocolVersion}, MaxPayload: wire.DefaultMaxPayload, RecvWindow: DefaultRecvWindow}
	}
	if h.ConnID == nil {
		h.ConnID = make([]byte, connIDLen)
		_, _ = rand.Read(h.ConnID)
	}
	r.send(h)
}

// establish runs a correct handshake, so the endpoint accepts a conn.
func (r *rawPeer) establish(e *Endpoint) *Conn {
	r.t.Helper()
	r.hello(nil)
	r.send(&wire.Resume{})
	for _, want := range []wire.Type{wire.TypeHello, wire.TypeResume} {
		f, err := r.rd.ReadFrame()
		if err != nil || f.Type != want {
			r.t.Fatalf("handshake: got %v %v, want %v", f.Type, err, want)
		}
	}
	c, err := e.Accept(ctxT(r.t, 10*time.Second))
	if err != nil {
		r.t.Fatal(err)
	}
	r.t.Cleanup(func() { _ = c.Close() })
	return c
}

// expectGoAway reads until the session ends and returns the GOAWAY it got,
// from a GOAWAY frame or from the QUIC close that carries the same code.
func (r *rawPeer) expectGoAway(code wire.GoAwayCode, reason string) {
	r.t.Helper()
	_ = r.ctrl.SetReadDeadline(time.Now().Add(10 * time.Second))
	var got *GoAwayError
	for got == nil {
		f, err := r.rd.ReadFrame()
		if err != nil {
			var appErr *quic.ApplicationError
			if !errors.As(err, &appErr) {
				r.t.Fatalf("session ended with %v, want GOAWAY %v", err, code)
			}
			got = &GoAwayError{Code: wire.GoAwayCode(appErr.ErrorCode), Reason: appErr.ErrorMessage}
			break
		}
		if f.Type != wire.TypeGoAway {
			continue // HELLO, RESUME, PING...
		}
		var g wire.GoAway
		if err := g.Unmarshal(f.Payload); err != nil {
			r.t.Fatal(err)
		}
		got = &GoAwayError{Code: g.Code, Reason: g.Reason}
	}
	if got.Code != code || !strings.Contains(got.Reason, reason) {
		r.t.Fatalf("got GOAWAY %v %q, want %v containing %q", got.Code, got.Reason, code, reason)
	}
	r.t.Logf("GOAWAY %v: %s", got.Code, got.Reason)
	// And the session is closed.
	select {
	case <-r.qc.Context().Done():
	case <-time.After(5 * time.Second):
		r.t.Fatal("session still open after GOAWAY")
	}
}

func frame(t wire.Type, seq uint64, payload []byte) []byte {
	return wire.AppendFrame(nil, t, seq, payload)
}

func helloFrame() []byte {
	id := make([]byte, connIDLen)
	b, _ := wire.AppendMessage(nil, &wire.Hello{Versions: []uint32{1}, MaxPayload: 1 << 20, RecvWindow: 1 << 20, ConnID: id})
	return b
}

// TestBadInputBeforeHello covers what a dialer may send instead of a HELLO.
func TestBadInputBeforeHello(t *testing.T) {
	testutil.CheckLeaks(t)
	testutil.Deadline(t, 60*time.Second)
	e := newEndpoint(t, WithHandshakeTimeout(500*time.Millisecond))
	flip := func(b []byte, i int) []byte {
		b = bytes.Clone(b)
		if i < 0 {
			i += len(b)
		}
		b[i] ^= 0x40
		return b
	}
	hugeHeader := frame(wire.TypeData, 1, nil)[:wire.HeaderLen]
	hugeHeader[2], hugeHeader[3], hugeHeader[4], hugeHeader[5] = 0x7f, 0xff, 0xff, 0xff
	cases := []struct {
		name   string
		send   func(r *rawPeer)
		code   wire.GoAwayCode
		reason string
	}{
		{"garbage", func(r *rawPeer) { r.write([]byte("GET / HTTP/1.1\r\nHost: ferry\r\n\r\n")) }, wire.GoAwayProtocolError, "magic"},
		{"wrong magic", func(r *rawPeer) { r.write(flip(helloFrame(), 1)) }, wire.GoAwayProtocolError, "magic"},
		{"bad checksum in payload", func(r *rawPeer) { r.write(flip(helloFrame(), wire.HeaderLen+1)) }, wire.GoAwayProtocolError, "checksum"},
		{"bad checksum in header", func(r *rawPeer) { r.write(flip(helloFrame(), 10)) }, wire.GoAwayProtocolError, "checksum"},
		{"bad checksum trailer", func(r *rawPeer) { r.write(flip(helloFrame(), -1)) }, wire.GoAwayProtocolError, "checksum"},
		{"length over maximum", func(r *rawPeer) { r.write(hugeHeader) }, wire.GoAwayProtocolError, "too large"},
		{"unknown type", func(r *rawPeer) { r.write(frame(0x7e, 0, nil)) }, wire.GoAwayProtocolError, "expected HELLO"},
		{"data before hello", func(r *rawPeer) { r.write(frame(wire.TypeData, 1, []byte("x"))) }, wire.GoAwayProtocolError, "expected HELLO"},
		{"truncated message", func(r *rawPeer) { r.write(frame(wire.TypeHello, 0, []byte{0x0a, 0x05, 0x01})) }, wire.GoAwayProtocolError, "malformed HELLO"},
		{"truncated frame", func(r *rawPeer) {
			r.write(helloFrame()[:20])
			_ = r.ctrl.Close()
		}, wire.GoAwayProtocolError, "truncated"},
		{"no control stream", func(r *rawPeer) {}, wire.GoAwayProtocolError, "no control stream"},
		{"half a header, then silence", func(r *rawPeer) { r.write(helloFrame()[:5]) }, wire.GoAwayProtocolError, "no HELLO within 500ms"},
		{"unsupported version", func(r *rawPeer) { r.hello(&wire.Hello{Versions: []uint32{7, 9}, MaxPayload: 1 << 20, RecvWindow: 1}) }, wire.GoAwayUnsupportedVersion, "peer speaks [7 9], this node speaks [1]"},
		{"no connection ID", func(r *rawPeer) {
			r.send(&wire.Hello{Versions: []uint32{1}, MaxPayload: 1 << 20, RecvWindow: 1})
		}, wire.GoAwayProtocolError, "connection ID"},
		{"tiny max payload", func(r *rawPeer) { r.hello(&wire.Hello{Versions: []uint32{1}, MaxPayload: 10, RecvWindow: 1}) }, wire.GoAwayProtocolError, "max payload"},
		{"resume of unknown connection", func(r *rawPeer) {
			r.hello(&wire.Hello{Versions: []uint32{1}, MaxPayload: 1 << 20, RecvWindow: 1, Resume: true})
		}, wire.GoAwayPolicy, "unknown connection"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := dialRaw(t, e)
			c.send(r)
			r.expectGoAway(c.code, c.reason)
		})
	}
	// The endpoint still serves well-behaved peers.
	a := newEndpoint(t)
	ca, cb := connect(t, a, e)
	ctx := ctxT(t, 10*time.Second)
	if err := ca.Send(ctx, []byte("still here")); err != nil {
		t.Fatal(err)
	}
	if m, err := cb.Recv(ctx); err != nil || string(m) != "still here" {
		t.Fatalf("%q %v", m, err)
	}
}

// TestBadInputAfterHandshake covers a peer that breaks the protocol on an
// established connection: it gets GOAWAY, and the conn closes with
// ErrProtocol.
func TestBadInputAfterHandshake(t *testing.T) {
	testutil.CheckLeaks(t)
	testutil.Deadline(t, 60*time.Second)
	e := newEndpoint(t, WithRecvWindow(64<<10))
	cases := []struct {
		name   string
		send   func(r *rawPeer)
		code   wire.GoAwayCode
		reason string
	}{
		{"garbage", func(r *rawPeer) { r.write(bytes.Repeat([]byte{0xff}, 64)) }, wire.GoAwayProtocolError, "magic"},
		{"bad checksum", func(r *rawPeer) {
			f := frame(wire.TypeData, 1, []byte("hello"))
			f[len(f)-1] ^= 1
			r.write(f)
		}, wire.GoAwayProtocolError, "checksum"},
		{"oversized frame", func(r *rawPeer) {
			// The header alone is refused; the rest may never be written.
			_, _ = r.ctrl.Write(frame(wire.TypeData, 1, make([]byte, wire.DefaultMaxPayload+1)))
		}, wire.GoAwayProtocolError, "too large"},
		{"unknown type", func(r *rawPeer) { r.write(frame(0x21, 0, nil)) }, wire.GoAwayProtocolError, "unexpected frame type"},
		{"second hello", func(r *rawPeer) { r.write(helloFrame()) }, wire.GoAwayProtocolError, "unexpected HELLO"},
		{"stream header on control stream", func(r *rawPeer) { r.write(frame(wire.TypeStream, 0, nil)) }, wire.GoAwayProtocolError, "unexpected frame type"},
		{"data out of order", func(r *rawPeer) { r.write(frame(wire.TypeData, 5, []byte("x"))) }, wire.GoAwayProtocolError, "out of order"},
		{"ack of unsent", func(r *rawPeer) { r.send(&wire.Ack{Cumulative: 10}) }, wire.GoAwayProtocolError, "only 0 were sent"},
		{"malformed ping", func(r *rawPeer) { r.write(frame(wire.TypePing, 0, []byte{0x08})) }, wire.GoAwayProtocolError, "malformed PING"},
		{"malformed ack", func(r *rawPeer) { r.write(frame(wire.TypeAck, 0, []byte{0x0a, 0x09})) }, wire.GoAwayProtocolError, "malformed ACK"},
		{"receive window overflow", func(r *rawPeer) {
			for i := 1; i <= 8; i++ {
				if _, err := r.ctrl.Write(frame(wire.TypeData, uint64(i), make([]byte, 16<<10))); err != nil {
					return // refused midway, as it should be
				}
			}
		}, wire.GoAwayFlowControl, "receive window"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := dialRaw(t, e)
			conn := r.establish(e)
			c.send(r)
			r.expectGoAway(c.code, c.reason)
			select {
			case <-conn.Done():
			case <-time.After(5 * time.Second):
				t.Fatal("conn still open after a protocol error")
			}
			if err := conn.Err(); !errors.Is(err, ErrProtocol) {
				t.Fatalf("conn ended with %v, want ErrProtocol", err)
			}
			if _, err := conn.Recv(context.Background()); !errors.Is(err, ErrProtocol) && c.name != "receive window overflow" {
				t.Fatalf("Recv after protocol error = %v", err)
			}
		})
	}
}

// TestBadApplicationStreams: streams with a bad header are refused, and the
// connection carries on.
func TestBadApplicationStreams(t *testing.T) {
	testutil.CheckLeaks(t)
	testutil.Deadline(t, 60*time.Second)
	e := newEndpoint(t, WithHandshakeTimeout(500*time.Millisecond))
	r := dialRaw(t, e)
	conn := r.establish(e)
	ctx := ctxT(t, 10*time.Second)
	bad := [][]byte{
		[]byte("garbage garbage garbage"),
		frame(wire.TypeData, 0, []byte("not a header")),
		frame(wire.TypeStream, 0, []byte{0x0a, 0xff}),
		frame(wire.TypeStream, 0, bytes.Repeat([]byte{0x0a}, 4096)), // too long
		{0x5a}, // half a magic, then nothing: refused after the handshake timeout
	}
	for i, b := range bad {
		st, err := r.qc.OpenStreamSync(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := st.Write(b); err != nil {
			t.Fatal(err)
		}
		_ = st.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, err = st.Read(make([]byte, 1))
		var se *quic.StreamError
		if !errors.As(err, &se) || se.ErrorCode != streamErrorRefused {
			t.Fatalf("bad stream %d: read got %v, want a refusal", i, err)
		}
	}
	// A good one still works, and so do messages.
	st, err := r.qc.OpenStreamSync(ctx)
	if err != nil {
		t.Fatal(err)
	}
	hdr, _ := (&wire.StreamHeader{Protocol: "ok"}).Append(nil)
	if _, err := st.Write(frame(wire.TypeStream, 0, hdr)); err != nil {
		t.Fatal(err)
	}
	got, err := conn.AcceptStream(ctx)
	if err != nil || got.Protocol() != "ok" {
		t.Fatalf("good stream: %v %v", got, err)
	}
	if conn.State() != StateConnected {
		t.Fatalf("conn state %v after bad streams", conn.State())
	}
}
