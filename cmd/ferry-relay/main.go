// Command ferry-relay is Ferry's TURN relay server. See README.md for the
// operator's guide and `ferry-relay --help` for every option.
package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/ferrynet/ferry/internal/cliconf"
	"github.com/ferrynet/ferry/internal/opshttp"
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
	return o.flags().Main(args, env, stdout, stderr, &o.Ops, o.check,
		func(logger *slog.Logger) error { return serve(ctx, o, logger) })
}

// check reports option combinations that cannot work.
func (o *options) check() error {
	if len(nonEmpty(o.ListenTLS)) > 0 && !o.TLS.Enabled() {
		return errors.New("--listen-tls needs a certificate: --tls-cert/--tls-key, --acme-domain, or --tls-self-signed")
	}
	return o.TLS.Check()
}

func serve(ctx context.Context, o *options, logger *slog.Logger) error {
	cfg := o.relayConfig()
	cfg.Logger = logger
	spec := cliconf.Spec[*relay.Server]{
		Ops:     &o.Ops,
		Started: started,
		Build: func(_ context.Context, d cliconf.Deps) (*relay.Server, error) {
			cfg.Registerer = d.Registry
			if d.Certs != nil {
				cfg.TLSConfig = d.Certs.TLSConfig()
				if len(cfg.ListenTLS) == 0 {
					cfg.ListenTLS = []string{":5349"}
				}
			}
			return relay.New(cfg) //nolint:contextcheck // the server lives until Close, not until ctx ends
		},
	}
	if o.TLS.Enabled() {
		tc, err := o.TLS.Config(logger)
		if err != nil {
			return err
		}
		spec.TLS = &tc
	}
	return cliconf.Serve(ctx, logger, spec)
}
