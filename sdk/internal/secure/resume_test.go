package secure

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/ferrynet/ferry/identity"
	"github.com/ferrynet/ferry/internal/testutil"
)

var errRefused = errors.New("refused by the test")

// gate is an allow callback that admits until closed, and counts its calls.
type gate struct {
	refuse atomic.Bool
	calls  atomic.Int32
}

func (g *gate) allow(identity.PeerID) error {
	g.calls.Add(1)
	if g.refuse.Load() {
		return errRefused
	}
	return nil
}

// ticketCache is a client session cache, as an attacker's client would keep,
// that records whether a ticket arrived.
type ticketCache struct {
	tls.ClientSessionCache
	mu  sync.Mutex
	got bool
}

func (c *ticketCache) Put(key string, cs *tls.ClientSessionState) {
	if cs != nil {
		c.mu.Lock()
		c.got = true
		c.mu.Unlock()
	}
	c.ClientSessionCache.Put(key, cs)
}

func (c *ticketCache) hasTicket() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.got
}

func TestConfigsDisableResumption(t *testing.T) {
	a, _ := identity.Generate()
	b, _ := identity.Generate()
	cc, _, err := ClientConfig(a, b.PeerID())
	if err != nil {
		t.Fatal(err)
	}
	sc, err := ServerConfig(b, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !cc.SessionTicketsDisabled || cc.ClientSessionCache != nil {
		t.Errorf("client: tickets disabled %v, cache %v", cc.SessionTicketsDisabled, cc.ClientSessionCache)
	}
	if !sc.SessionTicketsDisabled {
		t.Error("server issues session tickets")
	}
	if cc.VerifyConnection == nil || sc.VerifyConnection == nil {
		t.Error("the identity checks must run in VerifyConnection, which resumed handshakes call too")
	}
}

// TestResumedTLSIsRefused is finding 1 of issue 11 over crypto/tls on TCP,
// where the server's ticket deterministically precedes its first byte: a
// dialer admitted once, then refused, must not get back in by resuming.
func TestResumedTLSIsRefused(t *testing.T) {
	testutil.CheckLeaks(t)
	testutil.Deadline(t, 30*time.Second)
	a, _ := identity.Generate()
	b, _ := identity.Generate()
	var g gate
	sc, err := ServerConfig(b, g.allow)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", sc)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(wg.Wait)
	t.Cleanup(func() { _ = ln.Close() })
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				if c.(*tls.Conn).Handshake() == nil {
					_, _ = c.Write([]byte{1})
					_, _ = io.Copy(io.Discard, c)
				}
			})
		}
	})
	cache := &ticketCache{ClientSessionCache: tls.NewLRUClientSessionCache(4)}
	dial := func() (*tls.Conn, error) {
		cc, _, err := ClientConfig(a, b.PeerID())
		if err != nil {
			return nil, err
		}
		// An attacker's client: resumption switched back on.
		cc.SessionTicketsDisabled = false
		cc.ClientSessionCache = cache
		c, err := tls.Dial("tcp", ln.Addr().String(), cc)
		if err != nil {
			return nil, err
		}
		// The server's first byte follows any ticket it sent.
		if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
			_ = c.Close()
			return nil, err
		}
		return c, nil
	}
	c, err := dial()
	if err != nil {
		t.Fatal(err)
	}
	_ = c.Close()
	if cache.hasTicket() {
		t.Error("the server issued a session ticket")
	}
	g.refuse.Store(true)
	before := g.calls.Load()
	c, err = dial()
	if err == nil {
		resumed := c.ConnectionState().DidResume
		_ = c.Close()
		t.Fatalf("refused peer got in (DidResume=%v)", resumed)
	}
	if g.calls.Load() == before {
		t.Error("the allow callback was not consulted on the second handshake")
	}
}

// TestResumedQUICIsRefused is the same over quic-go, the transport Ferry
// sessions use.
func TestResumedQUICIsRefused(t *testing.T) {
	testutil.CheckLeaks(t)
	testutil.Deadline(t, 30*time.Second)
	a, _ := identity.Generate()
	b, _ := identity.Generate()
	var g gate
	sc, err := ServerConfig(b, g.allow)
	if err != nil {
		t.Fatal(err)
	}
	spc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	str := &quic.Transport{Conn: spc}
	ln, err := str.Listen(sc, &quic.Config{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	t.Cleanup(wg.Wait)
	t.Cleanup(func() { _ = str.Close(); _ = spc.Close() })
	t.Cleanup(func() { _ = ln.Close() })
	wg.Go(func() {
		for {
			qc, err := ln.Accept(ctx)
			if err != nil {
				return
			}
			wg.Go(func() {
				defer qc.CloseWithError(0, "")
				s, err := qc.OpenUniStream()
				if err != nil {
					return
				}
				_, _ = s.Write([]byte{1})
				_ = s.Close()
				<-qc.Context().Done()
			})
		}
	})
	cpc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctr := &quic.Transport{Conn: cpc}
	t.Cleanup(func() { _ = ctr.Close(); _ = cpc.Close() })
	cache := &ticketCache{ClientSessionCache: tls.NewLRUClientSessionCache(4)}
	dial := func() (*quic.Conn, error) {
		cc, _, err := ClientConfig(a, b.PeerID())
		if err != nil {
			return nil, err
		}
		cc.SessionTicketsDisabled = false
		cc.ClientSessionCache = cache
		qc, err := ctr.Dial(ctx, spc.LocalAddr(), cc, &quic.Config{})
		if err != nil {
			return nil, err
		}
		s, err := qc.AcceptUniStream(ctx)
		if err == nil {
			_, err = io.ReadAll(s)
		}
		if err != nil {
			_ = qc.CloseWithError(0, "")
			return nil, err
		}
		return qc, nil
	}
	qc, err := dial()
	if err != nil {
		t.Fatal(err)
	}
	_ = qc.CloseWithError(0, "")
	if cache.hasTicket() {
		t.Error("the server issued a session ticket")
	}
	g.refuse.Store(true)
	before := g.calls.Load()
	qc, err = dial()
	if err == nil {
		resumed := qc.ConnectionState().TLS.DidResume
		_ = qc.CloseWithError(0, "")
		t.Fatalf("refused peer got in (DidResume=%v)", resumed)
	}
	if g.calls.Load() == before {
		t.Error("the allow callback was not consulted on the second handshake")
	}
}
