package acmetest

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"os"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/ferrynet/ferry/internal/testutil"
	"github.com/ferrynet/ferry/internal/tlsconf"
)

// checkLeaks is testutil.CheckLeaks with Pebble's immortal goroutine ignored.
func checkLeaks(t *testing.T) {
	opts := append([]goleak.Option{goleak.IgnoreCurrent()}, IgnoreLeaks()...)
	t.Cleanup(func() {
		if err := goleak.Find(opts...); err != nil {
			t.Errorf("leaked goroutines: %v", err)
		}
	})
}

// TestCertmagicObtainsFromPebble obtains a certificate with TLS-ALPN-01
// answered by a TLS listener serving tlsconf's ACME configuration, and
// verifies a client that trusts Pebble's roots accepts it.
func TestCertmagicObtainsFromPebble(t *testing.T) {
	checkLeaks(t)
	testutil.Deadline(t, 90*time.Second)
	const domain = "acme.ferry.test"
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	var logw *os.File
	if testing.Verbose() {
		logw = os.Stderr
	}
	ca := Start(t, Config{Domains: []string{domain}, TLSALPNPort: port, Log: logw})

	src, err := tlsconf.New(tlsconf.Config{
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
		t.Fatal(err)
	}
	defer src.Close()
	tln := tls.NewListener(ln, src.TLSConfig())
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, aerr := tln.Accept()
			if aerr != nil {
				return
			}
			go func() {
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(10 * time.Second))
				_ = c.(*tls.Conn).Handshake()
				_, _ = c.Write([]byte("hello"))
			}()
		}
	}()
	defer func() { _ = ln.Close(); <-done }()

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err = src.Manage(ctx); err != nil {
		t.Fatalf("Manage: %v", err)
	}
	c, err := tls.Dial("tcp4", ln.Addr().String(), &tls.Config{RootCAs: ca.Roots, ServerName: domain, MinVersion: tls.VersionTLS12})
	if err != nil {
		t.Fatalf("a client trusting Pebble's roots: %v", err)
	}
	defer c.Close()
	// The PEM forms hold the same certificates as the pools.
	for _, p := range []struct {
		pem  []byte
		pool *x509.CertPool
	}{{ca.RootsPEM, ca.Roots}, {ca.DirectoryRootsPEM, ca.DirectoryRoots}} {
		got := x509.NewCertPool()
		if !got.AppendCertsFromPEM(p.pem) || !got.Equal(p.pool) {
			t.Errorf("PEM %q does not hold the pool's certificates", p.pem)
		}
	}
	leaf := c.ConnectionState().PeerCertificates[0]
	if leaf.Subject.CommonName != domain && (len(leaf.DNSNames) == 0 || leaf.DNSNames[0] != domain) {
		t.Fatalf("certificate for %v / %v", leaf.Subject, leaf.DNSNames)
	}
	// Without Pebble's roots the certificate is not trusted.
	_, err = tls.Dial("tcp4", ln.Addr().String(), &tls.Config{ServerName: domain, MinVersion: tls.VersionTLS12})
	var uerr x509.UnknownAuthorityError
	if err == nil || !errors.As(err, &uerr) {
		t.Fatalf("a client without Pebble's roots: %v", err)
	}
}
