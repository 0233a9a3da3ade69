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
	// Protocols to ask with, in order (NATPMP, UPnP); nil means both,
	// NAT-PMP first (one round trip; UPnP needs discovery, a description
	// fetch and SOAP over HTTP). Once one answers it is asked first.
	Protocols []string
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
	Protocol string         // the protocol that answered (Obtained, Renewed, Deleted)
	Err      error          // Failed, or a Deleted the gateway did not confirm
}

// Mapper holds one mapping.
type Mapper struct {
	cfg    Config
	protos []protocol // in Config.Protocols order
	log    *slog.Logger

	mu      sync.Mutex
	addr    netip.AddrPort
	holder  protocol // the protocol that granted addr, nil while none did
	proto   string   // holder's name
	renewed int      // successful requests, for tests and metrics

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
	if cfg.Protocols == nil {
		cfg.Protocols = []string{NATPMP, UPnP}
	}
	if len(cfg.Protocols) == 0 {
		return nil, errors.New("portmap: no protocol")
	}
	for _, p := range cfg.Protocols {
		if p != NATPMP && p != UPnP {
			return nil, fmt.Errorf("portmap: protocol %q: want %q or %q", p, NATPMP, UPnP)
		}
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
	m := &Mapper{cfg: cfg, log: log.With("gateway", gw), done: make(chan struct{})}
	for _, name := range cfg.Protocols {
		switch name {
		case NATPMP:
			m.protos = append(m.protos, &natPMP{c: natpmp.NewClientWithTimeout(net.IP(gw.AsSlice()), cfg.Timeout), port: cfg.Local.Port(), do: cfg.Do})
		case UPnP:
			m.protos = append(m.protos, newUPnP(gw, cfg.Local, cfg.Do))
		}
	}
	m.ctx, m.cancel = context.WithCancel(context.Background())
	go m.run() //nolint:contextcheck // lives until Close, on the Mapper's own context
	return m, nil
}

// Addr is the mapped public address, or the zero AddrPort while there is
// none.
func (m *Mapper) Addr() netip.AddrPort {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.addr
}

// Protocol is the protocol that holds the mapping, "" while none does.
func (m *Mapper) Protocol() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.proto
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
			m.event(Event{Kind: kind, Addr: addr, Lifetime: granted, Protocol: m.Protocol()})
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
// the answer. It asks with the protocol that answered last, then with the
// others in Config.Protocols order.
func (m *Mapper) request(lifetime time.Duration) (netip.AddrPort, time.Duration, error) {
	if lifetime == 0 {
		m.mu.Lock()
		p, ext := m.holder, m.addr
		m.mu.Unlock()
		if p == nil {
			return netip.AddrPort{}, 0, nil
		}
		ctx, cancel := context.WithTimeout(context.Background(), m.cfg.Timeout)
		defer cancel()
		if err := p.del(ctx, ext.Port()); err != nil {
			return netip.AddrPort{}, 0, fmt.Errorf("portmap: %s: %w", p.name(), err)
		}
		return netip.AddrPort{}, 0, nil
	}
	m.mu.Lock()
	order := make([]protocol, 0, len(m.protos))
	if m.holder != nil {
		order = append(order, m.holder)
	}
	for _, p := range m.protos {
		if p != m.holder {
			order = append(order, p)
		}
	}
	m.mu.Unlock()
	var errs []error
	for _, p := range order {
		a, granted, err := m.ask(p, lifetime)
		if err == nil {
			m.mu.Lock()
			m.holder, m.proto = p, p.name()
			m.mu.Unlock()
			return a, granted, nil
		}
		errs = append(errs, fmt.Errorf("%s: %w", p.name(), err))
	}
	m.mu.Lock()
	m.holder, m.proto = nil, ""
	m.mu.Unlock()
	return netip.AddrPort{}, 0, fmt.Errorf("portmap: %w", errors.Join(errs...))
}

// ask makes one protocol's request, bounded by Timeout, and checks the
// answer.
func (m *Mapper) ask(p protocol, lifetime time.Duration) (netip.AddrPort, time.Duration, error) {
	ctx, cancel := context.WithTimeout(m.ctx, m.cfg.Timeout)
	defer cancel()
	a, err := p.add(ctx, lifetime)
	if err != nil {
		return netip.AddrPort{}, 0, err
	}
	if err := m.plausible(a); err != nil {
		return netip.AddrPort{}, 0, err
	}
	return netip.AddrPortFrom(a.ext, a.extPort), a.lifetime, nil
}

// Protocol names, for Config.Protocols and Mapper.Protocol.
const (
	NATPMP = "nat-pmp"
	UPnP   = "upnp"
)

// protocol is one way of asking the gateway.
type protocol interface {
	name() string
	// add asks for a mapping of the local port, to the same external
	// port if the gateway agrees, for lifetime.
	add(ctx context.Context, lifetime time.Duration) (answer, error)
	// del deletes the mapping at external port ext.
	del(ctx context.Context, ext uint16) error
}

// answer is what a gateway said it mapped.
type answer struct {
	ext              netip.Addr
	extPort, intPort uint16
	lifetime         time.Duration
}

// natPMP is RFC 6886 through go-nat-pmp.
type natPMP struct {
	c    *natpmp.Client
	port uint16
	do   func(func() error) error
}

func (n *natPMP) name() string { return NATPMP }

func (n *natPMP) add(_ context.Context, lifetime time.Duration) (answer, error) {
	var ext *natpmp.GetExternalAddressResult
	var res *natpmp.AddPortMappingResult
	err := n.do(func() error {
		var err error
		if ext, err = n.c.GetExternalAddress(); err != nil {
			return err
		}
		res, err = n.c.AddPortMappingWithDuration("udp", int(n.port), int(n.port), lifetime)
		return err
	})
	if err != nil {
		return answer{}, err
	}
	return answer{
		ext: netip.AddrFrom4(ext.ExternalIPAddress), extPort: res.MappedExternalPort, intPort: res.InternalPort,
		lifetime: time.Duration(res.PortMappingLifetimeInSeconds) * time.Second,
	}, nil
}

func (n *natPMP) del(context.Context, uint16) error {
	return n.do(func() error {
		_, err := n.c.AddPortMapping("udp", int(n.port), 0, 0)
		return err
	})
}

// cgnat is RFC 6598's shared address space, the inside of carrier NATs.
var cgnat = netip.MustParsePrefix("100.64.0.0/10")

func (m *Mapper) plausible(a answer) error {
	ip := a.ext
	switch {
	case ip.IsUnspecified() || ip.IsLoopback() || ip.IsMulticast() || ip.IsLinkLocalUnicast() || ip == netip.IPv4Unspecified():
		return fmt.Errorf("%w: external address %v", ErrBadAnswer, ip)
	case ip.IsPrivate() || cgnat.Contains(ip):
		return fmt.Errorf("%w: external address %v is private: the gateway is behind another NAT, so its mapping does not reach the internet", ErrBadAnswer, ip)
	case ip == m.cfg.Local.Addr().Unmap() || ip == m.cfg.Gateway.Unmap():
		return fmt.Errorf("%w: external address %v is on our side of the gateway", ErrBadAnswer, ip)
	case a.extPort == 0 || a.lifetime < time.Second:
		return fmt.Errorf("%w: port %d, lifetime %v", ErrBadAnswer, a.extPort, a.lifetime)
	case a.intPort != m.cfg.Local.Port():
		return fmt.Errorf("%w: a mapping of port %d, not %d", ErrBadAnswer, a.intPort, m.cfg.Local.Port())
	}
	return nil
}

// Close stops renewing and deletes the mapping (one request, bounded by
// Timeout; a gateway that does not answer lets the mapping expire).
//
//nolint:contextcheck // Close has no caller context: Timeout bounds the delete
func (m *Mapper) Close() error {
	var err error
	m.once.Do(func() {
		m.cancel()
		<-m.done
		had, proto := m.Addr(), m.Protocol()
		if had.IsValid() {
			_, _, err = m.request(0)
		}
		m.set(netip.AddrPort{})
		if had.IsValid() {
			m.event(Event{Kind: Deleted, Addr: had, Protocol: proto, Err: err})
		}
	})
	return err
}
