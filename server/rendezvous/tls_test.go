package rendezvous

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/ferrynet/ferry/internal/testutil"
	"github.com/ferrynet/ferry/internal/tlsconf"
	"github.com/ferrynet/ferry/signal"
)

// TestSignalOverTLS: two peers logged in over wss with a self-signed
// certificate that the clients trust through a CA file exchange a session;
// a client that does not trust it fails at once with a clear error; the
// plain listener beside it serves too.
func TestSignalOverTLS(t *testing.T) {
	testutil.CheckLeaks(t)
	testutil.Deadline(t, 30*time.Second)
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := tlsconf.WriteSelfSigned([]string{"localhost", "127.0.0.1"}, certFile, keyFile); err != nil {
		t.Fatal(err)
	}
	src, err := tlsconf.New(tlsconf.Config{CertFile: certFile, KeyFile: keyFile})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	plain, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := newServer(t, func(c *Config) {
		c.TLSConfig = src.TLSConfig()
		c.InsecureListener = plain
		c.ServerNames = []string{"localhost", "127.0.0.1"}
	})
	port := strconv.Itoa(s.Addr().(*net.TCPAddr).Port)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var cs []*signal.Client
	for _, url := range []string{"wss://localhost:" + port, "wss://127.0.0.1:" + port + "/v1/signal"} {
		c, err := signal.Dial(ctx, url, newIdentity(t), signal.WithCAFile(certFile))
		if err != nil {
			t.Fatalf("%s: %v", url, err)
		}
		defer c.Close()
		cs = append(cs, c)
	}
	exchange(t, cs[0], cs[1])
	bs, err := cs[0].Bootstrap(ctx)
	if err != nil || bs.Seeds[0] != "wss://localhost:"+port+"/v1/signal" {
		t.Fatalf("seeds %v (%v)", bs.Seeds, err)
	}

	// Without the CA: a certificate error at once, not a retry loop.
	start := time.Now()
	_, err = signal.Dial(ctx, "wss://localhost:"+port, newIdentity(t))
	var cv *tls.CertificateVerificationError
	if !errors.As(err, &cv) || time.Since(start) > 5*time.Second {
		t.Fatalf("untrusted server: %v after %v", err, time.Since(start))
	}
	// A CA file that is not PEM.
	bad := filepath.Join(dir, "bad.pem")
	if err := os.WriteFile(bad, []byte("nope"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := signal.Dial(ctx, "wss://localhost:"+port, newIdentity(t), signal.WithCAFile(bad)); err == nil {
		t.Fatal("a CA file without certificates was accepted")
	}
	// The plain listener.
	c3, err := signal.Dial(ctx, "ws://"+s.InsecureAddr().String(), newIdentity(t))
	if err != nil {
		t.Fatal(err)
	}
	defer c3.Close()
	exchange(t, c3, cs[1])
}
