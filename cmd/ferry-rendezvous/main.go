// Command ferry-rendezvous is Ferry's rendezvous server: STUN, signaling,
// TURN credentials and DHT bootstrap. See README.md for the operator's
// guide and `ferry-rendezvous --help` for every option.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"

	"github.com/redis/go-redis/v9"

	"github.com/ferrynet/ferry/identity"
	"github.com/ferrynet/ferry/internal/cliconf"
	"github.com/ferrynet/ferry/internal/netaddr"
	"github.com/ferrynet/ferry/internal/opshttp"
	"github.com/ferrynet/ferry/internal/tlsconf"
	"github.com/ferrynet/ferry/server/rendezvous"
)

// defaultGOGC is the GC target ferry-rendezvous runs with when the
// environment sets no GOGC: an idle peer's memory is mostly crypto/tls's
// per-connection state, which the GC's headroom (GOGC=100: about the live
// heap again) doubles. 50 brought 20,000 wss peers from 29.7 to 23.1 KiB
// of RSS each, for GC work that idle peers hardly cause (docs/BENCHMARKS.md).
const defaultGOGC = 50

func main() {
	if _, set := os.LookupEnv("GOGC"); !set {
		debug.SetGCPercent(defaultGOGC)
	}
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
	return o.flags().Main(args, env, stdout, stderr, &o.Ops, o.check,
		func(logger *slog.Logger) error { return serve(ctx, o, logger) })
}

// check reports option combinations that cannot work.
func (o *options) check() error {
	switch {
	case o.ListenHTTPS == "" && o.ListenHTTP == "" && o.ListenSTUN == "":
		return errors.New("nothing to serve: --listen-https, --listen-http and --listen-stun are all off")
	case o.ListenHTTPS != "" && !o.TLS.Enabled() && o.ListenHTTP == "":
		return errors.New("--listen-https needs a certificate: --tls-cert/--tls-key, --acme-domain or " +
			"--tls-self-signed (or use --listen-http ADDR in a lab)")
	case o.ListenSTUNAlt != "" && o.ListenSTUN == "":
		return errors.New("--listen-stun-alt needs --listen-stun")
	case len(o.Relays) > 0 && o.RelaySecret == "":
		return errors.New("--relay needs --relay-secret to issue credentials")
	case o.MaxMessageSize > 1<<20 || o.MaxMessageSize < 0:
		return errors.New("--max-message-size is 4Ki to 1Mi, or 0 for the default")
	}
	return o.TLS.Check()
}

func (o *options) config() rendezvous.Config {
	return rendezvous.Config{
		STUNExternalIPs:   o.ExternalIPs,
		ServerNames:       o.ServerNames,
		PublicURL:         o.PublicURL,
		STUNURLs:          o.STUNURLs,
		RelaySecret:       o.RelaySecret,
		RelayURLs:         o.Relays,
		CredentialTTL:     o.CredentialTTL,
		BootstrapSeeds:    o.seeds(),
		DHTBootstrap:      o.DHTBootstrap,
		BootstrapPeers:    o.BootstrapPeers,
		MaxPayload:        int(o.MaxMessageSize),
		LoginTimeout:      o.LoginTimeout,
		IdleTimeout:       o.IdleTimeout,
		ClockSkew:         o.ClockSkew,
		QueueSize:         o.QueueSize,
		QueueBytes:        int(o.QueueBytes),
		IPLoginRate:       o.IPLoginRate,
		IPLoginBurst:      o.IPLoginBurst,
		IPCredentialRate:  o.IPCredentialRate,
		IPCredentialBurst: o.IPCredentialBurst,
		STUNRate:          o.STUNRate,
		STUNBurst:         o.STUNBurst,
		PeerRate:          o.PeerRate,
		PeerBurst:         o.PeerBurst,
		IPConnectRate:     o.IPConnectRate,
		IPConnectBurst:    o.IPConnectBurst,
		MaxConnsPerIP:     o.MaxConnsPerIP,
		MaxConns:          o.MaxConns,
		TrustedProxies:    o.TrustedProxies,
		RegistryTTL:       o.RegistryTTL,
		ReplicaID:         o.ReplicaID,
		ShutdownGrace:     o.Ops.ShutdownGrace,
		ShutdownRetry:     o.RetryAfter,
	}
}

func serve(ctx context.Context, o *options, logger *slog.Logger) error {
	if err := raiseFDLimit(o.FDLimit); err != nil {
		return err
	}
	var rdb redis.UniversalClient
	if o.Redis != "" {
		ropts, err := redis.ParseURL(o.Redis)
		if err != nil {
			return fmt.Errorf("--redis: %w", err)
		}
		c := redis.NewClient(ropts)
		defer c.Close() // after the server's Close, which Serve returns after
		rdb = c
	}
	spec := cliconf.Spec[*rendezvous.Server]{
		Ops:     &o.Ops,
		Started: started,
		Build: func(ctx context.Context, d cliconf.Deps) (*rendezvous.Server, error) {
			return o.build(ctx, d, rdb)
		},
	}
	if o.TLS.Enabled() && o.ListenHTTPS != "" {
		tc, err := o.tlsConfig(logger)
		if err != nil {
			return err
		}
		spec.TLS = &tc
	} else if o.ListenHTTPS != "" {
		logger.Info("no certificate source: --listen-https is off, signaling is served by --listen-http only")
	}
	return cliconf.Serve(ctx, logger, spec)
}

// peerFile reads a list of peer IDs, one per line (blank lines and #
// comments allowed), into a membership test; "" gives nil (everyone).
func peerFile(path, flag string) (func(identity.PeerID) bool, error) {
	if path == "" {
		return nil, nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", flag, err)
	}
	ids := map[identity.PeerID]struct{}{}
	for i, line := range strings.Split(string(b), "\n") {
		line, _, _ = strings.Cut(line, "#")
		if line = strings.TrimSpace(line); line == "" {
			continue
		}
		id, perr := identity.ParsePeerID(line)
		if perr != nil {
			return nil, fmt.Errorf("%s: %s line %d: %w", flag, path, i+1, perr)
		}
		ids[id] = struct{}{}
	}
	return func(id identity.PeerID) bool { _, ok := ids[id]; return ok }, nil
}

// build opens the sockets and makes the server.
func (o *options) build(ctx context.Context, d cliconf.Deps, rdb redis.UniversalClient) (srv *rendezvous.Server, err error) {
	cfg := o.config()
	if cfg.AllowPeer, err = peerFile(o.AllowPeerFile, "--allow-peer-file"); err != nil {
		return nil, err
	}
	if cfg.AllowDHT, err = peerFile(o.DHTPeerFile, "--dht-peer-file"); err != nil {
		return nil, err
	}
	if cfg.DHTIdentity, err = o.dhtIdentity(); err != nil {
		return nil, err
	}
	cfg.Redis = rdb
	cfg.Logger, cfg.Registerer = d.Logger, d.Registry
	// Whatever is opened before New is closed here if New is not reached;
	// New closes it when it fails.
	var owned []io.Closer
	defer func() {
		for _, c := range owned {
			c.Close()
		}
	}()
	if d.Certs != nil {
		ln, lerr := rendezvous.Listen(ctx, o.ListenHTTPS)
		if lerr != nil {
			return nil, lerr
		}
		owned = append(owned, ln)
		cfg.Listener, cfg.TLSConfig = ln, d.Certs.TLSConfig()
		if len(cfg.ServerNames) == 0 {
			cfg.ServerNames = o.TLS.DefaultServerNames()
		}
	}
	if o.ListenHTTP != "" {
		ln, lerr := rendezvous.Listen(ctx, o.ListenHTTP)
		if lerr != nil {
			return nil, lerr
		}
		owned = append(owned, ln)
		cfg.InsecureListener = ln
	}
	if o.ListenSTUN != "" {
		conns, serr := rendezvous.ListenSTUN(ctx, o.ListenSTUN, o.ListenSTUNAlt)
		if serr != nil {
			return nil, serr
		}
		for _, c := range conns {
			owned = append(owned, c)
		}
		cfg.STUNConns = conns
		if o.STUNTCP {
			// The UDP socket's port, so that ":0" gets one port for both.
			host, _, _ := net.SplitHostPort(o.ListenSTUN)
			port := netaddr.AddrPort(conns[0].LocalAddr()).Port()
			ln, lerr := rendezvous.ListenSTUNTCP(ctx, net.JoinHostPort(host, strconv.Itoa(int(port))))
			if lerr != nil {
				return nil, lerr
			}
			owned = append(owned, ln)
			cfg.STUNListener = ln
		}
	}
	owned = nil // New owns the sockets now, whatever happens.
	srv, err = rendezvous.New(cfg)
	if err != nil {
		return nil, err
	}
	return srv, nil
}

// tlsConfig is the certificate source for --listen-https.
func (o *options) tlsConfig(logger *slog.Logger) (tlsconf.Config, error) {
	c, err := o.TLS.Config(logger)
	if err != nil {
		return c, err
	}
	c.ACMEDisableHTTP = true // nothing serves port 80: TLS-ALPN-01 on --listen-https
	if len(o.TLS.ACMEDomains) > 0 {
		// certmagic answers TLS-ALPN-01 through --listen-https; tell it
		// where that is when the CA's port 443 is forwarded to another one.
		host, port, err := net.SplitHostPort(o.ListenHTTPS)
		if err != nil {
			return c, fmt.Errorf("--listen-https: %w", err)
		}
		if p, _ := strconv.Atoi(port); p != 0 && p != 443 {
			c.ACMEAltTLSALPNPort = p
		}
		c.ACMEListenHost = host
	}
	return c, nil
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
