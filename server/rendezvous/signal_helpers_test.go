package rendezvous

import (
	"context"
	"errors"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/ferrynet/ferry/identity"
	"github.com/ferrynet/ferry/signal"
	"github.com/ferrynet/ferry/wire"
)

// newServer starts a signaling server on 127.0.0.1 (plain WebSocket) with
// the test's changes to the config, closed at cleanup.
func newServer(t testing.TB, mutate func(*Config)) *Server {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{
		Listener:    ln,
		ServerNames: []string{"127.0.0.1"},
		Logger:      testLogger(t),
	}
	if mutate != nil {
		mutate(&cfg)
	}
	return startServer(t, cfg)
}

// startServer starts a server with cfg, closed (and checked to close
// cleanly) at cleanup.
func startServer(t testing.TB, cfg Config) *Server {
	t.Helper()
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

func wsURL(s *Server) string { return "ws://" + s.Addr().String() + "/v1/signal" }

func newIdentity(t testing.TB) *identity.Identity {
	t.Helper()
	id, err := identity.Generate()
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// dial logs a new identity in with the Go client, closed at cleanup.
func dial(t testing.TB, s *Server, opts ...signal.Option) *signal.Client {
	t.Helper()
	return dialAs(t, s, newIdentity(t), opts...)
}

func dialAs(t testing.TB, s *Server, id *identity.Identity, opts ...signal.Option) *signal.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := signal.Dial(ctx, wsURL(s), id, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// recv returns the next message of c, failing the test after a while.
func recv(t testing.TB, c *signal.Client) signal.Message {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	m, err := c.Recv(ctx)
	if err != nil {
		t.Fatalf("receive: %v", err)
	}
	return m
}

// rawPeer is a hand-driven signaling connection, for tests of what the Go
// client never sends.
type rawPeer struct {
	t       testing.TB
	conn    *websocket.Conn
	id      *identity.Identity
	ch      wire.Challenge
	ekm     []byte // the TLS exporter a login signs (over TLS)
	pending []byte // frames left over from the last message read
}

// rawDial opens a WebSocket to s and reads the CHALLENGE.
func rawDial(t testing.TB, s *Server) *rawPeer {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, resp, err := websocket.Dial(ctx, wsURL(s), nil)
	if resp != nil && resp.Body != nil {
		resp.Body.Close()
	}
	if err != nil {
		t.Fatal(err)
	}
	conn.SetReadLimit(2 << 20)
	t.Cleanup(func() { conn.CloseNow() })
	p := &rawPeer{t: t, conn: conn, id: newIdentity(t)}
	f := p.read()
	if f.Type != wire.TypeChallenge {
		t.Fatalf("first frame %v", f.Type)
	}
	if err := p.ch.Unmarshal(f.Payload); err != nil {
		t.Fatal(err)
	}
	return p
}

// loginMessage builds a valid LOGIN for the connection's challenge.
func (p *rawPeer) loginMessage() *wire.Login {
	m := &wire.Login{
		Version:        wire.SignalVersion,
		PeerID:         p.id.PeerID(),
		PublicKey:      [wire.PublicKeyLen]byte(p.id.PublicKey()),
		Nonce:          p.ch.Nonce,
		ServerName:     "127.0.0.1",
		TimeUnixMillis: time.Now().UnixMilli(),
	}
	p.sign(m)
	return m
}

func (p *rawPeer) sign(m *wire.Login) {
	m.Signature = [wire.SignatureLen]byte(p.id.Sign(m.SignedData(p.ekm)))
}

// login logs in and checks LOGGED_IN.
func (p *rawPeer) login() {
	p.t.Helper()
	p.send(p.loginMessage())
	if f := p.read(); f.Type != wire.TypeLoggedIn {
		p.t.Fatalf("answer to LOGIN: %v %s", f.Type, errText(f))
	}
}

func (p *rawPeer) send(m wire.Message) {
	p.t.Helper()
	b, err := wire.AppendMessage(nil, m)
	if err != nil {
		p.t.Fatal(err)
	}
	p.write(b)
}

func (p *rawPeer) write(b []byte) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := p.conn.Write(ctx, websocket.MessageBinary, b); err != nil {
		p.t.Fatal(err)
	}
}

// read returns the next frame.
func (p *rawPeer) read() wire.Frame {
	p.t.Helper()
	f, err := p.tryRead(10 * time.Second)
	if err != nil {
		p.t.Fatal(err)
	}
	return f
}

// tryRead returns the next frame: the next of the last WebSocket message
// read, or the first of a new one.
func (p *rawPeer) tryRead(d time.Duration) (wire.Frame, error) {
	if len(p.pending) == 0 {
		ctx, cancel := context.WithTimeout(context.Background(), d)
		defer cancel()
		typ, data, err := p.conn.Read(ctx)
		if err != nil {
			return wire.Frame{}, err
		}
		if typ != websocket.MessageBinary {
			return wire.Frame{}, errors.New("text message")
		}
		p.pending = data
	}
	f, n, err := wire.ParseFrame(p.pending, 0)
	if err != nil {
		return wire.Frame{}, err
	}
	p.pending = p.pending[n:]
	return f, nil
}

// expectFatal reads a fatal SIGNAL_ERROR with the given code, then the
// close of the connection.
func (p *rawPeer) expectFatal(code wire.SignalErrorCode) *wire.SignalError {
	p.t.Helper()
	var e wire.SignalError
	for {
		f := p.read()
		if f.Type != wire.TypeSignalError {
			p.t.Fatalf("got %v, want SIGNAL_ERROR %v", f.Type, code)
		}
		if err := e.Unmarshal(f.Payload); err != nil {
			p.t.Fatal(err)
		}
		if e.Fatal {
			break
		}
		p.t.Logf("non-fatal error before the fatal one: %v", &e)
	}
	if e.Code != code || e.Reason == "" {
		p.t.Fatalf("got %+v, want fatal %v with a reason", e, code)
	}
	if _, err := p.tryRead(10 * time.Second); websocket.CloseStatus(err) == -1 {
		p.t.Fatalf("after the fatal error: %v, want a close", err)
	}
	return &e
}

func errText(f wire.Frame) string {
	if f.Type != wire.TypeSignalError {
		return ""
	}
	var e wire.SignalError
	_ = e.Unmarshal(f.Payload)
	return e.Error()
}

// httpStatus makes a WebSocket upgrade request to s and returns the HTTP
// status and Retry-After.
func httpStatus(t testing.TB, s *Server) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, resp, err := websocket.Dial(ctx, wsURL(s), nil)
	if err == nil {
		conn.CloseNow()
		return http.StatusSwitchingProtocols, ""
	}
	if resp == nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode, resp.Header.Get("Retry-After")
}
