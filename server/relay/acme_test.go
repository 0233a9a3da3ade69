package relay

import (
	"context"
	"crypto/tls"
	"net"
	"testing"
	"time"

	"github.com/pion/turn/v5"
	"go.uber.org/goleak"

	"github.com/ferrynet/ferry/internal/acmetest"
	"github.com/ferrynet/ferry/internal/testutil"
	"github.com/ferrynet/ferry/internal/tlsconf"
)

// TestTURNSWithACME: the relay's TLS listener gets its certificate from an
// in-process Pebble through certmagic (TLS-ALPN-01 answered on the TURNS port
// itself), and a TURN client that trusts Pebble's root allocates and relays
// over TLS.
func TestTURNSWithACME(t *testing.T) {
	opts := append([]goleak.Option{goleak.IgnoreCurrent()}, acmetest.IgnoreLeaks()...)
	t.Cleanup(func() {
		if err := goleak.Find(opts...); err != nil {
			t.Errorf("leaked goroutines: %v", err)
		}
	})
	testutil.Deadline(t, 120*time.Second)
	const domain = "turn.ferry.test"

	ln, err := ListenTCP(t.Context(), "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ca := acmetest.Start(t, acmetest.Config{Domains: []string{domain}, TLSALPNPort: port})
	certs, err := tlsconf.New(tlsconf.Config{
		ACMEDomains:        []string{domain},
		ACMEEmail:          "ops@ferry.test",
		ACMEDirectory:      ca.DirectoryURL,
		ACMECARoots:        ca.DirectoryRoots,
		ACMEStorage:        t.TempDir(),
		ACMEAltTLSALPNPort: port,
		ACMEListenHost:     "127.0.0.1",
		ACMEDisableHTTP:    true,
	})
	if err != nil {
		_ = ln.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = certs.Close() })
	s := startServer(t, func(c *Config) {
		c.ListenUDP = nil
		c.TLSListeners = []net.Listener{ln}
		c.TLSConfig = certs.TLSConfig()
		c.RelayIPs = nil
		c.AllowPeers = loopback
	})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err = certs.Manage(ctx); err != nil {
		t.Fatalf("obtaining the certificate from Pebble: %v", err)
	}

	conn, err := tls.Dial("tcp4", ln.Addr().String(), &tls.Config{RootCAs: ca.Roots, ServerName: domain, MinVersion: tls.VersionTLS12})
	if err != nil {
		t.Fatalf("TLS to the relay with Pebble's roots: %v", err)
	}
	defer conn.Close()
	u, p := RESTCredentials(testSecret, "tls", ":", time.Now().Add(time.Hour))
	client, err := turn.NewClient(&turn.ClientConfig{
		TURNServerAddr: ln.Addr().String(), Username: u, Password: p, Realm: testRealm,
		Conn: turn.NewSTUNConn(conn), LoggerFactory: quietPion{},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	if err = client.Listen(); err != nil {
		t.Fatal(err)
	}
	relayConn, err := client.Allocate()
	if err != nil {
		t.Fatalf("Allocate over TLS: %v", err)
	}
	defer relayConn.Close()
	peer := startEcho(t, "udp4", "127.0.0.1:0")
	if err := roundTrip(relayConn, peer.pc.LocalAddr(), []byte("over turns"), 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if s.Allocations() != 1 {
		t.Errorf("Allocations() = %d", s.Allocations())
	}
}
