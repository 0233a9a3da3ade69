package lighttls

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"math/big"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferrynet/ferry/internal/testutil"
)

// testPKI is a self-signed server certificate and a client pool trusting it.
func testPKI(t testing.TB) (*tls.Config, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "lighttls.test"},
		DNSNames:     []string{"lighttls.test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &tls.Config{
		Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}},
		MinVersion:   tls.VersionTLS12,
	}, pool
}

// echoServer serves an echo on a Listener until the test ends; each
// accepted Conn is sent on conns.
func echoServer(t *testing.T, l *Listener) <-chan *Conn {
	t.Helper()
	conns := make(chan *Conn, 16)
	var wg sync.WaitGroup
	t.Cleanup(func() {
		_ = l.Close()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			nc, err := l.Accept()
			if err != nil {
				return
			}
			c := nc.(*Conn)
			conns <- c
			wg.Go(func() {
				defer c.Close()
				_, _ = io.Copy(c, c)
			})
		}
	})
	return conns
}

func listen(t *testing.T, cfg *tls.Config) *Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return NewListener(ln, cfg)
}

func dialTLS(t *testing.T, addr string, pool *x509.CertPool, maxVersion uint16) *tls.Conn {
	t.Helper()
	c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: pool, ServerName: "lighttls.test", MaxVersion: maxVersion})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// echo sends each size through c and checks what comes back.
func echo(t *testing.T, c net.Conn, sizes ...int) {
	t.Helper()
	for _, n := range sizes {
		msg := make([]byte, n)
		_, _ = rand.Read(msg)
		errc := make(chan error, 1)
		go func() {
			_, err := c.Write(msg)
			errc <- err
		}()
		got := make([]byte, n)
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.ReadFull(c, got); err != nil {
			t.Fatalf("echo of %d bytes: %v", n, err)
		}
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, msg) {
			t.Fatalf("echo of %d bytes came back different", n)
		}
	}
}

// crypto/tls's client talks to the record layer: data of every size around
// the record limit, both ways.
func TestInteropTLS13(t *testing.T) {
	testutil.CheckLeaks(t)
	cfg, pool := testPKI(t)
	l := listen(t, cfg)
	conns := echoServer(t, l)
	c := dialTLS(t, l.Addr().String(), pool, 0)
	echo(t, c, 1, 100, maxPlaintext-1, maxPlaintext, maxPlaintext+1, 3*maxPlaintext+7, 200_000)
	sc := <-conns
	if st := sc.ConnectionState(); st.Version != tls.VersionTLS13 || sc.fallback != nil {
		t.Fatalf("version %#x, fallback %v: want TLS 1.3 on the light record layer", st.Version, sc.fallback != nil)
	}
	if got := c.ConnectionState().DidResume; got {
		t.Fatal("resumed")
	}
}

// Key updates both ways: the server updates its key every 3 records and
// asks the client to update too, which crypto/tls does, sending its own
// KeyUpdate that the server must follow.
func TestInteropKeyUpdate(t *testing.T) {
	testutil.CheckLeaks(t)
	cfg, pool := testPKI(t)
	l := listen(t, cfg)
	l.keyUpdateAfter = 3
	l.requestUpdates = true
	conns := echoServer(t, l)
	c := dialTLS(t, l.Addr().String(), pool, 0)
	for range 20 {
		echo(t, c, 1, 5000, 40_000)
	}
	sc := <-conns
	_ = c.Close() // the server's echo ends, and its reading with it
	sc.rmu.Lock()
	seqIn := sc.in.seq
	sc.rmu.Unlock()
	// 20 rounds of 5 records each way: without the client's KeyUpdates
	// the read sequence would be near 100.
	if seqIn > 10 {
		t.Fatalf("read sequence %d: the client's key never changed", seqIn)
	}
}

// A TLS 1.2 client gets crypto/tls's record layer.
func TestTLS12Fallback(t *testing.T) {
	testutil.CheckLeaks(t)
	cfg, pool := testPKI(t)
	l := listen(t, cfg)
	conns := echoServer(t, l)
	c := dialTLS(t, l.Addr().String(), pool, tls.VersionTLS12)
	echo(t, c, 1, 70_000)
	// ConnectionState's atomic load orders the read of fallback after the
	// handshake that set it.
	if sc := <-conns; sc.ConnectionState().Version != tls.VersionTLS12 || sc.fallback == nil {
		t.Fatal("a TLS 1.2 connection is not on crypto/tls's record layer")
	}
}

// The client's close_notify reads as io.EOF.
func TestCloseNotify(t *testing.T) {
	testutil.CheckLeaks(t)
	cfg, pool := testPKI(t)
	l := listen(t, cfg)
	got := make(chan error, 1)
	go func() {
		nc, err := l.Accept()
		if err != nil {
			got <- err
			return
		}
		defer nc.Close()
		b, err := io.ReadAll(nc)
		if err == nil && string(b) != "bye" {
			err = errors.New("read " + string(b))
		}
		got <- err
	}()
	defer l.Close()
	c := dialTLS(t, l.Addr().String(), pool, 0)
	if _, err := c.Write([]byte("bye")); err != nil {
		t.Fatal(err)
	}
	if err := c.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	if err := <-got; err != nil {
		t.Fatalf("server read: %v, want the data then io.EOF", err)
	}
}

// rawClient completes a TLS 1.3 handshake with crypto/tls over a
// connection whose bytes the test can then write directly, behind
// crypto/tls's back.
func rawClient(t *testing.T, addr string, pool *x509.CertPool) (*tls.Conn, net.Conn) {
	t.Helper()
	raw, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = raw.Close() })
	c := tls.Client(raw, &tls.Config{RootCAs: pool, ServerName: "lighttls.test"})
	if err := c.Handshake(); err != nil {
		t.Fatal(err)
	}
	return c, raw
}

// Bad records end the server's reading with a clear error, never a panic
// or a hang.
func TestBadRecords(t *testing.T) {
	testutil.CheckLeaks(t)
	cfg, pool := testPKI(t)
	cases := []struct {
		name  string
		bytes []byte
		want  error
	}{
		{"wrong record type", []byte{99, 3, 3, 0, 20}, ErrRecord},
		{"handshake record after the handshake", append([]byte{22, 3, 3, 0, 20}, make([]byte, 20)...), ErrRecord},
		{"oversized record", []byte{23, 3, 3, 0x50, 0}, ErrRecord},
		{"record shorter than a tag", append([]byte{23, 3, 3, 0, 5}, make([]byte, 5)...), ErrRecord},
		{"forged record", append([]byte{23, 3, 3, 0, 40}, make([]byte, 40)...), ErrRecord},
		{"truncated record", []byte{23, 3, 3, 1, 0, 1, 2, 3}, io.ErrUnexpectedEOF},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			l := listen(t, cfg)
			defer l.Close()
			got := make(chan error, 1)
			go func() {
				nc, err := l.Accept()
				if err != nil {
					got <- err
					return
				}
				defer nc.Close()
				_ = nc.SetReadDeadline(time.Now().Add(10 * time.Second))
				_, err = io.ReadAll(nc)
				got <- err
			}()
			c, raw := rawClient(t, l.Addr().String(), pool)
			if _, err := c.Write([]byte("fine")); err != nil { // one good record first
				t.Fatal(err)
			}
			if _, err := raw.Write(tc.bytes); err != nil {
				t.Fatal(err)
			}
			_ = raw.(*net.TCPConn).CloseWrite()
			if err := <-got; !errors.Is(err, tc.want) {
				t.Fatalf("server read: %v, want %v", err, tc.want)
			}
		})
	}
}

// Not TLS at all: the handshake fails, and Read says so.
func TestGarbageHandshake(t *testing.T) {
	testutil.CheckLeaks(t)
	cfg, _ := testPKI(t)
	l := listen(t, cfg)
	defer l.Close()
	got := make(chan error, 1)
	go func() {
		nc, err := l.Accept()
		if err != nil {
			got <- err
			return
		}
		defer nc.Close()
		_ = nc.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, err = nc.Read(make([]byte, 10))
		got <- err
	}()
	raw, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	_, _ = raw.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
	if err := <-got; err == nil {
		t.Fatal("a plain HTTP request passed as a TLS handshake")
	}
}

// A read that times out inside a record picks the record up where it
// stopped.
func TestReadTimeoutInsideRecord(t *testing.T) {
	testutil.CheckLeaks(t)
	cfg, pool := testPKI(t)
	l := listen(t, cfg)
	defer l.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		defer close(accepted)
		nc, err := l.Accept()
		if err != nil {
			return
		}
		if err := nc.(*Conn).Handshake(); err != nil {
			nc.Close()
			return
		}
		accepted <- nc
	}()
	raw, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	hc := &holdConn{Conn: raw}
	c := tls.Client(hc, &tls.Config{RootCAs: pool, ServerName: "lighttls.test"})
	if err := c.Handshake(); err != nil {
		t.Fatal(err)
	}
	sc := <-accepted
	if sc == nil {
		t.Fatal("no connection")
	}
	defer sc.Close()
	// crypto/tls seals the record into the test's hands; it goes out in
	// two parts with a read timeout in between.
	hc.hold = true
	if _, err := c.Write([]byte("in two parts")); err != nil {
		t.Fatal(err)
	}
	rec := hc.held.Bytes()
	b := make([]byte, 64)
	for _, cut := range []int{3, len(rec) - 4} { // inside the header, inside the body
		if _, err := raw.Write(rec[:cut]); err != nil {
			t.Fatal(err)
		}
		_ = sc.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		var ne net.Error
		if _, err := sc.Read(b); !errors.As(err, &ne) || !ne.Timeout() {
			t.Fatalf("read of a partial record: %v, want a timeout", err)
		}
		rec = rec[cut:]
	}
	if _, err := raw.Write(rec); err != nil {
		t.Fatal(err)
	}
	_ = sc.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, err := sc.Read(b)
	if err != nil || string(b[:n]) != "in two parts" {
		t.Fatalf("%q %v", b[:n], err)
	}
}

// holdConn keeps what is written to it once hold is set.
type holdConn struct {
	net.Conn
	hold bool
	held bytes.Buffer
}

func (h *holdConn) Write(p []byte) (int, error) {
	if h.hold {
		return h.held.Write(p)
	}
	return h.Conn.Write(p)
}

// A configuration chosen per client (GetConfigForClient) is handed over
// too.
func TestConfigForClient(t *testing.T) {
	testutil.CheckLeaks(t)
	cfg, pool := testPKI(t)
	var chosen atomic.Int32
	outer := &tls.Config{GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
		chosen.Add(1)
		return cfg, nil
	}}
	l := listen(t, outer)
	conns := echoServer(t, l)
	c := dialTLS(t, l.Addr().String(), pool, 0)
	echo(t, c, 10, 20_000)
	if sc := <-conns; sc.ConnectionState().Version != tls.VersionTLS13 || sc.fallback != nil || chosen.Load() != 1 {
		t.Fatalf("fallback %v, configurations chosen %d", sc.fallback != nil, chosen.Load())
	}
}
