package relay

import (
	"cmp"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/netip"
	"runtime"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Defaults applied to zero fields of Config.
const (
	DefaultRealm                 = "ferry"
	DefaultAuthSeparator         = ":"
	DefaultRelayPortMin          = 49152
	DefaultRelayPortMax          = 65535
	DefaultMaxAllocationsPerUser = 10
	DefaultMaxAllocationsPerIP   = 64
	DefaultMaxAllocations        = 10000
	DefaultAllocationBandwidth   = 2 << 20   // 2 MiB/s, 16.8 Mbit/s
	DefaultServerBandwidth       = 128 << 20 // 128 MiB/s, 1.07 Gbit/s
	DefaultMaxConnsPerIP         = 128
	DefaultUnallocatedTimeout    = 30 * time.Second
	DefaultMaxCredentialLifetime = 24 * time.Hour
	DefaultAllocationLifetime    = 10 * time.Minute
	DefaultMaxAllocationLifetime = time.Hour
	DefaultUnauthRepliesPerIP    = 5.0
	DefaultFirstMessageTimeout   = 10 * time.Second
	DefaultMaxConns              = 10000
	DefaultConnectTimeout        = 30 * time.Second

	// pionMaxLifetime is pion/turn's own ceiling: a requested LIFETIME of an
	// hour or more is replaced by the default lifetime.
	pionMaxLifetime = time.Hour
)

// Config configures a Server. Every field's zero value has the documented
// meaning, so Config{ListenUDP: []string{":3478"}, AuthSecrets: []string{s}}
// is a complete configuration. For every cap and rate, zero means the
// documented default and a negative value means no cap; a negative duration
// or socket count is invalid. Validate reports what is inconsistent; New
// calls it.
type Config struct {
	// ListenUDP lists UDP addresses ("IP:port" or ":port") to serve TURN on.
	// New opens UDPSockets sockets on each with SO_REUSEPORT, so the kernel
	// spreads clients over them and relaying uses every core. Zero: none.
	ListenUDP []string

	// UDPSockets is the number of sockets per UDP address. Zero means one per
	// core (runtime.GOMAXPROCS); negative is invalid.
	UDPSockets int

	// ListenTCP lists TCP addresses for TURN over TCP. Zero: none.
	ListenTCP []string

	// ListenTLS lists TCP addresses for TURN over TLS (TURNS). They need
	// TLSConfig. Zero: none.
	ListenTLS []string

	// PacketConns, TCPListeners and TLSListeners are sockets the caller opened
	// (see ListenUDP and ListenTCP), served in addition to the addresses above.
	// TLSListeners are plain TCP listeners; the server runs TLS on them with
	// TLSConfig. The Server owns them: Close closes them, and so does a New
	// that fails.
	PacketConns  []net.PacketConn
	TCPListeners []net.Listener
	TLSListeners []net.Listener

	// TLSConfig serves TLS listeners. It must provide certificates
	// (Certificates, GetCertificate or GetConfigForClient); see internal/tlsconf
	// for files, ACME and self-signed certificates.
	TLSConfig *tls.Config

	// Realm is the long-term credential realm. Zero means "ferry".
	Realm string

	// AuthSecrets are TURN REST shared secrets (coturn's static-auth-secret).
	// A username is "expiry<sep>user" (or just "expiry"), where expiry is a
	// Unix time; the password is base64(HMAC-SHA1(secret, username)). Several
	// secrets are accepted at once, for rotation.
	AuthSecrets []string

	// AuthSeparator separates expiry and user in REST usernames. Zero: ":".
	AuthSeparator string

	// Users maps static usernames to passwords.
	Users map[string]string

	// RelayIPs are the local addresses relayed traffic uses, at most one IPv4
	// and one IPv6. Zero: for each family, the address of the first listener
	// bound to a specific address of that family, else the first global
	// unicast address of the host of that family.
	RelayIPs []netip.Addr

	// ExternalIPs are the addresses advertised to clients in place of
	// RelayIPs, for relays behind a 1:1 NAT (cloud VMs, Kubernetes host
	// ports): at most one per family. Zero: RelayIPs are advertised.
	ExternalIPs []netip.Addr

	// RelayPortMin and RelayPortMax bound the relay ports (inclusive). Zero
	// means 49152 and 65535.
	RelayPortMin, RelayPortMax uint16

	// RelayNet opens the relay sockets. Zero: the operating system's network.
	// Tests inject their own to observe or confine relayed traffic.
	RelayNet RelayNet

	// AllowPeers and DenyPeers adjust the peer ACL; see ACL for precedence.
	AllowPeers, DenyPeers []netip.Prefix

	// MaxAllocationsPerUser caps concurrent allocations per user (the REST
	// username's user part, or the static username). Zero means 10; negative
	// means no cap.
	MaxAllocationsPerUser int

	// MaxAllocationsPerIP caps concurrent allocations per source (an IPv4
	// address or an IPv6 /64, see internal/iplimit), whatever usernames they
	// use: REST usernames are cheap to mint, source addresses are not. Zero
	// means 64 (room for a few dozen users behind one carrier-grade NAT);
	// negative means no cap.
	MaxAllocationsPerIP int

	// MaxAllocations caps concurrent allocations on the server. Zero means
	// 10000; negative means no cap.
	MaxAllocations int

	// AllocationBandwidth caps each allocation's relayed payload, in bytes per
	// second in each direction (token bucket). Zero means 2 MiB/s (a video
	// call needs a fraction of it); negative means no cap.
	AllocationBandwidth int64

	// ServerBandwidth caps the whole server's relayed payload, in bytes per
	// second in each direction (token bucket). Zero means 128 MiB/s (about a
	// 1 Gbit/s link); negative means no cap.
	ServerBandwidth int64

	// AllocationLifetime is granted when an Allocate asks for none. Zero means
	// 10 minutes; negative is invalid.
	AllocationLifetime time.Duration

	// MinAllocationLifetime and MaxAllocationLifetime bound the lifetime a
	// client may ask for in Allocate and Refresh (Refresh with 0 still
	// deletes). Zero means no minimum, and a maximum of one hour, which is
	// also the largest maximum allowed; negative is invalid.
	MinAllocationLifetime, MaxAllocationLifetime time.Duration

	// UnauthRepliesPerIP caps the 401/438 replies per second sent to one
	// source IP (one /64 for IPv6), so the relay cannot be used to reflect
	// traffic at a spoofed victim. Zero means 5; negative means no cap.
	UnauthRepliesPerIP float64

	// FirstMessageTimeout bounds how long a TCP or TLS connection may take to
	// complete its TLS handshake and first TURN message. Zero means 10s;
	// negative is invalid.
	FirstMessageTimeout time.Duration

	// UnallocatedTimeout bounds how long a TCP or TLS connection may stay
	// open without an allocation: from its accept until its first successful
	// Allocate (for an RFC 6062 data connection, its ConnectionBind), and
	// again from the moment its allocation ends. Talking (Binding requests,
	// unauthenticated Allocates) does not extend it. Zero means 30s;
	// negative is invalid.
	UnallocatedTimeout time.Duration

	// MaxConns caps concurrent TCP and TLS connections (control and RFC 6062
	// data connections together; UDP has no connections). Zero means 10000;
	// negative means no cap.
	MaxConns int

	// MaxConnsPerIP caps the concurrent TCP and TLS connections of one
	// source (an IPv4 address or an IPv6 /64). Zero means 128; negative
	// means no cap.
	MaxConnsPerIP int

	// MaxCredentialLifetime is the furthest in the future a TURN REST
	// username's expiry may be: a username valid for longer is refused, so
	// that leaked credentials stop working within this bound. Zero means 24h
	// (the rendezvous' credential lifetime must stay below it); negative
	// means no bound.
	MaxCredentialLifetime time.Duration

	// Logger receives the server's logs (ACL denials at debug level). Zero
	// discards them.
	Logger *slog.Logger

	// Registerer, when set, receives the ferry_relay_* metrics. Close
	// unregisters them.
	Registerer prometheus.Registerer

	// now is the clock for credential expiry; tests set it.
	now func() time.Time
}

// Validate reports whether c is usable, naming the first problem.
func (c *Config) Validate() error {
	if len(c.ListenUDP)+len(c.ListenTCP)+len(c.ListenTLS)+len(c.PacketConns)+len(c.TCPListeners)+len(c.TLSListeners) == 0 {
		return fmt.Errorf("%w: no UDP, TCP or TLS listener", ErrInvalidConfig)
	}
	for _, list := range [][]string{c.ListenUDP, c.ListenTCP, c.ListenTLS} {
		for _, a := range list {
			if _, _, err := net.SplitHostPort(a); err != nil {
				return fmt.Errorf("%w: listen address %q: %w", ErrInvalidConfig, a, err)
			}
		}
	}
	if c.UDPSockets < 0 || c.UDPSockets > 1024 {
		return fmt.Errorf("%w: UDPSockets %d out of range 0-1024", ErrInvalidConfig, c.UDPSockets)
	}
	if len(c.ListenTLS)+len(c.TLSListeners) > 0 {
		t := c.TLSConfig
		if t == nil || (len(t.Certificates) == 0 && t.GetCertificate == nil && t.GetConfigForClient == nil) {
			return fmt.Errorf("%w: TLS listeners need a TLSConfig with certificates", ErrInvalidConfig)
		}
	}
	if len(c.AuthSecrets) == 0 && len(c.Users) == 0 {
		return fmt.Errorf("%w: no credentials: set AuthSecrets or Users", ErrInvalidConfig)
	}
	for _, s := range c.AuthSecrets {
		if s == "" {
			return fmt.Errorf("%w: empty auth secret", ErrInvalidConfig)
		}
	}
	for u, p := range c.Users {
		if u == "" || p == "" {
			return fmt.Errorf("%w: static users need a name and a password", ErrInvalidConfig)
		}
	}
	if strings.ContainsAny(c.Realm, "\x00") {
		return fmt.Errorf("%w: realm contains NUL", ErrInvalidConfig)
	}
	if err := onePerFamily("RelayIPs", c.RelayIPs); err != nil {
		return err
	}
	if err := onePerFamily("ExternalIPs", c.ExternalIPs); err != nil {
		return err
	}
	lo, hi := c.portRange()
	if lo == 0 || lo > hi {
		return fmt.Errorf("%w: relay port range %d-%d", ErrInvalidConfig, lo, hi)
	}
	if c.AllocationLifetime < 0 || c.MinAllocationLifetime < 0 || c.MaxAllocationLifetime < 0 {
		return fmt.Errorf("%w: negative lifetime", ErrInvalidConfig)
	}
	def, lmin, lmax := c.lifetimes()
	if lmax > pionMaxLifetime {
		return fmt.Errorf("%w: MaxAllocationLifetime %v exceeds %v", ErrInvalidConfig, lmax, pionMaxLifetime)
	}
	if lmin > lmax || def < lmin || def > lmax {
		return fmt.Errorf("%w: lifetimes need min %v <= default %v <= max %v", ErrInvalidConfig, lmin, def, lmax)
	}
	if def < time.Second || (lmin != 0 && lmin < time.Second) {
		return fmt.Errorf("%w: lifetimes must be at least 1s", ErrInvalidConfig)
	}
	if c.FirstMessageTimeout < 0 || c.UnallocatedTimeout < 0 {
		return fmt.Errorf("%w: negative FirstMessageTimeout or UnallocatedTimeout", ErrInvalidConfig)
	}
	for _, p := range append(append([]netip.Prefix(nil), c.AllowPeers...), c.DenyPeers...) {
		if !p.IsValid() {
			return fmt.Errorf("%w: invalid peer prefix", ErrInvalidConfig)
		}
	}
	return nil
}

func onePerFamily(name string, ips []netip.Addr) error {
	var v4, v6 int
	for _, ip := range ips {
		switch {
		case !ip.IsValid() || ip.IsUnspecified():
			return fmt.Errorf("%w: %s: %v is not a usable address", ErrInvalidConfig, name, ip)
		case ip.Unmap().Is4():
			v4++
		default:
			v6++
		}
	}
	if v4 > 1 || v6 > 1 {
		return fmt.Errorf("%w: %s: at most one IPv4 and one IPv6 address", ErrInvalidConfig, name)
	}
	return nil
}

func (c *Config) portRange() (uint16, uint16) {
	return cmp.Or(c.RelayPortMin, DefaultRelayPortMin), cmp.Or(c.RelayPortMax, DefaultRelayPortMax)
}

func (c *Config) lifetimes() (def, lmin, lmax time.Duration) {
	return cmp.Or(c.AllocationLifetime, DefaultAllocationLifetime), c.MinAllocationLifetime,
		cmp.Or(c.MaxAllocationLifetime, DefaultMaxAllocationLifetime)
}

// withDefaults returns a copy with every zero field replaced by its default.
func (c Config) withDefaults() Config {
	c.UDPSockets = cmp.Or(c.UDPSockets, runtime.GOMAXPROCS(0))
	c.Realm = cmp.Or(c.Realm, DefaultRealm)
	c.AuthSeparator = cmp.Or(c.AuthSeparator, DefaultAuthSeparator)
	c.RelayPortMin, c.RelayPortMax = c.portRange()
	c.AllocationLifetime, c.MinAllocationLifetime, c.MaxAllocationLifetime = c.lifetimes()
	c.MaxAllocationsPerUser = cmp.Or(c.MaxAllocationsPerUser, DefaultMaxAllocationsPerUser)
	c.UnauthRepliesPerIP = cmp.Or(c.UnauthRepliesPerIP, DefaultUnauthRepliesPerIP)
	c.FirstMessageTimeout = cmp.Or(c.FirstMessageTimeout, DefaultFirstMessageTimeout)
	c.MaxConns = cmp.Or(c.MaxConns, DefaultMaxConns)
	c.MaxConnsPerIP = cmp.Or(c.MaxConnsPerIP, DefaultMaxConnsPerIP)
	c.MaxAllocationsPerIP = cmp.Or(c.MaxAllocationsPerIP, DefaultMaxAllocationsPerIP)
	c.MaxAllocations = cmp.Or(c.MaxAllocations, DefaultMaxAllocations)
	c.AllocationBandwidth = cmp.Or(c.AllocationBandwidth, DefaultAllocationBandwidth)
	c.ServerBandwidth = cmp.Or(c.ServerBandwidth, DefaultServerBandwidth)
	c.UnallocatedTimeout = cmp.Or(c.UnallocatedTimeout, DefaultUnallocatedTimeout)
	c.MaxCredentialLifetime = cmp.Or(c.MaxCredentialLifetime, DefaultMaxCredentialLifetime)
	// Negative caps are off: the code below this point knows only "no cap"
	// as zero (total allocations, bandwidth, credential lifetime), as a
	// negative per-user or per-IP cap, or as a cap that is never reached.
	if c.MaxConns < 0 {
		c.MaxConns = math.MaxInt
	}
	if c.MaxConnsPerIP < 0 {
		c.MaxConnsPerIP = math.MaxInt
	}
	c.MaxAllocations = max(c.MaxAllocations, 0)
	c.AllocationBandwidth = max(c.AllocationBandwidth, 0)
	c.ServerBandwidth = max(c.ServerBandwidth, 0)
	c.MaxCredentialLifetime = max(c.MaxCredentialLifetime, 0)
	if c.RelayNet == nil {
		c.RelayNet = OSRelayNet{}
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.now == nil {
		c.now = time.Now
	}
	return c
}

// ParsePortRange parses "MIN-MAX" as used by --relay-ports.
func ParsePortRange(s string) (lo, hi uint16, err error) {
	a, b, ok := strings.Cut(s, "-")
	if !ok {
		return 0, 0, fmt.Errorf("%w: port range %q is not MIN-MAX", ErrInvalidConfig, s)
	}
	var x, y uint64
	if _, err = fmt.Sscan(strings.TrimSpace(a), &x); err == nil {
		_, err = fmt.Sscan(strings.TrimSpace(b), &y)
	}
	if err != nil || x == 0 || x > 65535 || y > 65535 || x > y {
		return 0, 0, fmt.Errorf("%w: port range %q: want 1 <= MIN <= MAX <= 65535", ErrInvalidConfig, s)
	}
	return uint16(x), uint16(y), nil
}

// ParseUser parses "NAME=PASSWORD" as used by --user.
func ParseUser(s string) (name, password string, err error) {
	name, password, ok := strings.Cut(s, "=")
	if !ok || name == "" || password == "" {
		return "", "", errors.New("want NAME=PASSWORD")
	}
	return name, password, nil
}
