// Command ferry-rendezvous is Ferry's rendezvous server: STUN, signaling,
// TURN credentials and DHT bootstrap. See README.md for the operator's
// guide and `ferry-rendezvous --help` for every option.
package main

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strconv"
	"syscall"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/redis/go-redis/v9"

	"github.com/ferrynet/ferry/internal/cliconf"
	"github.com/ferrynet/ferry/internal/opshttp"
	"github.com/ferrynet/ferry/internal/tlsconf"
	"github.com/ferrynet/ferry/server/rendezvous"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	code := run(ctx, os.Args[1:], os.LookupEnv, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// started, when set (by tests), is called with the running server.
var started func(*rendezvous.Server, *opshttp.Server)

// run is the whole program: it serves until ctx ends, then shuts down.
func run(ctx context.Context, args []string, env func(string) (string, bool), stdout, stderr io.Writer) int {
	o := defaultOptions()
	if code, ok := o.flags().ParseMain(args, env, stdout, stderr); !ok {
		return code
	}
	logger, err := cliconf.Logger(stderr, o.LogLevel, o.LogFormat)
	if err != nil {
		_, _ = fmt.Fprintf(stderr, "ferry-rendezvous: %v\n", err)
		return 2
	}
	if err := o.check(); err != nil {
		_, _ = fmt.Fprintf(stderr, "ferry-rendezvous: %v\n(see ferry-rendezvous --help)\n", err)
		return 2
	}
	if err := serve(ctx, o, logger); err != nil {
		logger.Error("ferry-rendezvous failed", "err", err)
		return 1
	}
	return 0
}

// check reports option combinations that cannot work.
func (o *options) check() error {
	switch {
	case o.Listen == "" && o.InsecureListen == "" && o.STUNAddr == "":
		return errors.New("nothing to serve: --listen, --insecure-listen and --stun-addr are all off")
	case o.Listen != "" && !o.tlsEnabled() && o.InsecureListen == "":
		return errors.New("--listen serves HTTPS and needs a certificate: --tls-cert/--tls-key, --acme-domain or " +
			"--tls-self-signed (or use --insecure-listen ADDR in a lab)")
	case o.STUNAltAddr != "" && o.STUNAddr == "":
		return errors.New("--stun-alt-addr needs --stun-addr")
	case len(o.Relays) > 0 && o.RelaySecret == "":
		return errors.New("--relay needs --relay-secret to issue credentials")
	case o.MaxMessageSize > 1<<20:
		return errors.New("--max-message-size is at most 1Mi")
	}
	n := 0
	for _, on := range []bool{o.TLSCert != "" || o.TLSKey != "", len(o.ACMEDomains) > 0, o.TLSSelfSigned} {
		if on {
			n++
		}
	}
	if n > 1 {
		return errors.New("choose one certificate source: --tls-cert/--tls-key, --acme-domain or --tls-self-signed")
	}
	return nil
}

func (o *options) tlsEnabled() bool {
	return o.TLSCert != "" || o.TLSKey != "" || len(o.ACMEDomains) > 0 || o.TLSSelfSigned
}

func serve(ctx context.Context, o *options, logger *slog.Logger) (err error) {
	if err = raiseFDLimit(o.FDLimit); err != nil {
		return err
	}
	cfg := rendezvous.Config{
		STUNExternalIPs: o.STUNExternalIPs,
		ServerNames:     o.ServerNames,
		PublicURL:       o.PublicURL,
		STUNURLs:        o.STUNURLs,
		RelaySecret:     o.RelaySecret,
		RelayURLs:       o.Relays,
		CredentialTTL:   o.CredentialTTL,
		BootstrapSeeds:  o.BootstrapSeeds,
		BootstrapPeers:  o.BootstrapPeers,
		MaxPayload:      int(o.MaxMessageSize),
		LoginTimeout:    o.LoginTimeout,
		IdleTimeout:     o.IdleTimeout,
		ClockSkew:       o.ClockSkew,
		QueueSize:       o.QueueSize,
		PeerRate:        o.PeerRate,
		PeerBurst:       o.PeerBurst,
		IPConnectRate:   o.IPConnectRate,
		IPConnectBurst:  o.IPConnectBurst,
		MaxConnsPerIP:   o.MaxConnsPerIP,
		MaxConns:        o.MaxConns,
		TrustedProxies:  o.TrustedProxies,
		RegistryTTL:     o.RegistryTTL,
		ReplicaID:       o.ReplicaID,
		ShutdownGrace:   o.ShutdownGrace,
		ShutdownRetry:   o.RetryAfter,
		Logger:          logger,
	}
	// Whatever is opened before New is closed here if New is not reached;
	// New closes it when it fails.
	var owned []io.Closer
	defer func() {
		for _, c := range owned {
			c.Close()
		}
	}()

	var certs *tlsconf.Source
	if o.tlsEnabled() && o.Listen != "" {
		certs, err = o.certSource(logger)
		if err != nil {
			return err
		}
		defer certs.Close()
		ln, lerr := rendezvous.Listen(ctx, o.Listen)
		if lerr != nil {
			return lerr
		}
		owned = append(owned, ln)
		cfg.Listener, cfg.TLSConfig = ln, certs.TLSConfig()
		if len(cfg.ServerNames) == 0 {
			cfg.ServerNames = o.defaultServerNames()
		}
	} else if o.Listen != "" {
		logger.Info("no certificate source: --listen is off, signaling is served by --insecure-listen only")
	}
	if o.InsecureListen != "" {
		ln, lerr := rendezvous.Listen(ctx, o.InsecureListen)
		if lerr != nil {
			return lerr
		}
		owned = append(owned, ln)
		cfg.InsecureListener = ln
	}
	if o.STUNAddr != "" {
		conns, serr := rendezvous.ListenSTUN(ctx, o.STUNAddr, o.STUNAltAddr)
		if serr != nil {
			return serr
		}
		for _, c := range conns {
			owned = append(owned, c)
		}
		cfg.STUNConns = conns
	}
	if o.Redis != "" {
		ropts, rerr := redis.ParseURL(o.Redis)
		if rerr != nil {
			return fmt.Errorf("--redis: %w", rerr)
		}
		rdb := redis.NewClient(ropts)
		defer rdb.Close()
		cfg.Redis = rdb
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	cfg.Registerer = reg

	owned = nil // New owns the sockets now, whatever happens.
	srv, err := rendezvous.New(cfg)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, srv.Close()) }()

	var ops *opshttp.Server
	if o.MetricsAddr != "" {
		ln, lerr := opshttp.Listen(ctx, o.MetricsAddr)
		if lerr != nil {
			return lerr
		}
		ops = opshttp.New(ln, opshttp.Config{Gatherer: reg, Logger: logger, ReadyCheck: srv.Ready})
		defer ops.Close() //nolint:contextcheck // bounded by opshttp's own shutdown timeout
	}
	if certs != nil && certs.Kind() == "acme" {
		// The TLS listener answers TLS-ALPN-01 challenges from now on.
		if err := certs.ManageAsync(context.WithoutCancel(ctx)); err != nil {
			return fmt.Errorf("acme: %w", err)
		}
	}
	if ops != nil {
		ops.SetReady(true)
		logger.Info("ops endpoints", "addr", ops.Addr().String())
	}
	if started != nil {
		started(srv, ops)
	}

	<-ctx.Done()
	logger.Info("signal received: shutting down", "peers", srv.Peers(), "grace", o.ShutdownGrace)
	if ops != nil {
		ops.SetReady(false)
	}
	// A second signal cuts the grace period short.
	sctx, stop := signal.NotifyContext(context.WithoutCancel(ctx), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	sctx, cancel := context.WithTimeout(sctx, o.ShutdownGrace)
	defer cancel()
	return srv.Shutdown(sctx)
}

func (o *options) certSource(logger *slog.Logger) (*tlsconf.Source, error) {
	c := tlsconf.Config{
		CertFile:        o.TLSCert,
		KeyFile:         o.TLSKey,
		ACMEDomains:     o.ACMEDomains,
		ACMEEmail:       o.ACMEEmail,
		ACMECA:          o.ACMECA,
		ACMEStorage:     o.ACMEStorage,
		ACMEDisableHTTP: true, // nothing serves port 80: TLS-ALPN-01 on --listen
		SelfSigned:      o.TLSSelfSigned,
		SelfSignedHosts: o.SelfSignedHosts,
		Logger:          logger.With("component", "tls"),
	}
	if o.TLSSelfSigned {
		c.SelfSignedCertOut = o.SelfSignedOut
	}
	if len(o.ACMEDomains) > 0 {
		// certmagic answers TLS-ALPN-01 through --listen; tell it where
		// that is when the CA's port 443 is forwarded to another one.
		host, port, err := net.SplitHostPort(o.Listen)
		if err != nil {
			return nil, fmt.Errorf("--listen: %w", err)
		}
		if p, _ := strconv.Atoi(port); p != 0 && p != 443 {
			c.ACMEAltTLSALPNPort = p
		}
		c.ACMEListenHost = host
		if o.ACMECARoot != "" {
			pem, err := os.ReadFile(o.ACMECARoot)
			if err != nil {
				return nil, fmt.Errorf("--acme-ca-root: %w", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("--acme-ca-root: %s holds no PEM certificate", o.ACMECARoot)
			}
			c.ACMECARoots = pool
		}
	}
	src, err := tlsconf.New(c)
	if err != nil {
		return nil, err
	}
	if o.TLSSelfSigned {
		logger.Warn("serving a self-signed certificate (development only); clients must trust it", "file", o.SelfSignedOut)
	}
	return src, nil
}

func (o *options) defaultServerNames() []string {
	switch {
	case len(o.ACMEDomains) > 0:
		return o.ACMEDomains
	case o.TLSSelfSigned && len(o.SelfSignedHosts) > 0:
		return o.SelfSignedHosts
	case o.TLSSelfSigned:
		return []string{"localhost", "127.0.0.1"}
	}
	return nil
}

func raiseFDLimit(n uint64) error {
	if n == 0 {
		return nil // the Go runtime has raised the soft limit to the hard one
	}
	lim := syscall.Rlimit{Cur: n, Max: n}
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return fmt.Errorf("--fd-limit %d: %w", n, err)
	}
	return nil
}
