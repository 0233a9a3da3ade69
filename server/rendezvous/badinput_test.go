package rendezvous

import (
	"bytes"
	"context"
	"encoding/binary"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/ferrynet/ferry/internal/testutil"
	"github.com/ferrynet/ferry/signal"
	"github.com/ferrynet/ferry/wire"
)

func TestLoginRefused(t *testing.T) {
	testutil.CheckLeaks(t)
	testutil.Deadline(t, 60*time.Second)
	s := newServer(t, nil)
	tests := []struct {
		name   string
		result string
		code   wire.SignalErrorCode
		edit   func(p *rawPeer, m *wire.Login)
	}{
		{"bad signature", LoginBadSignature, wire.SignalErrLoginFailed, func(_ *rawPeer, m *wire.Login) { m.Signature[5] ^= 1 }},
		{"no signature", LoginBadSignature, wire.SignalErrLoginFailed, func(_ *rawPeer, m *wire.Login) { m.Signature = [wire.SignatureLen]byte{} }},
		{"signature over other data", LoginBadSignature, wire.SignalErrLoginFailed, func(_ *rawPeer, m *wire.Login) { m.TimeUnixMillis++ }},
		{"wrong key", LoginWrongKey, wire.SignalErrLoginFailed, func(p *rawPeer, m *wire.Login) {
			m.PeerID = newIdentity(t).PeerID() // someone else's ID, signed with p's key
			p.sign(m)
		}},
		{"key of the claimed ID, signed by another", LoginBadSignature, wire.SignalErrLoginFailed, func(p *rawPeer, m *wire.Login) {
			other := newIdentity(t)
			m.Signature = [wire.SignatureLen]byte(other.Sign(m.SignedData(p.ekm)))
		}},
		{"stale time", LoginStale, wire.SignalErrLoginFailed, func(p *rawPeer, m *wire.Login) {
			m.TimeUnixMillis = time.Now().Add(-10 * time.Minute).UnixMilli()
			p.sign(m)
		}},
		{"future time", LoginStale, wire.SignalErrLoginFailed, func(p *rawPeer, m *wire.Login) {
			m.TimeUnixMillis = time.Now().Add(time.Hour).UnixMilli()
			p.sign(m)
		}},
		{"other server name", LoginWrongServer, wire.SignalErrLoginFailed, func(p *rawPeer, m *wire.Login) {
			m.ServerName = "rendezvous.evil.example"
			p.sign(m)
		}},
		{"other nonce", LoginBadNonce, wire.SignalErrLoginFailed, func(p *rawPeer, m *wire.Login) {
			m.Nonce[0] ^= 0xff
			p.sign(m)
		}},
		{"version 2", LoginBadVersion, wire.SignalErrLoginFailed, func(p *rawPeer, m *wire.Login) {
			m.Version = 2
			p.sign(m)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := counter(s.m.logins.WithLabelValues(tt.result))
			p := rawDial(t, s)
			m := p.loginMessage()
			tt.edit(p, m)
			p.send(m)
			p.expectFatal(tt.code)
			if got := counter(s.m.logins.WithLabelValues(tt.result)); got != before+1 {
				t.Fatalf("logins{%s} = %v, want %v", tt.result, got, before+1)
			}
		})
	}
	if s.Peers() != 0 {
		t.Fatalf("%d peers logged in", s.Peers())
	}
}

// TestLoginReplay replays recorded LOGINs: one that was used, on a new
// connection, and one recorded for a connection, on another; both refer to
// a nonce that is not the new connection's, and fail.
func TestLoginReplay(t *testing.T) {
	testutil.CheckLeaks(t)
	testutil.Deadline(t, 30*time.Second)
	s := newServer(t, nil)
	p1 := rawDial(t, s)
	used := p1.loginMessage()
	p1.send(used)
	if f := p1.read(); f.Type != wire.TypeLoggedIn {
		t.Fatalf("first login: %v %s", f.Type, errText(f))
	}
	p2 := rawDial(t, s)
	p2.send(used) // a valid signature, by the right key, for the old nonce
	e := p2.expectFatal(wire.SignalErrLoginFailed)
	if !strings.Contains(e.Reason, "nonce") {
		t.Fatalf("reason %q", e.Reason)
	}
	// The same LOGIN again on the connection it was made for.
	p1.send(used)
	p1.expectFatal(wire.SignalErrMalformed)
	if got := counter(s.m.logins.WithLabelValues(LoginBadNonce)); got != 1 {
		t.Fatalf("bad_nonce = %v", got)
	}
}

func TestBeforeLogin(t *testing.T) {
	testutil.CheckLeaks(t)
	testutil.Deadline(t, 30*time.Second)
	s := newServer(t, nil)
	for _, m := range []wire.Message{
		&wire.Offer{RouteHeader: wire.RouteHeader{Peer: newIdentity(t).PeerID()}},
		&wire.Ping{ID: 1},
		&wire.CredentialsRequest{ID: 1},
	} {
		p := rawDial(t, s)
		p.send(m)
		p.expectFatal(wire.SignalErrNotLoggedIn)
	}
	p := rawDial(t, s)
	p.write([]byte("not a frame"))
	p.expectFatal(wire.SignalErrMalformed)
	p = rawDial(t, s)
	p.write(wire.AppendFrame(nil, wire.TypeLogin, 0, []byte{0xff, 0xff}))
	p.expectFatal(wire.SignalErrMalformed)
}

// TestFrameBadInput sends a logged-in server what a well-behaved peer never
// sends; each is answered by a fatal SIGNAL_ERROR and a close, and the
// server goes on serving.
func TestFrameBadInput(t *testing.T) {
	testutil.CheckLeaks(t)
	testutil.Deadline(t, 60*time.Second)
	s := newServer(t, func(c *Config) { c.MaxPayload = 8192 })
	target := newIdentity(t).PeerID()
	offer, _ := wire.AppendMessage(nil, &wire.Offer{RouteHeader: wire.RouteHeader{Peer: target}})
	badCRC := bytes.Clone(offer)
	badCRC[len(badCRC)-1] ^= 1
	badMagic := bytes.Clone(offer)
	badMagic[0] = 0x00
	hugeLen := bytes.Clone(offer[:wire.HeaderLen])
	binary.BigEndian.PutUint32(hugeLen[2:], 1<<30)
	tests := []struct {
		name string
		code wire.SignalErrorCode
		send func(p *rawPeer)
	}{
		{"bad checksum", wire.SignalErrMalformed, func(p *rawPeer) { p.write(badCRC) }},
		{"bad magic", wire.SignalErrMalformed, func(p *rawPeer) { p.write(badMagic) }},
		{"truncated frame", wire.SignalErrMalformed, func(p *rawPeer) { p.write(offer[:len(offer)-3]) }},
		{"frame then garbage", wire.SignalErrMalformed, func(p *rawPeer) { p.write(append(bytes.Clone(offer), 1, 2, 3)) }},
		{"frame length over the maximum", wire.SignalErrTooLarge, func(p *rawPeer) { p.write(hugeLen) }},
		{"message over the maximum", wire.SignalErrTooLarge, func(p *rawPeer) { p.write(make([]byte, 8192+wire.Overhead+1)) }},
		{"huge message", wire.SignalErrTooLarge, func(p *rawPeer) { p.write(make([]byte, 4<<20)) }},
		{"unknown type", wire.SignalErrUnknownType, func(p *rawPeer) { p.write(wire.AppendFrame(nil, 0x1f, 0, nil)) }},
		{"DATA", wire.SignalErrUnknownType, func(p *rawPeer) { p.write(wire.AppendFrame(nil, wire.TypeData, 1, []byte("x"))) }},
		{"server's CHALLENGE", wire.SignalErrUnknownType, func(p *rawPeer) { p.send(&wire.Challenge{}) }},
		{"server's RECEIPT", wire.SignalErrUnknownType, func(p *rawPeer) { p.send(&wire.Receipt{ID: 1}) }},
		{"text message", wire.SignalErrMalformed, func(p *rawPeer) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := p.conn.Write(ctx, websocket.MessageText, offer); err != nil {
				t.Fatal(err)
			}
		}},
		{"empty message", wire.SignalErrMalformed, func(p *rawPeer) { p.write(nil) }},
		{"offer without a target", wire.SignalErrMalformed, func(p *rawPeer) { p.send(&wire.Offer{Ufrag: "u"}) }},
		{"offer that does not decode", wire.SignalErrMalformed, func(p *rawPeer) {
			p.write(wire.AppendFrame(nil, wire.TypeOffer, 0, []byte{0x0a, 0x05, 1}))
		}},
		{"target of 3 bytes", wire.SignalErrMalformed, func(p *rawPeer) {
			p.write(wire.AppendFrame(nil, wire.TypeCandidate, 0, []byte{0x0a, 0x03, 1, 2, 3}))
		}},
		{"ping that does not decode", wire.SignalErrMalformed, func(p *rawPeer) { p.write(wire.AppendFrame(nil, wire.TypePing, 0, []byte{0x08})) }},
		{"credentials request that does not decode", wire.SignalErrMalformed, func(p *rawPeer) {
			p.write(wire.AppendFrame(nil, wire.TypeCredentialsRequest, 0, []byte{0x0f}))
		}},
		{"second login", wire.SignalErrMalformed, func(p *rawPeer) { p.send(p.loginMessage()) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := rawDial(t, s)
			p.login()
			tt.send(p)
			p.expectFatal(tt.code)
		})
	}
	// Still serving, and nothing is left behind.
	exchange(t, dial(t, s), dial(t, s))
	testutil.WaitFor(t, 10*time.Second, "the sessions ended by fatal errors to be unregistered", func() bool { return s.Peers() <= 2 })
}

func TestLoginAndIdleTimeout(t *testing.T) {
	testutil.CheckLeaks(t)
	testutil.Deadline(t, 30*time.Second)
	s := newServer(t, func(c *Config) {
		c.LoginTimeout = 300 * time.Millisecond
		c.IdleTimeout = 1500 * time.Millisecond
	})
	p := rawDial(t, s)
	if p.ch.LoginTimeoutMillis != 300 {
		t.Fatalf("challenge announces %dms", p.ch.LoginTimeoutMillis)
	}
	p.expectFatal(wire.SignalErrLoginTimeout)
	if got := counter(s.m.logins.WithLabelValues(LoginTimeout)); got != 1 {
		t.Fatalf("timeout = %v", got)
	}
	q := rawDial(t, s)
	q.login()
	q.expectFatal(wire.SignalErrIdleTimeout)
	// A client that pings stays: three silent witnesses, logged in one
	// after the other after it, are each dropped as idle, so three idle
	// timeouts have passed for it, and it never had to reconnect (it
	// would, at once, so a count of peers alone cannot tell).
	var reconnected atomic.Bool
	c := dial(t, s, signal.WithStateHook(func(st signal.State, _ error) {
		if st == signal.StateReconnecting {
			reconnected.Store(true)
		}
	}))
	for range 3 {
		w := rawDial(t, s)
		w.login()
		w.expectFatal(wire.SignalErrIdleTimeout)
	}
	if c.ServerID() == "" || reconnected.Load() {
		t.Fatal("a pinging client was dropped")
	}
	testutil.WaitFor(t, 5*time.Second, "the pinging client to be the one peer left", func() bool { return s.Peers() == 1 })
}

// TestFloodOneIP: one source IP opening connections too fast, or too many,
// is refused before the upgrade with 429 and Retry-After.
func TestFloodOneIP(t *testing.T) {
	testutil.CheckLeaks(t)
	testutil.Deadline(t, 30*time.Second)
	t.Run("connect rate", func(t *testing.T) {
		s := newServer(t, func(c *Config) { c.IPConnectRate = 0.001; c.IPConnectBurst = 3 })
		for i := range 3 {
			if code, _ := httpStatus(t, s); code != http.StatusSwitchingProtocols {
				t.Fatalf("connection %d: %d", i, code)
			}
		}
		code, retry := httpStatus(t, s)
		if code != http.StatusTooManyRequests || retry == "" || retry == "0" {
			t.Fatalf("4th connection: %d, Retry-After %q", code, retry)
		}
		if got := counter(s.m.rateLimited.WithLabelValues(LimitIPConnect)); got != 1 {
			t.Fatalf("ip_connect = %v", got)
		}
	})
	t.Run("open connections", func(t *testing.T) {
		s := newServer(t, func(c *Config) { c.IPConnectRate = -1; c.MaxConnsPerIP = 2 })
		a, b := rawDial(t, s), rawDial(t, s)
		if code, _ := httpStatus(t, s); code != http.StatusTooManyRequests {
			t.Fatalf("3rd open connection: %d", code)
		}
		a.conn.CloseNow()
		testutil.WaitFor(t, 10*time.Second, "room for a connection after one closed", func() bool {
			code, _ := httpStatus(t, s)
			return code == http.StatusSwitchingProtocols
		})
		b.conn.CloseNow()
	})
	t.Run("messages", func(t *testing.T) {
		s := newServer(t, func(c *Config) { c.PeerRate = 0.01; c.PeerBurst = 10 })
		p := rawDial(t, s)
		p.login()
		target := newIdentity(t).PeerID()
		frame, _ := wire.AppendMessage(nil, &wire.Offer{RouteHeader: wire.RouteHeader{Peer: target, ID: 7}})
		// A burst of 20 in one message: 10 pass (peer not found), then
		// the rest are refused as rate limited, without closing.
		p.write(bytes.Repeat(frame, 20))
		var notFound, limited int
		for notFound+limited < 20 {
			f := p.read()
			var e wire.SignalError
			if f.Type != wire.TypeSignalError || e.Unmarshal(f.Payload) != nil || e.Fatal {
				t.Fatalf("got %v %s", f.Type, errText(f))
			}
			switch e.Code {
			case wire.SignalErrPeerNotFound:
				notFound++
			case wire.SignalErrRateLimited:
				limited++
				if e.RetryAfterMillis == 0 || e.ID != 7 {
					t.Fatalf("rate limited error %+v", e)
				}
			default:
				t.Fatalf("code %v", e.Code)
			}
		}
		if notFound != 10 || limited != 10 {
			t.Fatalf("%d passed, %d limited", notFound, limited)
		}
		// Flooding on closes the connection.
		p.write(bytes.Repeat(frame, 50))
		for {
			f := p.read()
			var e wire.SignalError
			if err := e.Unmarshal(f.Payload); err != nil || f.Type != wire.TypeSignalError {
				t.Fatalf("got %v", f.Type)
			}
			if e.Fatal {
				if e.Code != wire.SignalErrRateLimited {
					t.Fatalf("fatal %v", e.Code)
				}
				break
			}
		}
		if got := counter(s.m.rateLimited.WithLabelValues(LimitPeer)); got != 11 { // 10, then 1 more over the burst in a row
			t.Fatalf("peer limit count %v", got)
		}
	})
}

// TestSilentConnections opens 1,000 WebSocket connections and 1,000 TCP
// connections that never speak. The login timeout closes every WebSocket
// after a fatal SIGNAL_ERROR, the header timeout closes the TCP ones, and
// afterwards the goroutines are gone and the heap is back where it was.
func TestSilentConnections(t *testing.T) {
	testutil.CheckLeaks(t)
	testutil.Deadline(t, 120*time.Second)
	const n = 1000
	s := newServer(t, func(c *Config) {
		c.LoginTimeout = 5 * time.Second
		c.IPConnectRate = -1
		c.MaxConnsPerIP = -1
	})
	heap := func() uint64 {
		// Twice: sync.Pool keeps a victim cache for one GC cycle.
		runtime.GC()
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapInuse
	}
	// Warm up the pools and the HTTP server once.
	p := rawDial(t, s)
	p.expectFatal(wire.SignalErrLoginTimeout)
	before, goroutines := heap(), runtime.NumGoroutine()

	// Two rounds: the first may grow maps and pools to their working
	// size; the second must not add to it.
	var after [2]uint64
	for round := range after {
		peak := storm(t, s, n)
		after[round] = heap()
		t.Logf("round %d: heap in use before %d KiB, peak %d KiB, after %d KiB; goroutines before %d, after %d",
			round+1, before>>10, peak>>10, after[round]>>10, goroutines, runtime.NumGoroutine())
	}
	if after[0] > before+8<<20 || after[1] > after[0]+2<<20 {
		t.Fatalf("heap in use grew: %d KiB before, %d KiB after the first %d silent connections, %d KiB after the second",
			before>>10, after[0]>>10, n, after[1]>>10)
	}
	if got := counter(s.m.logins.WithLabelValues(LoginTimeout)); got != 2*n+1 {
		t.Fatalf("login timeouts %v, want %d", got, 2*n+1)
	}
	if s.limits.size() > 0 {
		s.limits.sweep(s.mono() + int64(time.Hour))
		if s.limits.size() != 0 {
			t.Fatal("per-IP state left behind")
		}
	}
}

// storm opens n silent WebSocket and n silent TCP connections to s, waits
// until the server has closed them all, and returns the peak heap in use.
func storm(t *testing.T, s *Server, n int) uint64 {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, 2*n)
	sem := make(chan struct{}, 100)
	peak := uint64(0)
	var peakMu sync.Mutex
	for i := range n {
		wg.Add(2)
		// Spread over 127.0.0.x sources, as many clients would be.
		src := &net.TCPAddr{IP: net.IPv4(127, 0, byte(1+i/250), byte(1+i%250))}
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			d := net.Dialer{LocalAddr: src}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			hc := &http.Client{Transport: &http.Transport{DialContext: d.DialContext}}
			conn, resp, err := websocket.Dial(ctx, wsURL(s), &websocket.DialOptions{HTTPClient: hc})
			<-sem
			if resp != nil && resp.Body != nil {
				resp.Body.Close()
			}
			if err != nil {
				errs <- err
				return
			}
			defer conn.CloseNow()
			var fatal bool
			for {
				_, data, err := conn.Read(ctx)
				if err != nil {
					if !fatal || websocket.CloseStatus(err) != websocket.StatusPolicyViolation {
						errs <- err
					}
					return
				}
				for len(data) > 0 {
					f, k, err := wire.ParseFrame(data, 0)
					if err != nil {
						errs <- err
						return
					}
					data = data[k:]
					var e wire.SignalError
					if f.Type == wire.TypeSignalError && e.Unmarshal(f.Payload) == nil && e.Code == wire.SignalErrLoginTimeout && e.Fatal {
						fatal = true
					}
				}
			}
		}()
		go func() {
			defer wg.Done()
			d := net.Dialer{LocalAddr: src}
			c, err := d.Dial("tcp", s.Addr().String())
			if err != nil {
				errs <- err
				return
			}
			defer c.Close()
			_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
			if _, err := c.Read(make([]byte, 1)); err == nil {
				errs <- errTCPAnswered
			}
		}()
	}
	stop, sampled := make(chan struct{}), make(chan struct{})
	go func() {
		// Sample the heap while the connections are open.
		defer close(sampled)
		t := time.NewTicker(200 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
			}
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			peakMu.Lock()
			peak = max(peak, ms.HeapInuse)
			peakMu.Unlock()
		}
	}()
	wg.Wait()
	close(stop)
	<-sampled
	close(errs)
	for err := range errs {
		t.Fatalf("a silent connection: %v", err)
	}
	testutil.WaitFor(t, 20*time.Second, "every connection to be closed", func() bool { return counter(s.m.connections) == 0 })
	peakMu.Lock()
	defer peakMu.Unlock()
	return peak
}

var errTCPAnswered = &net.OpError{Op: "read", Err: net.UnknownNetworkError("the server answered a silent TCP connection")}

func TestShutdownGoAway(t *testing.T) {
	testutil.CheckLeaks(t)
	testutil.Deadline(t, 30*time.Second)
	s := newServer(t, func(c *Config) { c.ShutdownRetry = 2 * time.Second })
	ps := []*rawPeer{rawDial(t, s), rawDial(t, s)}
	ps[0].login()
	done := make(chan error, 1)
	go func() { done <- s.Close() }()
	for i, p := range ps {
		f := p.read()
		var g wire.GoAway
		if f.Type != wire.TypeGoAway || g.Unmarshal(f.Payload) != nil || g.Code != wire.GoAwayShutdown {
			t.Fatalf("peer %d got %v", i, f.Type)
		}
		if g.RetryAfterMillis < 2000 || g.RetryAfterMillis >= 4000 {
			t.Fatalf("retry hint %dms, want within [2s, 4s)", g.RetryAfterMillis)
		}
		if _, err := p.tryRead(5 * time.Second); websocket.CloseStatus(err) != websocket.StatusGoingAway {
			t.Fatalf("peer %d: close %v", i, err)
		}
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if code, _ := httpStatusAddr(t, s.Addr().String()); code != 0 {
		t.Fatalf("still accepting after Close: %d", code)
	}
}

// httpStatusAddr tries an upgrade at addr; 0 when nothing listens.
func httpStatusAddr(t *testing.T, addr string) (int, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_, resp, err := websocket.Dial(ctx, "ws://"+addr+"/v1/signal", nil)
	if resp == nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, err
}

// FuzzSessionInput feeds arbitrary WebSocket messages to a session, before
// and after login: it never panics, and everything it queues for the peer
// is a well-formed frame.
func FuzzSessionInput(f *testing.F) {
	id := newIdentity(f)
	offer, _ := wire.AppendMessage(nil, &wire.Offer{RouteHeader: wire.RouteHeader{Peer: id.PeerID(), ID: 3}, Ufrag: "u"})
	ping, _ := wire.AppendMessage(nil, &wire.Ping{ID: 1})
	creds, _ := wire.AppendMessage(nil, &wire.CredentialsRequest{ID: 2})
	boot, _ := wire.AppendMessage(nil, &wire.BootstrapRequest{ID: 4})
	login, _ := wire.AppendMessage(nil, &wire.Login{Version: 1, PeerID: id.PeerID()})
	for _, seed := range [][]byte{offer, ping, creds, boot, login, append(bytes.Clone(offer), ping...), []byte("garbage"), nil} {
		f.Add(seed, false)
		f.Add(seed, true)
	}
	f.Fuzz(func(t *testing.T, msg []byte, loggedIn bool) {
		srv := &Server{
			cfg:   (&Config{RelaySecret: "x", MaxPayload: 4096}).withDefaults(),
			log:   discardLogger(),
			m:     newMetrics(),
			epoch: time.Now(),
			ctx:   context.Background(),
		}
		srv.cfg.replicaID = "fuzz"
		srv.hub = newHub(srv)
		srv.limits = newIPLimits(&srv.cfg)
		srv.readBufs.New = func() any { b := make([]byte, 4096+wire.Overhead+1); return &b }
		s := &session{srv: srv, hold: true, done: make(chan struct{}), host: "127.0.0.1:1"}
		s.timer = time.NewTimer(time.Hour)
		defer s.timer.Stop()
		if loggedIn {
			s.peer, s.token = id.PeerID(), "t"
			s.loggedIn.Store(true)
			srv.hub.register(context.Background(), s)
		}
		s.readMessage(context.Background(), websocket.MessageBinary, bytes.NewReader(msg))
		s.mu.Lock()
		defer s.mu.Unlock()
		if len(s.queue) > s.srv.cfg.QueueSize+controlReserve {
			t.Fatalf("%d frames queued", len(s.queue))
		}
		for _, fr := range s.queue {
			got, n, err := wire.ParseFrame(fr, 0)
			if err != nil || n != len(fr) || !got.Type.Signaling() && got.Type != wire.TypePong {
				t.Fatalf("queued a bad frame %x: %v", fr, err)
			}
		}
	})
}
