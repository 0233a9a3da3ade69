package sdk

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/nettest"

	"github.com/ferrynet/ferry/internal/testutil"
)

// streamPair opens a stream for proto from a to b's listener ln.
func streamPair(t *testing.T, a, b *Node, ln net.Listener, proto string) (*StreamConn, *StreamConn) {
	t.Helper()
	ctx := ctxT(t, 20*time.Second)
	c1, err := a.DialStream(ctx, b.PeerID(), proto)
	if err != nil {
		t.Fatal(err)
	}
	c2, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	return c1.(*StreamConn), c2.(*StreamConn)
}

func listen(t *testing.T, n *Node, proto string) net.Listener {
	t.Helper()
	ln, err := n.Listen(proto)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	return ln
}

// TestStreamConnNettest runs golang.org/x/net/nettest's conformance suite
// for net.Conn on the streams DialStream and Listen return.
func TestStreamConnNettest(t *testing.T) {
	testutil.CheckLeaks(t)
	testutil.Deadline(t, 3*time.Minute)
	in := newInfra(t)
	a, b := in.node(t), in.node(t)
	ln := listen(t, b, "nettest")
	nettest.TestConn(t, func() (net.Conn, net.Conn, func(), error) {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		c1, err := a.DialStream(ctx, b.PeerID(), "nettest")
		if err != nil {
			return nil, nil, nil, err
		}
		c2, err := ln.Accept()
		if err != nil {
			_ = c1.Close()
			return nil, nil, nil, err
		}
		return c1, c2, func() { _ = c1.Close(); _ = c2.Close() }, nil
	})
}

func TestStreamConnContract(t *testing.T) {
	testutil.CheckLeaks(t)
	testutil.Deadline(t, time.Minute)
	in := newInfra(t)
	a, b := in.node(t), in.node(t)
	ln := listen(t, b, "contract")

	t.Run("addresses", func(t *testing.T) {
		c1, c2 := streamPair(t, a, b, ln, "contract")
		defer c1.Close()
		defer c2.Close()
		if c1.RemoteAddr().String() != b.PeerID().String() || c2.RemoteAddr().String() != a.PeerID().String() ||
			c1.LocalAddr().String() != a.PeerID().String() || c1.RemoteAddr().Network() != "ferry" {
			t.Fatalf("addresses %v %v %v", c1.LocalAddr(), c1.RemoteAddr(), c2.RemoteAddr())
		}
		if ad, ok := c2.RemoteAddr().(Addr); !ok || ad.Peer != a.PeerID() || ad.Protocol != "contract" {
			t.Fatalf("RemoteAddr %#v", c2.RemoteAddr())
		}
		if ln.Addr().String() != b.PeerID().String() {
			t.Fatalf("listener address %v", ln.Addr())
		}
	})
	t.Run("Close unblocks Read", func(t *testing.T) {
		c1, c2 := streamPair(t, a, b, ln, "contract")
		defer c2.Close()
		errc := make(chan error, 1)
		go func() {
			_, err := c1.Read(make([]byte, 1))
			errc <- err
		}()
		// The Read may or may not be blocked yet: either way it must end.
		if err := c1.Close(); err != nil {
			t.Fatal(err)
		}
		if err := <-errc; !errors.Is(err, net.ErrClosed) {
			t.Fatalf("Read after Close: %v, want net.ErrClosed", err)
		}
		if _, err := c1.Write([]byte("x")); !errors.Is(err, net.ErrClosed) {
			t.Fatalf("Write after Close: %v", err)
		}
		// The peer reads EOF, and its writes fail: the peer closed.
		if _, err := io.ReadAll(c2); err != nil {
			t.Fatalf("peer's read after Close: %v, want EOF", err)
		}
		var err error
		for err == nil {
			_, err = c2.Write([]byte("x"))
		}
		if !errors.Is(err, ErrPeerClosed) {
			t.Fatalf("peer's write after Close: %v, want ErrPeerClosed", err)
		}
	})
	t.Run("CloseWrite", func(t *testing.T) {
		c1, c2 := streamPair(t, a, b, ln, "contract")
		defer c1.Close()
		defer c2.Close()
		if _, err := c1.Write([]byte("question")); err != nil {
			t.Fatal(err)
		}
		if err := c1.CloseWrite(); err != nil {
			t.Fatal(err)
		}
		q, err := io.ReadAll(c2)
		if err != nil || string(q) != "question" {
			t.Fatalf("peer read %q, %v", q, err)
		}
		if _, err := c2.Write([]byte("answer")); err != nil {
			t.Fatal(err)
		}
		_ = c2.CloseWrite()
		if ans, err := io.ReadAll(c1); err != nil || string(ans) != "answer" {
			t.Fatalf("read after CloseWrite: %q, %v", ans, err)
		}
	})
	t.Run("Reset", func(t *testing.T) {
		c1, c2 := streamPair(t, a, b, ln, "contract")
		defer c1.Close()
		defer c2.Close()
		c2.Reset(42)
		_, err := io.ReadAll(c1)
		var re *StreamResetError
		if !errors.As(err, &re) || re.Code != 42 || !errors.Is(err, ErrStreamReset) {
			t.Fatalf("read after the peer's Reset(42): %v", err)
		}
	})
	t.Run("deadline", func(t *testing.T) {
		c1, c2 := streamPair(t, a, b, ln, "contract")
		defer c1.Close()
		defer c2.Close()
		_ = c1.SetReadDeadline(time.Now().Add(-time.Second))
		_, err := c1.Read(make([]byte, 1))
		var ne net.Error
		if !errors.As(err, &ne) || !ne.Timeout() {
			t.Fatalf("Read past its deadline: %v", err)
		}
	})
	t.Run("protocol not supported", func(t *testing.T) {
		ctx := ctxT(t, 20*time.Second)
		c, err := a.DialStream(ctx, b.PeerID(), "nobody-listens")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_, err = c.Read(make([]byte, 1))
		if !errors.Is(err, ErrProtocolNotSupported) {
			t.Fatalf("read on a stream for an unknown protocol: %v", err)
		}
	})
	t.Run("streams the acceptor opens", func(t *testing.T) {
		// b accepted a's connection; a stream b opens on it reaches a's
		// listener, and b's DialStream reuses that connection.
		lna := listen(t, a, "reverse")
		c1, c2 := streamPair(t, b, a, lna, "reverse")
		defer c1.Close()
		defer c2.Close()
		if a.connCount() != 1 || b.connCount() != 1 {
			t.Fatalf("connections %d, %d; want 1 each", a.connCount(), b.connCount())
		}
		if _, err := c1.Write([]byte("r")); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(c2, make([]byte, 1)); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("listener close", func(t *testing.T) {
		l, err := b.Listen("short-lived")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := b.Listen("short-lived"); err == nil {
			t.Fatal("two listeners on one protocol")
		}
		_ = l.Close()
		if _, err := l.Accept(); !errors.Is(err, net.ErrClosed) {
			t.Fatalf("Accept after Close: %v", err)
		}
		l2, err := b.Listen("short-lived")
		if err != nil {
			t.Fatalf("listen again after Close: %v", err)
		}
		_ = l2.Close()
	})
}

// TestHTTPOverStreams serves HTTP/1.1 on Node.Listen and reaches it
// through an http.Transport whose DialContext is Node.DialStream: no other
// glue.
func TestHTTPOverStreams(t *testing.T) {
	testutil.CheckLeaks(t)
	testutil.Deadline(t, time.Minute)
	in := newInfra(t)
	a, b := in.node(t), in.node(t)
	ln := listen(t, b, "http/1.1")
	srv := &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%s %s from %s: %s", r.Method, r.URL.Path, r.RemoteAddr, body)
	})}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	tr := &http.Transport{DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
		host, _, err := net.SplitHostPort(addr)
		if err != nil {
			return nil, err
		}
		peer, err := ParsePeerID(host)
		if err != nil {
			return nil, err
		}
		return a.DialStream(ctx, peer, "http/1.1")
	}}
	client := &http.Client{Transport: tr}
	ctx := ctxT(t, 20*time.Second)
	base := "http://" + b.PeerID().String()
	for i, method := range []string{http.MethodGet, http.MethodPost, http.MethodPost} {
		req, err := http.NewRequestWithContext(ctx, method, fmt.Sprintf("%s/item/%d", base, i), strings.NewReader("payload"))
		if err != nil {
			t.Fatal(err)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		want := fmt.Sprintf("%s /item/%d from %s: payload", method, i, a.PeerID())
		if resp.StatusCode != http.StatusOK || string(got) != want {
			t.Fatalf("got %d %q, want %q", resp.StatusCode, got, want)
		}
	}
	tr.CloseIdleConnections()
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		t.Fatal(err)
	}
	if err := <-served; !errors.Is(err, http.ErrServerClosed) {
		t.Fatal(err)
	}
}

// TestH2COverStreams runs HTTP/2 without TLS (h2c, prior knowledge) over
// the same two calls: several requests share one stream.
func TestH2COverStreams(t *testing.T) {
	testutil.CheckLeaks(t)
	testutil.Deadline(t, time.Minute)
	in := newInfra(t)
	a, b := in.node(t), in.node(t)
	ln := listen(t, b, "h2c")
	var protos http.Protocols
	protos.SetUnencryptedHTTP2(true)
	srv := &http.Server{ReadHeaderTimeout: 10 * time.Second, Protocols: &protos, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%s %s", r.Proto, r.URL.Path)
	})}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	var dials atomic.Int32
	tr := &http.Transport{Protocols: &protos, DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
		dials.Add(1)
		host, _, err := net.SplitHostPort(addr)
		if err != nil {
			return nil, err
		}
		peer, err := ParsePeerID(host)
		if err != nil {
			return nil, err
		}
		return a.DialStream(ctx, peer, "h2c")
	}}
	client := &http.Client{Transport: tr}
	ctx := ctxT(t, 20*time.Second)
	for i := range 3 {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("http://%s/h2/%d", b.PeerID(), i), nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		if want := fmt.Sprintf("HTTP/2.0 /h2/%d", i); string(got) != want {
			t.Fatalf("got %q, want %q", got, want)
		}
	}
	if n := dials.Load(); n != 1 {
		t.Errorf("%d streams dialed for three HTTP/2 requests, want 1", n)
	}
	tr.CloseIdleConnections()
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		t.Fatal(err)
	}
	if err := <-served; !errors.Is(err, http.ErrServerClosed) {
		t.Fatal(err)
	}
}
