package rendezvous

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	crand "crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"

	"github.com/ferrynet/ferry/internal/iplimit"
	"github.com/ferrynet/ferry/wire"
)

// Server is a rendezvous server: STUN, signaling, credentials and bootstrap.
type Server struct {
	cfg        settings
	log        *slog.Logger
	m          *metrics
	stun       *stunServer
	hub        *hub
	limits     *ipLimits
	http       *http.Server
	ln         net.Listener // the TLS listener, or the plain one without TLS
	insecureLn net.Listener
	dht        *dhtServer // nil without Config.DHTIdentity; see dht.go
	epoch      time.Time
	readBufs   sync.Pool

	ctx    context.Context // cancelled by Close
	cancel context.CancelFunc
	wg     sync.WaitGroup // sessions, flushers and background loops

	mu       sync.Mutex
	conns    map[*session]struct{} // every open signaling connection
	draining bool
	closed   bool // sessions are being killed: admit no more

	closing   atomic.Bool
	closeOnce sync.Once
	closeErr  error
}

// New starts a server on the sockets in cfg. On error, everything in cfg
// that the server would have owned is closed.
func New(cfg Config) (srv *Server, err error) {
	defer func() {
		if err != nil {
			for _, c := range cfg.STUNConns {
				if c != nil {
					c.Close()
				}
			}
			if cfg.Listener != nil {
				cfg.Listener.Close()
			}
			if cfg.STUNListener != nil {
				cfg.STUNListener.Close()
			}
			if cfg.InsecureListener != nil {
				cfg.InsecureListener.Close()
			}
		}
	}()
	if err = cfg.Validate(); err != nil {
		return nil, err
	}
	s := cfg.withDefaults()
	if s.replicaID == "" {
		var b [4]byte
		_, _ = crand.Read(b[:])
		s.replicaID = "rv-" + hex.EncodeToString(b[:])
	}
	l, _ := stunLayout(cfg.STUNConns, cfg.STUNExternalIPs) // checked by Validate
	srv = &Server{
		cfg:   s,
		log:   s.Logger.With("replica", s.replicaID),
		m:     newMetrics(),
		epoch: time.Now(),
		conns: map[*session]struct{}{},
	}
	bufSize := s.maxPayload + wire.Overhead + 1
	srv.readBufs.New = func() any { b := make([]byte, bufSize); return &b }
	if err = srv.m.register(cfg.Registerer); err != nil {
		return nil, err
	}
	srv.ctx, srv.cancel = context.WithCancel(context.Background())
	defer func() {
		if err != nil {
			srv.cancel()
			srv.m.unregister()
		}
	}()
	srv.hub = newHub(srv)
	srv.limits = newIPLimits(&s)
	if cfg.Redis != nil {
		d, derr := newRedisDirectory(srv.ctx, srv, cfg.Redis)
		if derr != nil {
			return nil, derr
		}
		srv.hub.dir = d
	}
	if len(cfg.STUNConns) > 0 {
		lim := newSTUNLimiter(s.STUNRate, s.STUNBurst, DefaultSTUNSources, srv.mono)
		srv.stun = newSTUNServer(cfg.STUNConns, l, srv.m, srv.log.With("component", "stun"), lim)
		if cfg.STUNListener != nil {
			srv.stun.tcp = newSTUNTCP(cfg.STUNListener, srv.stun, s.STUNTCPConns, s.STUNTCPConnsPerIP,
				cmp.Or(s.stunTCPIdle, STUNTCPIdleTimeout))
		}
		srv.stun.start()
		srv.log.Info("STUN listening", "addrs", l.addrs, "rfc5780", l.rfc5780, "tcp", cfg.STUNListener != nil)
	}
	// Before the listeners: sessions read srv.dht.
	if err = srv.startDHT(); err != nil {
		return nil, err
	}
	if cfg.Listener != nil || cfg.InsecureListener != nil {
		srv.startHTTP(cfg.Listener, cfg.TLSConfig, cfg.InsecureListener)
	}
	srv.wg.Add(1)
	go srv.sweep()
	return srv, nil
}

func (srv *Server) startHTTP(ln net.Listener, tlsCfg *tls.Config, insecure net.Listener) {
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+DefaultSignalPath, srv.handleSignal)
	mux.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "ferry rendezvous: the signaling WebSocket is at "+DefaultSignalPath, http.StatusNotFound)
	})
	srv.http = &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: srv.cfg.LoginTimeout,
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          slog.NewLogLogger(srv.log.Handler(), slog.LevelDebug),
		BaseContext:       func(net.Listener) context.Context { return srv.ctx },
		// WebSockets need HTTP/1.1: no HTTP/2.
		TLSNextProto: map[string]func(*http.Server, *tls.Conn, http.Handler){},
	}
	if ln != nil && tlsCfg != nil {
		c := tlsCfg.Clone()
		protos := []string{"http/1.1"}
		if slices.Contains(c.NextProtos, "acme-tls/1") {
			protos = append(protos, "acme-tls/1") // certmagic's TLS-ALPN-01
		}
		c.NextProtos = protos
		if c.MinVersion < tls.VersionTLS12 {
			c.MinVersion = tls.VersionTLS12
		}
		srv.ln = tls.NewListener(ln, c)
		srv.serve(srv.ln, "wss")
	} else if ln != nil {
		srv.ln = ln
		srv.warnPlain(ln)
		srv.serve(ln, "ws")
	}
	if insecure != nil {
		if srv.ln == nil {
			srv.ln = insecure
		}
		srv.insecureLn = insecure
		srv.warnPlain(insecure)
		srv.serve(insecure, "ws")
	}
	if len(srv.cfg.names) == 0 {
		srv.log.Warn("no server names configured: a login signed for any name is accepted, so a login made for another server can be relayed here; set ServerNames (--server-name)")
	}
}

func (srv *Server) warnPlain(ln net.Listener) {
	srv.log.Warn("signaling is served over plain HTTP without TLS: logins and messages are readable and forgeable on the path, "+
		"and a login is not bound to a TLS connection, so only the server name check keeps one from being relayed from another server; "+
		"use this only in a lab or behind a proxy that terminates TLS",
		"addr", ln.Addr().String())
}

func (srv *Server) serve(ln net.Listener, scheme string) {
	srv.wg.Add(1)
	go func() {
		defer srv.wg.Done()
		if err := srv.http.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			srv.log.Error("signaling server stopped", "err", err)
		}
	}()
	srv.log.Info("signaling listening", "addr", ln.Addr().String(), "url", scheme+"://"+ln.Addr().String()+DefaultSignalPath)
}

// mono returns monotonic nanoseconds since the server started.
func (srv *Server) mono() int64 { return int64(time.Since(srv.epoch)) }

func (srv *Server) handleSignal(w http.ResponseWriter, r *http.Request) {
	client, remote, err := clientAddr(r.RemoteAddr, r.Header.Values("X-Forwarded-For"), srv.cfg.TrustedProxies)
	if err != nil {
		http.Error(w, "bad remote address", http.StatusBadRequest)
		return
	}
	ip := iplimit.Key(client) // per-IP limits count an IPv4 address or an IPv6 /64
	srv.mu.Lock()
	draining := srv.draining
	srv.mu.Unlock()
	if draining {
		w.Header().Set("Retry-After", strconv.Itoa(int(srv.cfg.ShutdownRetry.Seconds())))
		http.Error(w, "ferry rendezvous: shutting down; retry later", http.StatusServiceUnavailable)
		return
	}
	if scope, wait := srv.limits.admit(ip, srv.mono()); scope != "" {
		srv.m.rateLimited.WithLabelValues(scope).Inc()
		secs := max(int((wait+time.Second-1)/time.Second), 1)
		w.Header().Set("Retry-After", strconv.Itoa(secs))
		msg := map[string]string{
			LimitIPConnect: "too many new connections from your address",
			LimitIPConns:   "too many open connections from your address",
			LimitMaxConns:  "the server is full",
		}[scope]
		http.Error(w, "ferry rendezvous: "+msg+"; retry in "+strconv.Itoa(secs)+"s", http.StatusTooManyRequests)
		return
	}
	var ekm []byte
	if r.TLS != nil {
		// The keying material a login on this connection signs (RFC
		// 5705, RFC 8446 section 7.5): a login relayed from another
		// connection signed another value.
		if ekm, err = r.TLS.ExportKeyingMaterial(wire.LoginExporterLabel, nil, wire.LoginExporterLen); err != nil {
			srv.limits.release(ip)
			http.Error(w, "ferry rendezvous: this TLS connection has no keying material exporter (TLS 1.2 needs extended master secret): "+err.Error(), http.StatusBadRequest)
			return
		}
	}
	conn, err := websocket.Accept(smallBuffers{w}, r, &websocket.AcceptOptions{CompressionMode: websocket.CompressionDisabled})
	if err != nil {
		srv.limits.release(ip)
		srv.log.Debug("websocket upgrade failed", "remote", remote, "err", err)
		return
	}
	conn.SetReadLimit(int64(srv.cfg.maxPayload + wire.Overhead + 1))
	s := &session{
		srv:    srv,
		conn:   conn,
		ip:     ip,
		remote: remote,
		host:   r.Host,
		secure: r.TLS != nil,
		done:   make(chan struct{}),
	}
	copy(s.ekm[:], ekm)
	srv.mu.Lock()
	defer srv.mu.Unlock()
	if srv.closed {
		// Close has killed the sessions and is waiting for their
		// goroutines: http.Server.Shutdown does not wait for a handler
		// that is still upgrading, so this one arrived too late.
		_ = conn.CloseNow()
		srv.limits.release(ip)
		return
	}
	srv.conns[s] = struct{}{}
	srv.wg.Add(1)
	// The session runs on a goroutine of its own, and this handler
	// returns: the HTTP server's goroutine for the connection ends, and
	// with it its stack and the request, which an idle peer would
	// otherwise hold for hours.
	go srv.runSession(s, srv.draining) //nolint:contextcheck // the session outlives the request; Close ends it
}

func (srv *Server) runSession(s *session, draining bool) {
	end := func() {
		srv.mu.Lock()
		delete(srv.conns, s)
		srv.mu.Unlock()
		srv.limits.release(s.ip)
		srv.wg.Done()
	}
	if draining {
		s.goAway(srv.retryHint())
		<-s.done
		end()
		return
	}
	s.run(srv.ctx, end)
}

// sweep forgets idle per-IP limit state now and then.
func (srv *Server) sweep() {
	defer srv.wg.Done()
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	for {
		select {
		case <-srv.ctx.Done():
			return
		case <-t.C:
			srv.limits.sweep(srv.mono())
			if srv.stun != nil && srv.stun.limit != nil {
				srv.stun.limit.sweep()
			}
		}
	}
}

// nameOK reports whether a login signed for name is for this server: one
// of its configured names (or those of its certificate), a "*." name
// matching one label. A server without names accepts any (it warned at
// start). The Host header plays no part: the client writes it.
func (srv *Server) nameOK(name string) bool {
	if len(srv.cfg.names) == 0 {
		return true
	}
	for _, n := range srv.cfg.names {
		if strings.EqualFold(n, name) {
			return true
		}
		if suffix, ok := strings.CutPrefix(n, "*."); ok {
			label, rest, found := strings.Cut(name, ".")
			if found && label != "" && strings.EqualFold(rest, suffix) {
				return true
			}
		}
	}
	return false
}

func (srv *Server) namesText() string {
	return "it answers to " + strings.Join(srv.cfg.names, ", ")
}

// hostname strips the port (and IPv6 brackets) from a Host header.
func hostname(host string) string {
	if h, _, err := net.SplitHostPort(host); err == nil {
		return h
	}
	return strings.Trim(host, "[]")
}

func hostOnly(rawURL string) string {
	_, rest, _ := strings.Cut(rawURL, "://")
	h, _, _ := strings.Cut(rest, "/")
	return hostname(h)
}

// publicURL is this server's signaling URL as the peer of s reached it.
func (srv *Server) publicURL(s *session) string {
	if srv.cfg.PublicURL != "" {
		return srv.cfg.PublicURL
	}
	scheme := "ws"
	if s.secure {
		scheme = "wss"
	}
	host := s.host
	if len(srv.cfg.ServerNames) > 0 {
		ln := srv.cfg.Listener
		if !s.secure && srv.cfg.InsecureListener != nil {
			ln = srv.cfg.InsecureListener
		}
		if p, err := listenerPort(ln); err == nil {
			host = hostPort(srv.cfg.ServerNames[0], p)
		}
	}
	return scheme + "://" + host + DefaultSignalPath
}

// stunURLs are the STUN servers handed to the peer of s.
func (srv *Server) stunURLs(s *session) []string {
	if len(srv.cfg.STUNURLs) > 0 {
		return srv.cfg.STUNURLs
	}
	if srv.stun == nil {
		return nil
	}
	primary := srv.stun.layout.addrs[0]
	host := primary.Addr().String()
	switch {
	case len(srv.cfg.ServerNames) > 0:
		host = srv.cfg.ServerNames[0]
	case len(srv.cfg.STUNExternalIPs) > 0:
	case primary.Addr().IsUnspecified():
		host = s.serverName // the name the peer used to reach us
	}
	return []string{"stun:" + hostPort(host, int(primary.Port()))}
}

// retryHint spreads reconnects after a shutdown over [ShutdownRetry,
// 2*ShutdownRetry).
func (srv *Server) retryHint() time.Duration {
	d := srv.cfg.ShutdownRetry
	return d + rand.N(d)
}

// Ready reports whether the server serves: nil while it is running (and,
// with Redis, Redis answers). For /readyz.
func (srv *Server) Ready() error {
	if srv.closing.Load() {
		return ErrClosed
	}
	srv.mu.Lock()
	draining := srv.draining
	srv.mu.Unlock()
	if draining {
		return errors.New("rendezvous: shutting down")
	}
	if srv.hub.dir != nil {
		ctx, cancel := context.WithTimeout(srv.ctx, time.Second)
		defer cancel()
		if err := srv.hub.dir.ready(ctx); err != nil {
			return fmt.Errorf("rendezvous: redis: %w", err)
		}
	}
	return nil
}

// Addr returns the signaling listener's address (the TLS one when there
// are two), or nil.
func (srv *Server) Addr() net.Addr {
	if srv.ln == nil {
		return nil
	}
	return srv.ln.Addr()
}

// InsecureAddr returns the address of Config.InsecureListener, or nil.
func (srv *Server) InsecureAddr() net.Addr {
	if srv.insecureLn == nil {
		return nil
	}
	return srv.insecureLn.Addr()
}

// STUNAddrs returns the STUN sockets' advertised addresses, in the order of
// Config.STUNConns.
func (srv *Server) STUNAddrs() []netip.AddrPort {
	if srv.stun == nil {
		return nil
	}
	return slices.Clone(srv.stun.layout.addrs)
}

// ReplicaID returns this replica's name.
func (srv *Server) ReplicaID() string { return srv.cfg.replicaID }

// Peers returns the number of peers logged in at this replica.
func (srv *Server) Peers() int { return srv.hub.count() }

// Shutdown is the graceful stop: it stops accepting connections (Ready
// reports it), sends every connected peer GOAWAY (code shutdown, with a
// reconnect hint), waits until they are gone or ctx ends, and then closes the
// server as Close does. It returns ctx's error when peers were still
// connected as ctx ended, joined with what closing returns. A second call
// returns at once with the first close's result.
func (srv *Server) Shutdown(ctx context.Context) error {
	late, err := srv.shutdown(ctx)
	return errors.Join(late, err)
}

// shutdown is Shutdown, with ctx's error (peers that outlived ctx) apart from
// the errors of closing.
func (srv *Server) shutdown(ctx context.Context) (late, err error) {
	srv.mu.Lock()
	first := !srv.draining
	srv.draining = true
	sessions := make([]*session, 0, len(srv.conns))
	for s := range srv.conns {
		sessions = append(sessions, s)
	}
	srv.mu.Unlock()
	if first {
		if srv.ln != nil {
			srv.log.Info("shutting down: sending GOAWAY", "connections", len(sessions))
		}
		for _, s := range sessions {
			s.goAway(srv.retryHint())
		}
		for _, s := range sessions {
			select {
			case <-s.done:
			case <-ctx.Done():
				late = ctx.Err()
			}
		}
	}
	return late, srv.close(ctx)
}

// Close shuts the server down: GOAWAY to every peer (bounded by
// ShutdownGrace), then it closes every connection and socket, waits for its
// goroutines and unregisters its metrics. Peers that outlive the grace are
// cut off, which is not an error here. It is idempotent.
//
//nolint:contextcheck // Close has no caller context: ShutdownGrace bounds it
func (srv *Server) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), srv.cfg.ShutdownGrace)
	defer cancel()
	_, err := srv.shutdown(ctx)
	return err
}

func (srv *Server) close(ctx context.Context) error {
	srv.closeOnce.Do(func() {
		srv.closing.Store(true)
		var errs []error
		if srv.http != nil {
			// The sessions are gone or about to be killed: give plain
			// HTTP requests a moment, whatever is left of ctx.
			hctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
			if err := srv.http.Shutdown(hctx); err != nil {
				errs = append(errs, err)
			}
			cancel()
		}
		srv.mu.Lock()
		srv.closed = true
		for s := range srv.conns {
			s.kill()
		}
		srv.mu.Unlock()
		srv.cancel()
		if srv.stun != nil {
			errs = append(errs, srv.stun.close())
		}
		srv.wg.Wait()
		if srv.hub.dir != nil {
			errs = append(errs, srv.hub.dir.close())
		}
		srv.m.unregister()
		srv.closeErr = errors.Join(errs...)
	})
	return srv.closeErr
}

// hijackBufferSize is the size of the read and write buffers of a hijacked
// signaling connection. Signaling messages are small; larger reads and
// writes bypass the buffers.
const hijackBufferSize = 512

// smallBuffers wraps the ResponseWriter given to websocket.Accept so that
// the hijacked connection gets small buffers: net/http's 4 KiB reader and
// writer, kept for the life of every WebSocket, would be most of what an
// idle peer costs.
type smallBuffers struct{ http.ResponseWriter }

func (w smallBuffers) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	hj, ok := w.ResponseWriter.(http.Hijacker)
	if !ok {
		return nil, nil, errors.New("rendezvous: the connection cannot be hijacked")
	}
	c, brw, err := hj.Hijack()
	if err != nil {
		return nil, nil, err
	}
	if brw.Writer.Buffered() > 0 {
		if err := brw.Flush(); err != nil {
			c.Close()
			return nil, nil, err
		}
	}
	var r io.Reader = c
	if n := brw.Reader.Buffered(); n > 0 {
		// Bytes the client sent after its request (its first frames).
		b, _ := brw.Peek(n)
		r = io.MultiReader(bytes.NewReader(bytes.Clone(b)), c)
	}
	return c, bufio.NewReadWriter(bufio.NewReaderSize(r, hijackBufferSize), bufio.NewWriterSize(c, hijackBufferSize)), nil
}
