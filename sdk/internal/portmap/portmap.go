// Package portmap asks a node's gateway for a UDP port mapping of the
// node's socket (NAT-PMP, RFC 6886, through github.com/jackpal/go-nat-pmp;
// miniupnpd and most home routers that speak PCP answer it too), renews it
// at half its lifetime, checks what the gateway says before believing it,
// and deletes it on Close. The mapped address is an extra ICE candidate: it
// makes a host behind a symmetric NAT reachable from every NAT type. See
// README.md.
package portmap

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	natpmp "github.com/jackpal/go-nat-pmp"
)

// Defaults.
const (
	// DefaultLifetime is the lifetime asked for; RFC 6886 section 3.3
	// recommends 7200 s. The mapping is renewed at half of what the
	// gateway grants.
	DefaultLifetime = 2 * time.Hour
	// DefaultTimeout bounds one request, retransmissions included.
	DefaultTimeout = 3 * time.Second
	// minRenew keeps a gateway that grants tiny lifetimes from making the
	// node renew in a tight loop.
	minRenew = 2 * time.Second
	// retryBackoff is the wait after a failed request, doubled up to
	// maxBackoff.
	retryBackoff = 5 * time.Second
	maxBackoff   = 5 * time.Minute
)

// ErrBadAnswer is wrapped by errors about answers that cannot be true: an
// external address that is unspecified, loopback, multicast, link-local,
// private or shared (another NAT's inside), our own local address, port 0,
// or a lifetime of 0.
var ErrBadAnswer = errors.New("portmap: implausible gateway answer")

// Config configures a Mapper.
type Config struct {
	// Gateway is the router to ask (required, IPv4).
	Gateway netip.Addr
	// Local is the node's socket: its port is mapped, and its IP is
	// never accepted as the external address.
	Local netip.AddrPort
	// Lifetime asked for; 0 means DefaultLifetime.
	Lifetime time.Duration
	// Timeout bounds one request; 0 means DefaultTimeout.
	Timeout time.Duration
	// Do runs a network call, for a caller that needs its sockets made
	// somewhere special (a lab namespace); nil calls it directly.
	Do func(func() error) error
	// OnChange is called (from the Mapper's goroutine) when the mapped
	// address changes: a new address, or the zero AddrPort when the
	// mapping is lost. It must not block.
	OnChange func(netip.AddrPort)
	// OnEvent is called (from the Mapper's goroutine, and from Close)
	// after each request: obtained, renewed, failed or deleted. It must
	// not block.
	OnEvent func(Event)
	// Logger; nil discards.
	Logger *slog.Logger
}

// EventKind says what a request did.
type EventKind int

// Event kinds.
const (
	// Obtained: a mapping was granted where there was none (or it moved
	// to another address).
	Obtained EventKind = iota + 1
	// Renewed: the held mapping was granted again.
	Renewed
	// Failed: the request failed or its answer was refused; any mapping
	// is withdrawn.
	Failed
	// Deleted: Close released the mapping (Err says if the gateway did
	// not confirm it).
	Deleted
)

func (k EventKind) String() string {
	switch k {
	case Obtained:
		return "obtained"
	case Renewed:
		return "renewed"
	case Failed:
		return "failed"
	case Deleted:
		return "deleted"
	}
	return fmt.Sprintf("EventKind(%d)", int(k))
}

// Event is one request's outcome.
type Event struct {
	Kind     EventKind
	Addr     netip.AddrPort // the mapped address (Obtained, Renewed, Deleted)
	Lifetime time.Duration  // as granted (Obtained, Renewed)
	Err      error          // Failed, or a Deleted the gateway did not confirm
}

// Mapper holds one mapping.
type Mapper struct {
	cfg    Config
	client *natpmp.Client
	log    *slog.Logger

	mu      sync.Mutex
	addr    netip.AddrPort
	renewed int // successful requests, for tests and metrics

	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}
	once   sync.Once
}

// Start checks cfg and starts asking for the mapping in the background.
func Start(cfg Config) (*Mapper, error) {
	gw := cfg.Gateway.Unmap()
	switch {
	case !gw.Is4() || gw.IsUnspecified():
		return nil, fmt.Errorf("portmap: gateway %v: want an IPv4 address", cfg.Gateway)
	case !cfg.Local.IsValid() || cfg.Local.Port() == 0:
		return nil, fmt.Errorf("portmap: local address %v: want IP:PORT", cfg.Local)
	case cfg.Lifetime < 0 || cfg.Timeout < 0:
		return nil, errors.New("portmap: negative lifetime or timeout")
	case cfg.Lifetime > 0 && cfg.Lifetime < time.Second:
		return nil, fmt.Errorf("portmap: lifetime %v: at least 1s", cfg.Lifetime)
	}
	if cfg.Lifetime == 0 {
		cfg.Lifetime = DefaultLifetime
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.Do == nil {
		cfg.Do = func(f func() error) error { return f() }
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	m := &Mapper{
		cfg: cfg, log: log.With("gateway", gw),
		client: natpmp.NewClientWithTimeout(net.IP(gw.AsSlice()), cfg.Timeout),
		done:   make(chan struct{}),
	}
	m.ctx, m.cancel = context.WithCancel(context.Background())
	go m.run()
	return m, nil
}

// Addr is the mapped public address, or the zero AddrPort while there is
// none.
func (m *Mapper) Addr() netip.AddrPort {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.addr
}

// Renewals counts the granted requests so far (the first one included).
func (m *Mapper) Renewals() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.renewed
}

func (m *Mapper) run() {
	defer close(m.done)
	backoff := retryBackoff
	for {
		wait := backoff
		addr, granted, err := m.request(m.cfg.Lifetime)
		if err != nil {
			m.log.Debug("portmap: request failed", "err", err, "retry", backoff)
			m.set(netip.AddrPort{})
			m.event(Event{Kind: Failed, Err: err})
			backoff = min(2*backoff, maxBackoff)
		} else {
			backoff = retryBackoff
			m.mu.Lock()
			m.renewed++
			m.mu.Unlock()
			kind := Renewed
			if m.set(addr) {
				kind = Obtained
			}
			m.event(Event{Kind: kind, Addr: addr, Lifetime: granted})
			wait = max(granted/2, minRenew)
		}
		t := time.NewTimer(wait)
		select {
		case <-m.ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// set records the mapped address and reports whether it changed.
func (m *Mapper) set(a netip.AddrPort) bool {
	m.mu.Lock()
	changed := m.addr != a
	m.addr = a
	m.mu.Unlock()
	if changed {
		m.log.Info("portmap: mapped address", "addr", a)
		if m.cfg.OnChange != nil {
			m.cfg.OnChange(a)
		}
	}
	return changed
}

func (m *Mapper) event(e Event) {
	if m.cfg.OnEvent != nil {
		m.cfg.OnEvent(e)
	}
}

// request asks for (or, with lifetime 0, deletes) the mapping and checks
// the answer.
func (m *Mapper) request(lifetime time.Duration) (netip.AddrPort, time.Duration, error) {
	var ext *natpmp.GetExternalAddressResult
	var res *natpmp.AddPortMappingResult
	port := int(m.cfg.Local.Port())
	err := m.cfg.Do(func() error {
		var err error
		if lifetime == 0 {
			_, err = m.client.AddPortMapping("udp", port, 0, 0)
			return err
		}
		if ext, err = m.client.GetExternalAddress(); err != nil {
			return err
		}
		res, err = m.client.AddPortMappingWithDuration("udp", port, port, lifetime)
		return err
	})
	if err != nil || lifetime == 0 {
		if err != nil {
			err = fmt.Errorf("portmap: %w", err)
		}
		return netip.AddrPort{}, 0, err
	}
	ip := netip.AddrFrom4(ext.ExternalIPAddress)
	if err := m.plausible(ip, res); err != nil {
		return netip.AddrPort{}, 0, err
	}
	return netip.AddrPortFrom(ip, res.MappedExternalPort), time.Duration(res.PortMappingLifetimeInSeconds) * time.Second, nil
}

// cgnat is RFC 6598's shared address space, the inside of carrier NATs.
var cgnat = netip.MustParsePrefix("100.64.0.0/10")

func (m *Mapper) plausible(ip netip.Addr, res *natpmp.AddPortMappingResult) error {
	switch {
	case ip.IsUnspecified() || ip.IsLoopback() || ip.IsMulticast() || ip.IsLinkLocalUnicast() || ip == netip.IPv4Unspecified():
		return fmt.Errorf("%w: external address %v", ErrBadAnswer, ip)
	case ip.IsPrivate() || cgnat.Contains(ip):
		return fmt.Errorf("%w: external address %v is private: the gateway is behind another NAT, so its mapping does not reach the internet", ErrBadAnswer, ip)
	case ip == m.cfg.Local.Addr().Unmap() || ip == m.cfg.Gateway.Unmap():
		return fmt.Errorf("%w: external address %v is on our side of the gateway", ErrBadAnswer, ip)
	case res.MappedExternalPort == 0 || res.PortMappingLifetimeInSeconds == 0:
		return fmt.Errorf("%w: port %d, lifetime %d s", ErrBadAnswer, res.MappedExternalPort, res.PortMappingLifetimeInSeconds)
	case int(res.InternalPort) != int(m.cfg.Local.Port()):
		return fmt.Errorf("%w: a mapping of port %d, not %d", ErrBadAnswer, res.InternalPort, m.cfg.Local.Port())
	}
	return nil
}

// Close stops renewing and deletes the mapping (one request, bounded by
// Timeout; a gateway that does not answer lets the mapping expire).
func (m *Mapper) Close() error {
	var err error
	m.once.Do(func() {
		m.cancel()
		<-m.done
		had := m.Addr()
		m.set(netip.AddrPort{})
		if had.IsValid() {
			_, _, err = m.request(0)
			m.event(Event{Kind: Deleted, Addr: had, Err: err})
		}
	})
	return err
}
