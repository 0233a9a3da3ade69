// Package labworld runs Ferry's servers in a NAT lab: a rendezvous server
// (signaling and STUN) and a TURN relay on the lab's public server host,
// inside its namespace, in this process, and starts SDK nodes on the lab's
// hosts logged in to them. The end-to-end tests (internal/e2e) and
// `ferry demo --nat-a/--nat-b` share it; it links no test code.
package labworld

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"

	"github.com/ferrynet/ferry/internal/natlab"
	"github.com/ferrynet/ferry/sdk"
	"github.com/ferrynet/ferry/server/relay"
	"github.com/ferrynet/ferry/server/rendezvous"
)

// Ports on the lab's server host: the rendezvous (signaling and STUN) on
// the first address, the relay on the second.
const (
	SignalPort   = 8080
	RelayTLSPort = 5349
	STUNPort     = 3478
	RelayPort    = 3478
	relaySecret  = "ferry-lab-relay-secret"
)

// World is a lab with Ferry's servers running on its server host, inside
// the host's namespace, in this process.
type World struct {
	Lab *natlab.Lab
	Log *slog.Logger

	rv *rendezvous.Server

	mu    sync.Mutex
	relay *relay.Server
	opts  worldOptions
}

type worldOptions struct {
	relayCert *tls.Certificate
	rvConfig  func(*rendezvous.Config)
}

// A WorldOption changes how the servers run.
type WorldOption func(*worldOptions)

// WithRelayTLS makes the relay also serve TURN over TLS with cert (for the
// relay's second address) and the rendezvous hand out turns: instead of
// turn: over TCP, so peers without UDP reach the relay over TLS. Peers
// must trust cert (pion's TURN client uses the system roots, which
// SSL_CERT_FILE extends).
func WithRelayTLS(cert tls.Certificate) WorldOption {
	return func(o *worldOptions) { o.relayCert = &cert }
}

// WithRendezvousConfig lets f change the rendezvous server's configuration
// before it starts (a DHT node, for instance).
func WithRendezvousConfig(f func(*rendezvous.Config)) WorldOption {
	return func(o *worldOptions) { o.rvConfig = f }
}

// New starts the servers on lab's server host.
func New(ctx context.Context, lab *natlab.Lab, log *slog.Logger, opts ...WorldOption) (_ *World, err error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	w := &World{Lab: lab, Log: log}
	for _, o := range opts {
		o(&w.opts)
	}
	defer func() { //nolint:contextcheck // cleanup of a failed start
		if err != nil {
			_ = w.Close()
		}
	}()
	srv := lab.Server()
	addrs := srv.Addrs()
	if len(addrs) < 2 {
		return nil, errors.New("labworld: the lab server needs two addresses")
	}
	sig, alt := addrs[0], addrs[1]
	ln, err := srv.Listen(ctx, "tcp4", netip.AddrPortFrom(sig, SignalPort).String())
	if err != nil {
		return nil, err
	}
	stunPC, err := srv.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(sig, STUNPort)))
	if err != nil {
		_ = ln.Close()
		return nil, err
	}
	relayHost := netip.AddrPortFrom(alt, RelayPort).String()
	relayURLs := []string{"turn:" + relayHost + "?transport=udp", "turn:" + relayHost + "?transport=tcp"}
	if w.opts.relayCert != nil {
		relayURLs[1] = "turns:" + netip.AddrPortFrom(alt, RelayTLSPort).String() + "?transport=tcp"
	}
	rc := rendezvous.Config{
		Listener:    ln,
		STUNConns:   []net.PacketConn{stunPC},
		ServerNames: []string{sig.String()},
		RelaySecret: relaySecret,
		RelayURLs:   relayURLs,
		Logger:      log.With("server", "rendezvous"),
	}
	if w.opts.rvConfig != nil {
		w.opts.rvConfig(&rc)
	}
	w.rv, err = rendezvous.New(rc)
	if err != nil {
		_ = ln.Close()
		_ = stunPC.Close()
		return nil, fmt.Errorf("labworld: rendezvous: %w", err)
	}
	if err := w.StartRelay(ctx); err != nil {
		return nil, err
	}
	return w, nil
}

// SignalURL is the rendezvous URL nodes log in to.
func (w *World) SignalURL() string {
	return "ws://" + netip.AddrPortFrom(w.Lab.Server().Addrs()[0], SignalPort).String() + "/v1/signal"
}

// StartRelay starts the relay (again, after StopRelay).
func (w *World) StartRelay(ctx context.Context) error {
	srv := w.Lab.Server()
	alt := srv.Addrs()[1]
	at := netip.AddrPortFrom(alt, RelayPort)
	pc, err := srv.ListenUDP("udp4", net.UDPAddrFromAddrPort(at))
	if err != nil {
		return err
	}
	tl, err := srv.Listen(ctx, "tcp4", at.String())
	if err != nil {
		_ = pc.Close()
		return err
	}
	var (
		tlsListeners []net.Listener
		tlsConf      *tls.Config
	)
	if c := w.opts.relayCert; c != nil {
		sl, lerr := srv.Listen(ctx, "tcp4", netip.AddrPortFrom(alt, RelayTLSPort).String())
		if lerr != nil {
			_ = pc.Close()
			_ = tl.Close()
			return lerr
		}
		tlsListeners = []net.Listener{sl}
		tlsConf = &tls.Config{Certificates: []tls.Certificate{*c}, MinVersion: tls.VersionTLS12}
	}
	rl, err := relay.New(relay.Config{ //nolint:contextcheck // the relay outlives ctx; StopRelay ends it
		PacketConns:  []net.PacketConn{pc},
		TCPListeners: []net.Listener{tl},
		TLSListeners: tlsListeners,
		TLSConfig:    tlsConf,
		Realm:        "ferry.lab",
		AuthSecrets:  []string{relaySecret},
		RelayIPs:     []netip.Addr{alt},
		RelayNet:     nsRelayNet{srv},
		Logger:       w.Log.With("server", "relay"),
	})
	if err != nil {
		return fmt.Errorf("labworld: relay: %w", err)
	}
	w.mu.Lock()
	w.relay = rl
	w.mu.Unlock()
	return nil
}

// StopRelay stops the relay abruptly, as a crash would.
func (w *World) StopRelay() error {
	w.mu.Lock()
	rl := w.relay
	w.relay = nil
	w.mu.Unlock()
	if rl == nil {
		return nil
	}
	return rl.Close()
}

// Close stops the servers (not the lab).
func (w *World) Close() error {
	var errs []error
	errs = append(errs, w.StopRelay())
	if w.rv != nil {
		errs = append(errs, w.rv.Close())
	}
	return errors.Join(errs...)
}

// Node starts an SDK node on host h, logged in to the world's rendezvous.
func (w *World) Node(ctx context.Context, h *natlab.Host, opts ...sdk.NodeOption) (*sdk.Node, error) {
	n, err := h.Net()
	if err != nil {
		return nil, err
	}
	id, err := sdk.GenerateIdentity()
	if err != nil {
		return nil, err
	}
	base := []sdk.NodeOption{
		sdk.WithIdentity(id),
		sdk.WithRendezvous(w.SignalURL()),
		sdk.WithNetwork(n, h.DialContext),
		sdk.WithLogger(w.Log.With("host", h.Name())),
	}
	return sdk.New(ctx, append(base, opts...)...)
}

// nsRelayNet opens the relay's sockets inside the server host's namespace.
type nsRelayNet struct{ h *natlab.Host }

func (n nsRelayNet) ListenPacket(network string, laddr netip.AddrPort) (pc net.PacketConn, err error) {
	err = n.h.Do(func() error {
		pc, err = relay.OSRelayNet{}.ListenPacket(network, laddr)
		return err
	})
	return pc, err
}

func (n nsRelayNet) ListenTCP(network string, laddr netip.AddrPort) (l net.Listener, err error) {
	err = n.h.Do(func() error {
		l, err = relay.OSRelayNet{}.ListenTCP(network, laddr)
		return err
	})
	return l, err
}

func (n nsRelayNet) DialTCP(ctx context.Context, network string, laddr, raddr netip.AddrPort) (c net.Conn, err error) {
	err = n.h.Do(func() error {
		c, err = relay.OSRelayNet{}.DialTCP(ctx, network, laddr, raddr)
		return err
	})
	return c, err
}
