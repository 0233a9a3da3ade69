package rendezvous

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/ferrynet/ferry/internal/testutil"
	"github.com/ferrynet/ferry/internal/tlsconf"
	"github.com/ferrynet/ferry/wire"
)

// tlsServer starts a server on 127.0.0.1 over TLS with a self-signed
// certificate for localhost and 127.0.0.1, and returns it with a client
// TLS config that trusts it.
func tlsServer(t *testing.T, mutate func(*Config)) (*Server, *tls.Config) {
	t.Helper()
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := tlsconf.WriteSelfSigned([]string{"localhost", "127.0.0.1"}, certFile, keyFile); err != nil {
		t.Fatal(err)
	}
	src, err := tlsconf.New(tlsconf.Config{CertFile: certFile, KeyFile: keyFile})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { src.Close() })
	pem, err := os.ReadFile(certFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	s := newServer(t, func(c *Config) {
		c.TLSConfig = src.TLSConfig()
		c.ServerNames = nil
		if mutate != nil {
			mutate(c)
		}
	})
	return s, &tls.Config{RootCAs: pool, ServerName: "localhost", MinVersion: tls.VersionTLS12}
}

// rawDialTLS opens a WebSocket over TLS to s with the given Host header
// and reads the CHALLENGE. It returns the peer and the connection's TLS
// state.
func rawDialTLS(t *testing.T, s *Server, cfg *tls.Config, host string) (*rawPeer, *tls.ConnectionState) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}}
	t.Cleanup(hc.CloseIdleConnections)
	conn, resp, err := websocket.Dial(ctx, "wss://"+s.Addr().String()+DefaultSignalPath, &websocket.DialOptions{HTTPClient: hc, Host: host})
	if resp != nil && resp.Body != nil {
		resp.Body.Close()
	}
	if err != nil {
		t.Fatal(err)
	}
	if resp.TLS == nil {
		t.Fatal("no TLS state in the upgrade response")
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
	return p, resp.TLS
}

// unboundLogin is a LOGIN whose signature covers no TLS exporter (what a
// client built before channel binding sends).
func (p *rawPeer) unboundLogin(name string) *wire.Login {
	m := &wire.Login{
		Version:        wire.SignalVersion,
		PeerID:         p.id.PeerID(),
		PublicKey:      [wire.PublicKeyLen]byte(p.id.PublicKey()),
		Nonce:          p.ch.Nonce,
		ServerName:     name,
		TimeUnixMillis: time.Now().UnixMilli(),
	}
	m.Signature = [wire.SignatureLen]byte(p.id.Sign(wire.AppendLoginSignedData(nil, m.Nonce, m.ServerName, m.TimeUnixMillis)))
	return m
}

// TestLoginHostHeaderNotTrusted (finding 6): a TLS server configured
// without server names takes them from its certificate, and a login
// signed for the name a client put in its Host header is refused.
func TestLoginHostHeaderNotTrusted(t *testing.T) {
	testutil.CheckLeaks(t)
	testutil.Deadline(t, 30*time.Second)
	s, cfg := tlsServer(t, nil)
	p, _ := rawDialTLS(t, s, cfg, "evil.example")
	p.send(p.unboundLogin("evil.example"))
	e := p.expectFatal(wire.SignalErrLoginFailed)
	if !strings.Contains(e.Reason, "localhost") {
		t.Fatalf("reason %q does not name the server's names", e.Reason)
	}
	if got := counter(s.m.logins.WithLabelValues(LoginWrongServer)); got != 1 {
		t.Fatalf("wrong_server logins %v, want 1", got)
	}
}

// TestLoginUnboundOverTLS (finding 6): over TLS, a login whose signature
// does not cover the connection's TLS exporter is refused with a reason
// that says so (a client built before channel binding gets a clear error,
// not a hang).
func TestLoginUnboundOverTLS(t *testing.T) {
	testutil.CheckLeaks(t)
	testutil.Deadline(t, 30*time.Second)
	s, cfg := tlsServer(t, nil)
	_, port, _ := strings.Cut(s.Addr().String(), ":")
	p, _ := rawDialTLS(t, s, cfg, "localhost:"+port)
	p.send(p.unboundLogin("localhost"))
	e := p.expectFatal(wire.SignalErrLoginFailed)
	if !strings.Contains(e.Reason, "TLS") {
		t.Fatalf("reason %q does not mention the TLS binding", e.Reason)
	}
}

// boundLogin is a LOGIN bound to a TLS connection whose exporter is ekm.
func (p *rawPeer) boundLogin(name string, ekm []byte) *wire.Login {
	m := &wire.Login{
		Version:        wire.SignalVersion,
		PeerID:         p.id.PeerID(),
		PublicKey:      [wire.PublicKeyLen]byte(p.id.PublicKey()),
		Nonce:          p.ch.Nonce,
		ServerName:     name,
		TimeUnixMillis: time.Now().UnixMilli(),
		ChannelBinding: wire.ChannelBindingTLSExporter,
	}
	m.Signature = [wire.SignatureLen]byte(p.id.Sign(m.SignedData(ekm)))
	return m
}

func exporter(t *testing.T, st *tls.ConnectionState) []byte {
	t.Helper()
	ekm, err := st.ExportKeyingMaterial(wire.LoginExporterLabel, nil, wire.LoginExporterLen)
	if err != nil {
		t.Fatal(err)
	}
	return ekm
}

// TestLoginBoundToTLSConnection: over TLS the CHALLENGE asks for channel
// binding 1; a login bound to its own connection is accepted, and one
// that a man in the middle relays (the nonce of this connection, signed
// with the exporter of the connection the victim made to the attacker)
// is refused.
func TestLoginBoundToTLSConnection(t *testing.T) {
	testutil.CheckLeaks(t)
	testutil.Deadline(t, 30*time.Second)
	s, cfg := tlsServer(t, nil)
	good, st := rawDialTLS(t, s, cfg, "")
	if good.ch.ChannelBinding != wire.ChannelBindingTLSExporter {
		t.Fatalf("CHALLENGE channel binding %d over TLS, want 1", good.ch.ChannelBinding)
	}
	good.send(good.boundLogin("localhost", exporter(t, st)))
	if f := good.read(); f.Type != wire.TypeLoggedIn {
		t.Fatalf("answer to a bound LOGIN: %v %s", f.Type, errText(f))
	}
	// The attacker's connection to the server, and the victim's to the
	// attacker (here: another connection to the server).
	relay, _ := rawDialTLS(t, s, cfg, "")
	_, victim := rawDialTLS(t, s, cfg, "")
	relay.send(relay.boundLogin("localhost", exporter(t, victim)))
	e := relay.expectFatal(wire.SignalErrLoginFailed)
	if !strings.Contains(e.Reason, "exporter") {
		t.Fatalf("reason %q", e.Reason)
	}
	if got := counter(s.m.logins.WithLabelValues(LoginBadSignature)); got != 1 {
		t.Fatalf("bad_signature logins %v, want 1", got)
	}
}

// TestLoginBindingWithoutTLS: without TLS the CHALLENGE asks for no
// binding, and a login that claims one is refused (it cannot be checked).
func TestLoginBindingWithoutTLS(t *testing.T) {
	testutil.CheckLeaks(t)
	testutil.Deadline(t, 30*time.Second)
	s := newServer(t, nil)
	p := rawDial(t, s)
	if p.ch.ChannelBinding != wire.ChannelBindingNone {
		t.Fatalf("CHALLENGE channel binding %d without TLS", p.ch.ChannelBinding)
	}
	p.send(p.boundLogin("127.0.0.1", make([]byte, wire.LoginExporterLen)))
	p.expectFatal(wire.SignalErrLoginFailed)
	if got := counter(s.m.logins.WithLabelValues(LoginUnbound)); got != 1 {
		t.Fatalf("unbound logins %v, want 1", got)
	}
}

// TestTLSNeedsServerNames: a TLS config whose certificate cannot be read
// for names (ACME's GetCertificate) needs ServerNames.
func TestTLSNeedsServerNames(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	noSNI := &tls.Config{GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
		return nil, errors.New("no certificate for a hello without SNI")
	}}
	cfg := Config{Listener: ln, TLSConfig: noSNI}
	if err := cfg.Validate(); !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), "server names") {
		t.Fatalf("Validate: %v", err)
	}
	cfg.ServerNames = []string{"rv.example"}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("with names: %v", err)
	}
	// A certificate given whole names the server by its DNS names and IPs.
	cert, _, err := tlsconf.SelfSigned([]string{"rv.example", "192.0.2.9"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	cfg = Config{Listener: ln, TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}}}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("names from the certificate: %v", err)
	}
	if got := cfg.serverNames(); !slices.Equal(got, []string{"rv.example", "192.0.2.9"}) {
		t.Fatalf("names from the certificate: %v", got)
	}
}

// TestWildcardServerName: "*.example.com" matches one label.
func TestWildcardServerName(t *testing.T) {
	s := &Server{cfg: settings{names: []string{"*.example.com", "rv.test"}}}
	for name, want := range map[string]bool{
		"a.example.com": true, "A.Example.COM": true, "example.com": false, "a.b.example.com": false,
		".example.com": false, "rv.test": true, "evil.test": false,
	} {
		if got := s.nameOK(name); got != want {
			t.Errorf("nameOK(%q) = %v, want %v", name, got, want)
		}
	}
}
