// Package opshttp serves a server's operational HTTP endpoints:
//
//   - /healthz: 200 while the process is serving (liveness);
//   - /readyz: 200 while the server wants traffic, 503 otherwise (readiness).
//     A server turns it off when it starts draining, so a load balancer or a
//     Kubernetes Service stops sending new clients;
//   - /metrics: the Prometheus exposition of the given Gatherer.
//
// The listener is passed in (see Listen for the usual TCP one), readiness
// starts false until SetReady(true), and Close shuts the HTTP server down
// gracefully and waits for it. Both Ferry servers use it.
package opshttp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Config configures a Server. The zero value is usable.
type Config struct {
	// Gatherer provides /metrics. Nil serves an empty exposition.
	Gatherer prometheus.Gatherer

	// ReadyCheck, when set, is consulted by /readyz in addition to the
	// SetReady flag; a non-nil error makes /readyz answer 503 with it.
	ReadyCheck func() error

	// Logger receives serve errors. Nil discards them.
	Logger *slog.Logger

	// ShutdownTimeout bounds Close's graceful shutdown. Zero means 5s.
	ShutdownTimeout time.Duration
}

// Server serves the endpoints on one listener.
type Server struct {
	ln       net.Listener
	srv      *http.Server
	ready    atomic.Bool
	check    func() error
	timeout  time.Duration
	done     chan struct{}
	serveErr error

	closeOnce sync.Once
	closeErr  error
}

// Listen opens the TCP listener for addr (for example ":9090").
func Listen(ctx context.Context, addr string) (net.Listener, error) {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("opshttp: listen %s: %w", addr, err)
	}
	return ln, nil
}

// New starts serving on ln and takes ownership of it. /readyz answers 503
// until SetReady(true).
func New(ln net.Listener, cfg Config) *Server {
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	g := cfg.Gatherer
	if g == nil {
		g = prometheus.NewRegistry()
	}
	s := &Server{ln: ln, check: cfg.ReadyCheck, timeout: cfg.ShutdownTimeout, done: make(chan struct{})}
	if s.timeout <= 0 {
		s.timeout = 5 * time.Second
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if err := s.Ready(); err != nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = fmt.Fprintf(w, "not ready: %v\n", err)
			return
		}
		_, _ = w.Write([]byte("ready\n"))
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(g, promhttp.HandlerOpts{
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
		ErrorHandling:     promhttp.ContinueOnError,
		Timeout:           10 * time.Second,
		EnableOpenMetrics: false,
	}))
	s.srv = &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelDebug),
	}
	go func() {
		defer close(s.done)
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.serveErr = err
			logger.Error("ops http server stopped", "err", err)
		}
	}()
	return s
}

// ErrNotReady is what /readyz reports while readiness is off.
var ErrNotReady = errors.New("not ready")

// Ready returns nil when /readyz would answer 200.
func (s *Server) Ready() error {
	if !s.ready.Load() {
		return ErrNotReady
	}
	if s.check != nil {
		return s.check()
	}
	return nil
}

// SetReady turns readiness on or off.
func (s *Server) SetReady(ready bool) { s.ready.Store(ready) }

// Addr returns the listener's address.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Close shuts the server down gracefully (bounded by ShutdownTimeout), waits
// for the serving goroutine, and returns what failed. It is idempotent.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		s.ready.Store(false)
		ctx, cancel := context.WithTimeout(context.Background(), s.timeout)
		defer cancel()
		err := s.srv.Shutdown(ctx)
		if err != nil {
			err = errors.Join(err, s.srv.Close())
		}
		<-s.done
		s.closeErr = errors.Join(err, s.serveErr)
	})
	return s.closeErr
}
