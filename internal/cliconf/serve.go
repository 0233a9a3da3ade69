package cliconf

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os/signal"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/ferrynet/ferry/internal/opshttp"
	"github.com/ferrynet/ferry/internal/tlsconf"
)

// Ops are the operational flags both servers share: the ops endpoint, the
// shutdown grace and the log. Set the fields to their defaults before
// Register.
type Ops struct {
	MetricsAddr   string
	ShutdownGrace time.Duration
	LogLevel      string
	LogFormat     string
}

// Register adds the operational flags to s. grace says what the server does
// during the shutdown grace, for its help.
func (o *Ops) Register(s *Set, grace string) {
	s.String(&o.MetricsAddr, "metrics-addr", "ADDR",
		"Address for /healthz, /readyz and /metrics (Prometheus). Empty turns them off. Do not expose it publicly.")
	s.Duration(&o.ShutdownGrace, "shutdown-grace", "D",
		"On SIGTERM or SIGINT, /readyz turns false and new clients are refused; "+grace+" A second signal "+
			"cuts it short. Keep it below Kubernetes' terminationGracePeriodSeconds.")
	s.String(&o.LogLevel, "log-level", "LEVEL", "debug, info, warn or error.")
	s.String(&o.LogFormat, "log-format", "FORMAT", "text or json.")
}

// Main is the whole of a server's run function around what is particular to
// it: it parses args and env into s (printing --help or a usage error), builds
// the logger ops asks for, logs the deprecated names used, calls check (a
// usage error: exit 2) and then serve (a failure: exit 1). It returns the
// exit code.
func (s *Set) Main(args []string, env func(string) (string, bool), stdout, stderr io.Writer,
	ops *Ops, check func() error, serve func(*slog.Logger) error,
) int {
	if code, ok := s.ParseMain(args, env, stdout, stderr); !ok {
		return code
	}
	logger, err := Logger(stderr, ops.LogLevel, ops.LogFormat)
	if err != nil {
		_, _ = fmt.Fprintf(stderr, "%s: %v\n", s.program, err)
		return 2
	}
	for _, d := range s.Deprecations() {
		logger.Warn(d)
	}
	if check != nil {
		if err := check(); err != nil {
			_, _ = fmt.Fprintf(stderr, "%s: %v\n(see %s --help)\n", s.program, err, s.program)
			return 2
		}
	}
	if err := serve(logger); err != nil {
		logger.Error(s.program+" failed", "err", err)
		return 1
	}
	return 0
}

// Server is a Ferry server as Serve runs it.
type Server interface {
	// Ready is nil while the server wants new clients; /readyz uses it.
	Ready() error
	// Shutdown refuses new clients, waits for the live ones until ctx
	// ends (returning ctx's error if some outlived it), and closes.
	Shutdown(ctx context.Context) error
	// Close stops the server at once.
	Close() error
}

// Deps are what Serve prepares before the server is built.
type Deps struct {
	Logger *slog.Logger
	// Registry is for the server's metrics, and holds the Go and process
	// collectors; /metrics serves it.
	Registry *prometheus.Registry
	// Certs is the certificate source, nil when Spec.TLS is.
	Certs *tlsconf.Source
}

// Spec is one server's run.
type Spec[S Server] struct {
	Ops *Ops
	// TLS, when set, configures the certificate source Serve opens before
	// Build and closes at the end. ACME starts obtaining certificates
	// once Build returns, when the TLS listener can answer its challenges.
	TLS *tlsconf.Config
	// Build makes the server, opening its sockets. It owns what it opens
	// until it returns the server; then the server does.
	Build func(ctx context.Context, d Deps) (S, error)
	// Started, when set (by tests), is called with the running server.
	Started func(S, *opshttp.Server)
}

// Serve runs a server: it makes the metrics registry and the certificate
// source, builds the server, serves /healthz, /readyz and /metrics, starts
// ACME, turns readiness on, and waits for ctx to end (the first SIGTERM or
// SIGINT). Then it shuts the server down within the grace, which a second
// signal cuts short (readiness is off from the start of the shutdown on); clients still connected at the
// end are logged, not an error.
func Serve[S Server](ctx context.Context, logger *slog.Logger, spec Spec[S]) (err error) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	d := Deps{Logger: logger, Registry: reg}
	if spec.TLS != nil {
		d.Certs, err = tlsconf.New(*spec.TLS)
		if err != nil {
			return err
		}
		defer d.Certs.Close()
		if d.Certs.Kind() == "self-signed" {
			logger.Warn("serving a self-signed certificate (development only); clients must trust it",
				"file", spec.TLS.SelfSignedCertOut)
		}
	}

	srv, err := spec.Build(ctx, d)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, srv.Close()) }()

	var ops *opshttp.Server
	if spec.Ops.MetricsAddr != "" {
		ln, lerr := opshttp.Listen(ctx, spec.Ops.MetricsAddr)
		if lerr != nil {
			return lerr
		}
		ops = opshttp.New(ln, opshttp.Config{Gatherer: reg, Logger: logger, ReadyCheck: srv.Ready})
		defer ops.Close() //nolint:contextcheck // bounded by opshttp's own shutdown timeout
	}
	if d.Certs != nil && d.Certs.Kind() == "acme" {
		// The TLS listener answers TLS-ALPN-01 challenges from now on.
		if merr := d.Certs.ManageAsync(context.WithoutCancel(ctx)); merr != nil {
			return fmt.Errorf("acme: %w", merr)
		}
	}
	if ops != nil {
		ops.SetReady(true)
		logger.Info("ops endpoints", "addr", ops.Addr().String())
	}
	if spec.Started != nil {
		spec.Started(srv, ops)
	}

	<-ctx.Done()
	grace := spec.Ops.ShutdownGrace
	logger.Info("signal received: shutting down", "grace", grace)
	// /readyz turns false through srv.Ready the moment Shutdown starts
	// refusing clients: turning it off here first would leave a moment in
	// which /readyz says no and the server still says yes.
	// ctx is done by now: the grace needs a context of its own, which a
	// second signal ends.
	sctx, stop := signal.NotifyContext(context.WithoutCancel(ctx), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	sctx, cancel := context.WithTimeout(sctx, grace)
	defer cancel()
	late, err := splitContextErr(srv.Shutdown(sctx))
	if late != nil {
		logger.Warn("the shutdown grace ended with clients still connected", "err", late)
	} else {
		logger.Info("drained: every client left within the grace")
	}
	return err
}

// splitContextErr separates a context's error from the others in err.
func splitContextErr(err error) (ctxErr, rest error) {
	if err == nil {
		return nil, nil
	}
	errs := []error{err}
	if j, ok := err.(interface{ Unwrap() []error }); ok { //nolint:errorlint // taking a Join apart
		errs = j.Unwrap()
	}
	var others []error
	for _, e := range errs {
		if errors.Is(e, context.DeadlineExceeded) || errors.Is(e, context.Canceled) {
			ctxErr = errors.Join(ctxErr, e)
		} else {
			others = append(others, e)
		}
	}
	return ctxErr, errors.Join(others...)
}
