package charttest

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/url"
	"strconv"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/ferrynet/ferry/internal/acmetest"
	"github.com/ferrynet/ferry/internal/natlab"
	"github.com/ferrynet/ferry/internal/testutil"
)

// acmeName is the name the ACME example values give the rendezvous.
const acmeName = "rv.example.com"

// acmeLab is an in-process Pebble for the ACME stack, and the plumbing
// between it (in the test's own network namespace, on loopback) and the
// rendezvous (in its lab namespace). Two TCP forwarders stand in for what a
// cluster's network gives: the CA's validation connects to the name's
// address (acmetest's DNS answers 127.0.0.1) on the Service's port, and a
// forwarder there leads to the pod's https port, as the LoadBalancer
// would; the rendezvous connects to the directory URL (127.0.0.1 too, as
// Pebble serves it), and a forwarder on its namespace's loopback leads to
// Pebble's. Both carry TLS end to end: the forwarders see only bytes.
type acmeLab struct {
	ca     *acmetest.Server
	va     net.Listener // where Pebble validates TLS-ALPN-01
	secret *corev1.Secret
	log    *syncBuf
	rv     *workload
	port   int32 // the rendezvous' https port
}

func newACME(t *testing.T) *acmeLab {
	t.Helper()
	var lc net.ListenConfig
	va, err := lc.Listen(context.Background(), "tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = va.Close() })
	a := &acmeLab{va: va, log: &syncBuf{done: make(chan struct{})}}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("pebble:\n%s", a.log.String())
		}
	})
	a.ca = acmetest.Start(t, acmetest.Config{
		Domains:     []string{acmeName},
		TLSALPNPort: va.Addr().(*net.TCPAddr).Port,
		Log:         a.log,
	})
	// The operator's Secret with the directory's CA bundle, which the
	// chart's tls.acme.caSecret names.
	a.secret = &corev1.Secret{Data: map[string][]byte{"ca.crt": a.ca.DirectoryRootsPEM}}
	a.secret.Name = "acme-directory-ca"
	return a
}

// setValues points the rendezvous values at Pebble: its directory URL, and
// the Secret with the CA bundle of the directory's HTTPS.
func (a *acmeLab) setValues(t *testing.T, vals map[string]any) {
	t.Helper()
	tlsVals, _ := vals["tls"].(map[string]any)
	acmeVals, _ := tlsVals["acme"].(map[string]any)
	if tlsVals["mode"] != "acme" || acmeVals == nil || vals["serverName"] != acmeName {
		t.Fatalf("the ACME stack needs values with tls.mode acme, tls.acme and serverName %s; got tls %v, serverName %v", acmeName, tlsVals, vals["serverName"])
	}
	acmeVals["directory"] = a.ca.DirectoryURL
	acmeVals["caSecret"] = a.secret.Name
}

// plumb connects the rendezvous workload w, not yet started, to Pebble.
func (a *acmeLab) plumb(ctx context.Context, t *testing.T, w *workload) {
	t.Helper()
	if !hasArg(w.pod.Spec.Containers[0].Args, "--acme-directory="+a.ca.DirectoryURL) ||
		!hasArg(w.pod.Spec.Containers[0].Args, "--acme-ca-root=/etc/ferry/acme-ca/ca.crt") {
		t.Fatalf("%s: the rendered args do not give the server the values' directory and CA bundle: %q", w.name, w.pod.Spec.Containers[0].Args)
	}
	for _, p := range w.pod.Spec.Containers[0].Ports {
		if p.Name == "https" {
			a.port = p.ContainerPort
		}
	}
	if a.port == 0 {
		t.Fatalf("%s: no https port declared", w.name)
	}
	a.rv = w
	u, err := url.Parse(a.ca.DirectoryURL)
	if err != nil {
		t.Fatal(err)
	}
	dir, err := w.host.Listen(ctx, "tcp4", u.Host)
	if err != nil {
		t.Fatalf("the directory's forwarder in %s: %v", w.name, err)
	}
	var d net.Dialer
	forward(t, dir, func(ctx context.Context) (net.Conn, error) { return d.DialContext(ctx, "tcp4", u.Host) })
	pod := net.JoinHostPort(w.host.Addr().String(), strconv.Itoa(int(a.port)))
	forward(t, a.va, func(ctx context.Context) (net.Conn, error) { return w.host.DialContext(ctx, "tcp4", pod) })
}

// waitCertificate waits until the rendezvous serves, on its https port, a
// certificate for acmeName that Pebble's roots verify (from prober's
// namespace), and returns the signalling URL the peers use.
func (a *acmeLab) waitCertificate(ctx context.Context, t *testing.T, prober *natlab.Host) string {
	t.Helper()
	if a.rv == nil {
		t.Fatal("no rendezvous workload was rendered")
	}
	addr := net.JoinHostPort(a.rv.host.Addr().String(), strconv.Itoa(int(a.port)))
	var last error
	ok := testutil.Poll(90*time.Second, func() bool {
		raw, err := prober.DialContext(ctx, "tcp", addr)
		if err != nil {
			last = err
			return false
		}
		conn := tls.Client(raw, &tls.Config{RootCAs: a.ca.Roots, ServerName: acmeName, MinVersion: tls.VersionTLS12})
		hctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		last = conn.HandshakeContext(hctx)
		cancel()
		_ = conn.Close()
		return last == nil
	})
	if !ok {
		t.Fatalf("%s never served a certificate from Pebble for %s on %s: %v\n%s", a.rv.name, acmeName, addr, last, a.rv.proc.String())
	}
	t.Logf("%s: ACME certificate from Pebble verified for %s", a.rv.name, acmeName)
	return "wss://" + net.JoinHostPort(acmeName, strconv.Itoa(int(a.port))) + "/v1/signal"
}

// forward accepts on ln until the test ends and copies each connection's
// bytes both ways to one dial gives; the cleanup closes every connection
// and waits for its goroutines.
func forward(t *testing.T, ln net.Listener, dial func(context.Context) (net.Conn, error)) {
	ctx, cancel := context.WithCancel(context.Background())
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		conns  = map[net.Conn]struct{}{}
		closed bool
	)
	track := func(c net.Conn) bool {
		mu.Lock()
		defer mu.Unlock()
		if closed {
			_ = c.Close()
			return false
		}
		conns[c] = struct{}{}
		return true
	}
	t.Cleanup(func() {
		cancel()
		_ = ln.Close()
		mu.Lock()
		closed = true
		for c := range conns {
			_ = c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			in, err := ln.Accept()
			if err != nil {
				if !errors.Is(err, net.ErrClosed) {
					t.Logf("forwarder on %s: %v", ln.Addr(), err)
				}
				return
			}
			if !track(in) {
				return
			}
			wg.Go(func() {
				dctx, dcancel := context.WithTimeout(ctx, 10*time.Second)
				out, err := dial(dctx)
				dcancel()
				if err != nil {
					_ = in.Close()
					return
				}
				if !track(out) {
					_ = in.Close()
					return
				}
				var once sync.Once
				done := func() { once.Do(func() { _ = in.Close(); _ = out.Close() }) }
				wg.Go(func() { _, _ = io.Copy(out, in); done() })
				_, _ = io.Copy(in, out)
				done()
			})
		}
	})
}
