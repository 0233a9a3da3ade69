// Package lan finds Ferry peers on the local link with multicast DNS
// (RFC 6762) service discovery (RFC 6763), with no server: each node
// announces an instance of _ferry._udp named by its PeerID, with the UDP
// port of its session socket and a signed proof that it holds the PeerID's
// key, and browses for the others. Announcements that do not prove their
// PeerID are refused; the peers kept are bounded in number, per source
// address and in time. See README.md.
package lan

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/pion/logging"
	"github.com/pion/mdns/v2"
	"golang.org/x/net/ipv4"
	"golang.org/x/sys/unix"

	"github.com/ferrynet/ferry/identity"
)

// Service is the DNS-SD service type Ferry nodes announce.
const Service = "_ferry._udp"

// Defaults of Config.
const (
	DefaultMaxPeers      = 256
	DefaultMaxPerSource  = 4
	DefaultPeerTTL       = 3 * time.Minute
	resignEvery          = time.Minute
	DefaultQueryInterval = 2 * time.Second
	refusalLogEvery      = 10 * time.Second
)

// Config configures a Discovery. Zero fields take the defaults.
type Config struct {
	// Identity is the node's; its PeerID names the announced instance.
	Identity *identity.Identity
	// Port is the UDP port of the node's session socket, announced to
	// peers.
	Port uint16
	// Conn is the multicast socket, bound to port 5353 (ListenMulticast
	// opens one). Discovery owns it from Start on and closes it.
	Conn net.PacketConn
	// Interfaces restricts mDNS to these interfaces (default: every up,
	// multicast-capable one).
	Interfaces []net.Interface
	// Logger receives refusals (rate-limited) and discoveries.
	Logger *slog.Logger
	// MaxPeers bounds the peers kept (DefaultMaxPeers).
	MaxPeers int
	// MaxPerSource bounds the PeerIDs one source address may announce
	// (DefaultMaxPerSource).
	MaxPerSource int
	// PeerTTL is how long a peer is kept after its last announcement
	// (DefaultPeerTTL). Announcements are re-signed every minute, which
	// browsers see as an update.
	PeerTTL time.Duration
	// QueryInterval is the interval between browse queries
	// (DefaultQueryInterval).
	QueryInterval time.Duration
	// Now is the clock (default time.Now).
	Now func() time.Time
	// OnPeer, if set, is called (on the discovery's goroutine, so it must
	// not block) for each peer found or whose address changed.
	OnPeer func(Peer)
}

// A Peer is a node found on the LAN.
type Peer struct {
	ID   identity.PeerID
	Addr netip.AddrPort // where its session socket listens
	Seen time.Time      // its last valid announcement
}

// A Discovery announces the node and keeps the peers it finds.
type Discovery struct {
	cfg    Config
	log    *slog.Logger
	conn   *mdns.Conn
	cancel context.CancelFunc
	done   chan struct{}

	mu       sync.Mutex
	peers    map[identity.PeerID]Peer
	refused  int       // refusals since the last refusal log line
	lastLog  time.Time // of the last refusal log line
	closed   bool
	closeErr error
}

// ListenMulticast opens a socket on the mDNS port that other programs on
// the host (other nodes, an mDNS responder) may share.
func ListenMulticast(ctx context.Context) (net.PacketConn, error) {
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			if serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEADDR, 1); serr != nil {
				return
			}
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
		})
		return errors.Join(err, serr)
	}}
	pc, err := lc.ListenPacket(ctx, "udp4", "0.0.0.0:5353")
	if err != nil {
		return nil, fmt.Errorf("lan: mDNS socket: %w", err)
	}
	return pc, nil
}

// Start announces the node and browses for peers until Close. It creates
// its sockets at once, so a caller may run it inside a network namespace.
func Start(cfg Config) (_ *Discovery, err error) {
	if cfg.Identity == nil || cfg.Conn == nil || cfg.Port == 0 {
		if cfg.Conn != nil {
			_ = cfg.Conn.Close()
		}
		return nil, errors.New("lan: Start needs an identity, a multicast socket and a port")
	}
	if cfg.MaxPeers <= 0 {
		cfg.MaxPeers = DefaultMaxPeers
	}
	if cfg.MaxPerSource <= 0 {
		cfg.MaxPerSource = DefaultMaxPerSource
	}
	if cfg.PeerTTL <= 0 {
		cfg.PeerTTL = DefaultPeerTTL
	}
	if cfg.QueryInterval <= 0 {
		cfg.QueryInterval = DefaultQueryInterval
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	d := &Discovery{cfg: cfg, log: log.With("lan", cfg.Identity.PeerID().Short()), peers: map[identity.PeerID]Peer{}, done: make(chan struct{})}
	id := cfg.Identity.PeerID().String()
	opts := []mdns.ServerOption{
		mdns.WithLocalNames("ferry-" + id[:16] + ".local"),
		mdns.WithQueryInterval(cfg.QueryInterval),
		mdns.WithLoggerFactory(quietLogs{}),
	}
	if len(cfg.Interfaces) > 0 {
		opts = append(opts, mdns.WithInterfaces(cfg.Interfaces...))
	}
	d.conn, err = mdns.NewServer(ipv4.NewPacketConn(cfg.Conn), nil, opts...)
	if err != nil {
		_ = cfg.Conn.Close()
		return nil, fmt.Errorf("lan: mDNS: %w", err)
	}
	defer func() {
		if err != nil {
			_ = d.conn.Close()
		}
	}()
	if err = d.conn.Register(d.instance(cfg.Now())); err != nil {
		return nil, fmt.Errorf("lan: announce: %w", err)
	}
	d.conn.OnServiceDiscovered(d.onEvent)
	ctx, cancel := context.WithCancel(context.Background())
	d.cancel = cancel
	if err = d.conn.Browse(ctx, Service); err != nil {
		cancel()
		return nil, fmt.Errorf("lan: browse: %w", err)
	}
	go d.loop(ctx)
	return d, nil
}

func (d *Discovery) instance(now time.Time) mdns.ServiceInstance {
	return mdns.ServiceInstance{
		Instance: d.cfg.Identity.PeerID().String(),
		Service:  Service,
		Port:     d.cfg.Port,
		Text:     signTXT(d.cfg.Identity, d.cfg.Port, now),
	}
}

// loop re-signs the announcement and expires peers.
func (d *Discovery) loop(ctx context.Context) {
	defer close(d.done)
	resign := time.NewTicker(resignEvery)
	defer resign.Stop()
	sweep := time.NewTicker(d.cfg.PeerTTL / 4)
	defer sweep.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-resign.C:
			inst := d.instance(d.cfg.Now())
			if err := d.conn.UpdateTXT(inst.Instance, Service, inst.Text); err != nil {
				d.log.Warn("lan: cannot renew the announcement", "err", err)
			}
		case <-sweep.C:
			d.expire()
		}
	}
}

func (d *Discovery) expire() {
	now := d.cfg.Now()
	d.mu.Lock()
	defer d.mu.Unlock()
	for id, p := range d.peers {
		if now.Sub(p.Seen) > d.cfg.PeerTTL {
			delete(d.peers, id)
		}
	}
}

func (d *Discovery) onEvent(ev mdns.ServiceEvent) {
	addr := netip.AddrPortFrom(ev.Addr.Unmap(), ev.Instance.Port)
	if p, ok := d.admit(ev.Instance.Instance, addr, ev.Instance.Text); ok && d.cfg.OnPeer != nil {
		d.cfg.OnPeer(p)
	}
}

// admit checks an announcement and keeps its peer. It reports whether the
// peer is new or moved.
func (d *Discovery) admit(instance string, addr netip.AddrPort, txt []mdns.TXTEntry) (Peer, bool) {
	now := d.cfg.Now()
	id, err := verifyTXT(instance, addr.Port(), txt, now)
	if err == nil && id == d.cfg.Identity.PeerID() {
		return Peer{}, false // our own announcement
	}
	if err == nil && !addr.Addr().IsValid() {
		err = fmt.Errorf("%w: no address", ErrBadAnnouncement)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return Peer{}, false
	}
	if err == nil {
		old, known := d.peers[id]
		switch {
		case known:
		case len(d.peers) >= d.cfg.MaxPeers:
			err = fmt.Errorf("lan: %d peers kept already", d.cfg.MaxPeers)
		case d.fromLocked(addr.Addr()) >= d.cfg.MaxPerSource:
			err = fmt.Errorf("lan: %v announces more than %d PeerIDs", addr.Addr(), d.cfg.MaxPerSource)
		}
		if err == nil {
			p := Peer{ID: id, Addr: addr, Seen: now}
			d.peers[id] = p
			if !known || old.Addr != addr {
				d.log.Info("lan: peer found", "peer", id.Short(), "addr", addr)
				return p, true
			}
			return p, false
		}
	}
	d.refusedLocked(now, instance, addr, err)
	return Peer{}, false
}

func (d *Discovery) fromLocked(a netip.Addr) int {
	n := 0
	for _, p := range d.peers {
		if p.Addr.Addr() == a {
			n++
		}
	}
	return n
}

// refusedLocked logs a refused announcement, at most one line per
// refusalLogEvery with the count of those not logged.
func (d *Discovery) refusedLocked(now time.Time, instance string, addr netip.AddrPort, err error) {
	d.refused++
	if !d.lastLog.IsZero() && now.Sub(d.lastLog) < refusalLogEvery {
		return
	}
	if len(instance) > 64 {
		instance = instance[:64]
	}
	d.log.Warn("lan: announcement refused", "from", addr, "instance", fmt.Sprintf("%q", instance), "err", err, "refused", d.refused)
	d.refused, d.lastLog = 0, now
}

// Peers returns the peers found, sorted by PeerID.
func (d *Discovery) Peers() []Peer {
	now := d.cfg.Now()
	d.mu.Lock()
	ps := make([]Peer, 0, len(d.peers))
	for _, p := range d.peers {
		if now.Sub(p.Seen) <= d.cfg.PeerTTL {
			ps = append(ps, p)
		}
	}
	d.mu.Unlock()
	slices.SortFunc(ps, func(a, b Peer) int { return slices.Compare(a.ID[:], b.ID[:]) })
	return ps
}

// Lookup returns where peer listens, if it was found.
func (d *Discovery) Lookup(peer identity.PeerID) (netip.AddrPort, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	p, ok := d.peers[peer]
	if !ok || d.cfg.Now().Sub(p.Seen) > d.cfg.PeerTTL {
		return netip.AddrPort{}, false
	}
	return p.Addr, true
}

// Forget drops peer, for example after a dial to its address failed; its
// next announcement brings it back.
func (d *Discovery) Forget(peer identity.PeerID) {
	d.mu.Lock()
	delete(d.peers, peer)
	d.mu.Unlock()
}

// Close stops announcing (with a goodbye) and browsing, and closes the
// sockets. Close is idempotent.
func (d *Discovery) Close() error {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return d.closeErr
	}
	d.closed = true
	d.mu.Unlock()
	d.cancel()
	<-d.done
	err := d.conn.Close()
	d.mu.Lock()
	d.closeErr = err
	d.mu.Unlock()
	return err
}

// quietLogs drops the mDNS library's own logs: refusals are logged,
// rate-limited, by the Discovery, and the library logs every bad packet.
type quietLogs struct{}

func (quietLogs) NewLogger(string) logging.LeveledLogger { return quietLogger{} }

type quietLogger struct{}

func (quietLogger) Trace(string)                  {}
func (quietLogger) Tracef(string, ...interface{}) {}
func (quietLogger) Debug(string)                  {}
func (quietLogger) Debugf(string, ...interface{}) {}
func (quietLogger) Info(string)                   {}
func (quietLogger) Infof(string, ...interface{})  {}
func (quietLogger) Warn(string)                   {}
func (quietLogger) Warnf(string, ...interface{})  {}
func (quietLogger) Error(string)                  {}
func (quietLogger) Errorf(string, ...interface{}) {}
