// Command ferry-relay is Ferry's TURN relay server. See README.md for the
// operator's guide and `ferry-relay --help` for every option.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/ferrynet/ferry/internal/cliconf"
	"github.com/ferrynet/ferry/internal/opshttp"
	"github.com/ferrynet/ferry/internal/tlsconf"
	"github.com/ferrynet/ferry/server/relay"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	code := run(ctx, os.Args[1:], os.LookupEnv, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// started, when set (by tests), is called with the running server.
var started func(*relay.Server, *opshttp.Server)

// run is the whole program: it serves until ctx ends, then drains.
func run(ctx context.Context, args []string, env func(string) (string, bool), stdout, stderr io.Writer) int {
	o := defaultOptions()
	if code, ok := o.flags().ParseMain(args, env, stdout, stderr); !ok {
		return code
	}
	logger, err := cliconf.Logger(stderr, o.LogLevel, o.LogFormat)
	if err != nil {
		_, _ = fmt.Fprintf(stderr, "ferry-relay: %v\n", err)
		return 2
	}
	if err := serve(ctx, o, logger); err != nil {
		logger.Error("ferry-relay failed", "err", err)
		return 1
	}
	return 0
}

func serve(ctx context.Context, o *options, logger *slog.Logger) (err error) {
	cfg, err := o.relayConfig()
	if err != nil {
		return err
	}
	cfg.Logger = logger

	var certs *tlsconf.Source
	if o.tlsEnabled() {
		certs, err = tlsconf.New(tlsconf.Config{
			CertFile:          o.TLSCert,
			KeyFile:           o.TLSKey,
			ACMEDomains:       o.ACMEDomains,
			ACMEEmail:         o.ACMEEmail,
			ACMECA:            o.ACMECA,
			ACMEStorage:       o.ACMEStorage,
			SelfSigned:        o.TLSSelfSigned,
			SelfSignedHosts:   o.SelfSignedHosts,
			SelfSignedCertOut: o.SelfSignedCertOut,
			Logger:            logger.With("component", "tls"),
		})
		if err != nil {
			return err
		}
		defer certs.Close()
		cfg.TLSConfig = certs.TLSConfig()
		if len(cfg.ListenTLS) == 0 {
			cfg.ListenTLS = []string{":5349"}
		}
	} else if len(cfg.ListenTLS) > 0 {
		return errors.New("--listen-tls needs a certificate: --tls-cert/--tls-key, --acme-domain, or --tls-self-signed")
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	cfg.Registerer = reg

	var ops *opshttp.Server
	if o.MetricsAddr != "" {
		ln, lerr := opshttp.Listen(ctx, o.MetricsAddr)
		if lerr != nil {
			return lerr
		}
		ops = opshttp.New(ln, opshttp.Config{Gatherer: reg, Logger: logger})
		defer ops.Close() //nolint:contextcheck // shutdown has its own bounded context
	}

	srv, err := relay.New(cfg) //nolint:contextcheck // the server lives until Close, not until ctx ends
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, srv.Close()) }()

	if certs != nil && certs.Kind() == "acme" {
		// The TLS listener serves TLS-ALPN-01 challenges from now on.
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
	logger.Info("signal received: draining", "allocations", srv.Allocations(), "timeout", o.DrainTimeout)
	if ops != nil {
		ops.SetReady(false)
	}
	// A second signal ends the drain early. ctx is done by now, so the
	// drain needs a context of its own.
	dctx, stop := signal.NotifyContext(context.WithoutCancel(ctx), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	dctx, cancel := context.WithTimeout(dctx, o.DrainTimeout)
	defer cancel()
	if err := srv.Shutdown(dctx); err != nil {
		logger.Warn("drain ended with allocations still live", "allocations", srv.Allocations(), "err", err)
	} else {
		logger.Info("drained")
	}
	return nil
}
