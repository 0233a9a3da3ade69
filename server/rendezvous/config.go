package rendezvous

import (
	"cmp"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"net/url"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/ferrynet/ferry/identity"
	"github.com/ferrynet/ferry/signal"
	"github.com/ferrynet/ferry/wire"
)

// Defaults applied to zero fields of Config.
const (
	DefaultMaxPayload        = 64 << 10
	DefaultLoginTimeout      = 10 * time.Second
	DefaultIdleTimeout       = 90 * time.Second
	DefaultClockSkew         = 5 * time.Minute
	DefaultQueueSize         = 128
	DefaultQueueBytes        = 1 << 20
	DefaultWriteTimeout      = 10 * time.Second
	DefaultPeerRate          = 50.0
	DefaultPeerBurst         = 200
	DefaultIPConnectRate     = 20.0
	DefaultIPConnectBurst    = 100
	DefaultMaxConnsPerIP     = 1000
	DefaultMaxConns          = 200000
	DefaultCredentialTTL     = 10 * time.Minute
	MaxCredentialTTL         = 24 * time.Hour
	DefaultSTUNRate          = 50.0
	DefaultSTUNBurst         = 200
	DefaultSTUNSources       = 100000
	DefaultIPLoginRate       = 5.0
	DefaultIPLoginBurst      = 50
	DefaultIPCredentialRate  = 2.0
	DefaultIPCredentialBurst = 60
	DefaultBootstrapPeers    = 16
	DefaultRegistryTTL       = 30 * time.Second
	DefaultShutdownGrace     = 5 * time.Second
	DefaultShutdownRetry     = 5 * time.Second
	DefaultSignalPath        = "/v1/signal"
	minRegistryTTL           = 3 * time.Second
	maxConfiguredMaxPayload  = 1 << 20
)

// Config configures a Server. Every field's zero value has the documented
// meaning; Config{STUNConns: conns} serves STUN alone, and adding a Listener
// serves signaling too. For every cap and rate, zero means the documented
// default and a negative value means no cap; a negative duration, size or
// burst is invalid. Validate reports what is inconsistent; New calls
// it. The server owns the sockets it is given: Close closes them, and so
// does a New that fails.
type Config struct {
	// STUNConns are the UDP sockets STUN is served on (see ListenSTUN):
	// none (no STUN), one (Binding per RFC 8489), or four for RFC 5780
	// behaviour discovery, in this order, with IP1 != IP2 and P1 != P2:
	//
	//	IP1:P1 (primary), IP1:P2, IP2:P1, IP2:P2
	//
	// RFC 5780 needs each socket bound to a specific address, not a
	// wildcard, since replies name the address they come from.
	STUNConns []net.PacketConn

	// STUNListener, if not nil, also serves STUN Binding over TCP (RFC
	// 8489 section 6.2.2; see ListenSTUNTCP), normally on the primary
	// STUN socket's port, so a client whose UDP is blocked can still get
	// an answer and say so. It needs STUNConns; the STUNRate limit is
	// shared with UDP.
	STUNListener net.Listener

	// STUNTCPConns and STUNTCPConnsPerIP cap the open STUN-over-TCP
	// connections, overall and per source IP (one /64 for IPv6). Zero:
	// DefaultSTUNTCPConns, DefaultSTUNTCPConnsPerIP.
	STUNTCPConns      int
	STUNTCPConnsPerIP int

	// STUNExternalIPs, for a server behind a 1:1 NAT (a cloud VM's public
	// IP), are the public addresses of IP1 and (with RFC 5780) IP2, used in
	// OTHER-ADDRESS, RESPONSE-ORIGIN and the STUN URLs handed to peers.
	// Zero: the sockets' own addresses.
	STUNExternalIPs []netip.Addr

	// STUNRate and STUNBurst limit the STUN requests answered per second
	// for one source IP (one /64 for IPv6); requests over it are dropped
	// unanswered (ferry_rendezvous_stun_requests_total{disposition=
	// "rate_limited"}). An answer is never larger than its request, so
	// the limit is against floods and reflection of volume, not
	// amplification. Sources are UDP, so they can be spoofed: at most
	// DefaultSTUNSources are tracked at once (idle ones are forgotten
	// every minute), and requests from further sources are answered
	// untracked. Zero means 50/s with a burst of 200; a negative rate
	// means no limit, a negative burst is invalid.
	STUNRate  float64
	STUNBurst int

	// Listener serves HTTP(S) with the signaling WebSocket at /v1/signal.
	// Zero: no signaling (a STUN-only server).
	Listener net.Listener

	// TLSConfig, when set, serves Listener with TLS (see internal/tlsconf
	// for files, ACME and self-signed certificates). Zero: plain HTTP and
	// WebSocket, which New logs a warning about: for labs only.
	TLSConfig *tls.Config

	// InsecureListener, when set, also serves signaling, always without
	// TLS (New logs a warning): for labs, or behind a proxy that
	// terminates TLS.
	InsecureListener net.Listener

	// ServerNames are the names a LOGIN may be signed for: the host names
	// (and IP addresses) peers put in their URL; "*.example.com" matches
	// one label. A login signed for another name is refused, so a login
	// cannot be relayed to this server from another. The HTTP Host header
	// is never used for this: the client writes it. Zero: the host of
	// PublicURL; with TLSConfig, the DNS names and IP addresses of its
	// certificates, or of the one its GetCertificate serves to a hello
	// without SNI (ACME serves none: it needs ServerNames); without either, any name, logged as a warning
	// at start (over TLS a login is still bound to its connection, see
	// wire/SPEC.md section 7.4; without TLS nothing else binds it).
	ServerNames []string

	// PublicURL is this server's signaling URL as peers reach it, such as
	// "wss://rendezvous.example.com/v1/signal". It is the first seed in
	// BOOTSTRAP answers. Zero: derived from ServerNames[0] and the
	// listener's port.
	PublicURL string

	// STUNURLs are the STUN servers named in CREDENTIALS answers. Zero:
	// "stun:HOST:PORT" for the primary STUN socket, with HOST the first of
	// ServerNames (or its address).
	STUNURLs []string

	// RelaySecret is the secret shared with the TURN relays (coturn's
	// static-auth-secret), for coturn-REST credentials. Zero: no relay
	// credentials are issued (CREDENTIALS carries only STUN URLs).
	RelaySecret string

	// RelayURLs are the TURN URIs handed out with credentials, such as
	// "turn:relay.example.com:3478?transport=udp" or
	// "turns:relay.example.com:443?transport=tcp".
	RelayURLs []string

	// CredentialTTL is how long credentials stay valid. Zero means 10
	// minutes; at most MaxCredentialTTL (24h), the default maximum the
	// relay accepts too (ferry-relay refuses a REST username whose expiry
	// is further out than its own maximum, so keep that at least this);
	// negative is invalid.
	CredentialTTL time.Duration

	// IPCredentialRate and IPCredentialBurst limit CREDENTIALS_REQUESTs
	// per second from one source IP (one /64 for IPv6), across all its
	// peers, since each answer is a relay username: one address minting
	// identities cannot mint relay credentials faster than this. A request
	// over the limit gets a non-fatal "rate limited" error with a retry
	// hint. Zero means 2/s with a burst of 60; a negative rate means no
	// limit, a negative burst is invalid.
	IPCredentialRate  float64
	IPCredentialBurst int

	// IPLoginRate and IPLoginBurst limit LOGIN attempts per second from
	// one source IP (one /64 for IPv6); an attempt over the limit is
	// refused (fatal, with a retry hint) before its signature is checked.
	// Zero means 5/s with a burst of 50; a negative rate means no limit,
	// a negative burst is invalid.
	IPLoginRate  float64
	IPLoginBurst int

	// AllowPeer, when set, is asked for every LOGIN whose signature
	// verifies: false refuses it ("not allowed"), for an operator who runs
	// a closed network (ferry-rendezvous --allow-peer-file). It must be
	// fast and safe for concurrent use. Zero: any PeerID may log in.
	AllowPeer func(identity.PeerID) bool

	// AllowDHT, when set, decides which peers that log in with the "dht"
	// capability are listed in BOOTSTRAP answers (ferry-rendezvous
	// --dht-peer-file); the capability is self-declared, so without it
	// any peer can offer itself to others as a DHT seed. Zero: every peer
	// that declares it.
	AllowDHT func(identity.PeerID) bool

	// BootstrapSeeds are more DHT seed URLs (other rendezvous servers),
	// listed after this server's PublicURL in BOOTSTRAP answers.
	BootstrapSeeds []string

	// DHTIdentity, when set, makes the server a DHT server node with this
	// key (each replica its own; see README.md, "DHT server node"). Peers
	// reach it with DHT signaling messages.
	DHTIdentity *identity.Identity

	// DHTBootstrap are signaling URLs of other rendezvous servers whose
	// DHT nodes this one joins through, by logging in there with
	// DHTIdentity (ferry-rendezvous --dht-bootstrap). Needs DHTIdentity.
	DHTBootstrap []string

	// DHTSignalOptions are passed to those logins (a CA file, a dialer).
	DHTSignalOptions []signal.Option

	// BootstrapPeers caps the online DHT-capable peers listed in a
	// BOOTSTRAP answer. Zero means 16; negative means none. At most 64.
	BootstrapPeers int

	// MaxPayload is the largest frame payload accepted from a peer; a
	// WebSocket message may hold at most MaxPayload+19 bytes. Zero means
	// 64 KiB. At least 4 KiB, at most 1 MiB (so negative is invalid).
	MaxPayload int

	// LoginTimeout bounds the time from connection to LOGIN (and the HTTP
	// request headers before it). Zero means 10s; negative is invalid.
	LoginTimeout time.Duration

	// IdleTimeout closes a logged-in connection that sends nothing for
	// this long. Zero means 90s; negative is invalid.
	IdleTimeout time.Duration

	// ClockSkew bounds the difference between a LOGIN's time and the
	// server's clock. Zero means 5 minutes; negative is invalid.
	ClockSkew time.Duration

	// QueueSize bounds the frames queued for one peer; a message for a
	// peer whose queue is full is refused with "busy". Zero means 128;
	// negative is invalid.
	QueueSize int

	// QueueBytes bounds the bytes of routed messages queued for one peer
	// (written or not), so that a peer that stops reading holds this much
	// at most rather than QueueSize full-sized frames (8 MiB with the
	// defaults); a message over it is refused with "busy". The server's
	// own small frames may pass it (QueueSize bounds them). Zero means
	// 1 MiB; at least MaxPayload plus the frame overhead, so that one
	// message always fits; negative is invalid.
	QueueBytes int

	// WriteTimeout closes a connection whose peer takes longer than this
	// to accept a write. Zero means 10s; negative is invalid.
	WriteTimeout time.Duration

	// PeerRate and PeerBurst limit the frames per second one logged-in
	// peer may send (token bucket). Zero means 50/s with a burst of 200;
	// a negative PeerRate means no limit, a negative PeerBurst is invalid.
	PeerRate  float64
	PeerBurst int

	// IPConnectRate and IPConnectBurst limit new signaling connections per
	// second from one source IP (one /64 for IPv6). Zero means 20/s with a
	// burst of 100; a negative rate means no limit, a negative burst is
	// invalid.
	IPConnectRate  float64
	IPConnectBurst int

	// MaxConnsPerIP caps open signaling connections from one source IP
	// (one /64 for IPv6). Zero means 1000; negative means no cap.
	MaxConnsPerIP int

	// MaxConns caps open signaling connections. Zero means 200000;
	// negative means no cap.
	MaxConns int

	// TrustedProxies are the addresses of proxies in front of the
	// signaling listeners (a load balancer or ingress that terminates
	// TLS). A request from one of them is attributed to the client its
	// X-Forwarded-For header names: the rightmost address in it that is
	// not itself a trusted proxy. Per-IP limits and logs use that address.
	// Empty: X-Forwarded-For is ignored, and every request is its TCP
	// peer's, since anybody can write the header.
	TrustedProxies []netip.Prefix

	// Redis, when set, holds the registry of which replica each peer is
	// logged in at, and carries messages between replicas (pub/sub), so
	// several replicas share one namespace of peers. The caller owns the
	// client. Zero: the registry is this process's memory.
	Redis redis.UniversalClient

	// RegistryTTL is how long a Redis registry entry outlives its
	// replica: entries are refreshed every third of it while the peer is
	// connected, so the peers of a replica that dies are gone within it.
	// Zero means 30s; at least 3s (so negative is invalid).
	RegistryTTL time.Duration

	// RedisPrefix starts every Redis key and channel name. Zero means
	// "ferry:rv:".
	RedisPrefix string

	// ReplicaID names this replica (in LOGGED_IN, logs and Redis). Zero: a
	// random name.
	ReplicaID string

	// ShutdownGrace bounds how long Close waits for the peers to leave
	// after their GOAWAY (Shutdown takes its bound from its context
	// instead). Zero means 5s; negative is invalid.
	ShutdownGrace time.Duration

	// ShutdownRetry is the reconnect hint in the GOAWAY sent at shutdown:
	// each peer is told to wait between it and twice it, so that they do
	// not all come back at once. Zero means 5s; negative is invalid.
	ShutdownRetry time.Duration

	// Logger receives the server's logs. Zero discards them.
	Logger *slog.Logger

	// Registerer, when set, receives the ferry_rendezvous_* metrics.
	// Close unregisters them.
	Registerer prometheus.Registerer

	// now is the clock; tests set it.
	now func() time.Time
	// stunTCPIdle replaces STUNTCPIdleTimeout; tests set it.
	stunTCPIdle time.Duration
}

// Validate reports whether c is usable, naming the first problem.
func (c *Config) Validate() error {
	if len(c.STUNConns) == 0 && c.Listener == nil && c.InsecureListener == nil {
		return fmt.Errorf("%w: nothing to serve: no STUN sockets and no signaling listener", ErrInvalidConfig)
	}
	if _, err := stunLayout(c.STUNConns, c.STUNExternalIPs); err != nil {
		return err
	}
	if c.STUNListener != nil && len(c.STUNConns) == 0 {
		return fmt.Errorf("%w: a STUN TCP listener without STUN sockets", ErrInvalidConfig)
	}
	for _, n := range c.ServerNames {
		if n == "" || len(n) > wire.MaxServerNameLen || strings.ContainsAny(n, ":/ ") && !isIPv6(n) {
			return fmt.Errorf("%w: server name %q: want a host name or IP address without port", ErrInvalidConfig, n)
		}
	}
	if len(c.DHTBootstrap) > 0 && c.DHTIdentity == nil {
		return fmt.Errorf("%w: DHT bootstrap URLs need a DHT identity", ErrInvalidConfig)
	}
	for _, u := range c.DHTBootstrap {
		if err := checkURL(u, "ws", "wss"); err != nil {
			return fmt.Errorf("%w: DHT bootstrap URL: %w", ErrInvalidConfig, err)
		}
	}
	if c.PublicURL != "" {
		if err := checkURL(c.PublicURL, "ws", "wss"); err != nil {
			return fmt.Errorf("%w: public URL: %w", ErrInvalidConfig, err)
		}
	}
	for _, u := range c.BootstrapSeeds {
		if err := checkURL(u, "ws", "wss"); err != nil {
			return fmt.Errorf("%w: bootstrap seed: %w", ErrInvalidConfig, err)
		}
	}
	if len(c.BootstrapSeeds)+1 > wire.MaxURLs {
		return fmt.Errorf("%w: at most %d bootstrap seeds", ErrInvalidConfig, wire.MaxURLs-1)
	}
	for _, u := range c.RelayURLs {
		if err := checkTURNURL(u); err != nil {
			return fmt.Errorf("%w: relay URL %q: %w", ErrInvalidConfig, u, err)
		}
	}
	for _, u := range c.STUNURLs {
		if !strings.HasPrefix(u, "stun:") && !strings.HasPrefix(u, "stuns:") || len(u) > wire.MaxURLLen {
			return fmt.Errorf("%w: STUN URL %q: want stun:HOST:PORT", ErrInvalidConfig, u)
		}
	}
	if len(c.RelayURLs) > wire.MaxURLs || len(c.STUNURLs) > wire.MaxURLs {
		return fmt.Errorf("%w: at most %d relay and %d STUN URLs", ErrInvalidConfig, wire.MaxURLs, wire.MaxURLs)
	}
	if len(c.RelayURLs) > 0 && c.RelaySecret == "" {
		return fmt.Errorf("%w: relay URLs need a relay secret to issue credentials for them", ErrInvalidConfig)
	}
	if c.BootstrapPeers > wire.MaxBootstrapPeers {
		return fmt.Errorf("%w: BootstrapPeers %d exceeds %d", ErrInvalidConfig, c.BootstrapPeers, wire.MaxBootstrapPeers)
	}
	if c.MaxPayload != 0 && (c.MaxPayload < wire.MinMaxPayload || c.MaxPayload > maxConfiguredMaxPayload) {
		return fmt.Errorf("%w: MaxPayload %d out of range %d-%d", ErrInvalidConfig, c.MaxPayload, wire.MinMaxPayload, maxConfiguredMaxPayload)
	}
	for name, d := range map[string]time.Duration{
		"CredentialTTL": c.CredentialTTL, "LoginTimeout": c.LoginTimeout, "IdleTimeout": c.IdleTimeout,
		"ClockSkew": c.ClockSkew, "WriteTimeout": c.WriteTimeout, "RegistryTTL": c.RegistryTTL,
		"ShutdownGrace": c.ShutdownGrace, "ShutdownRetry": c.ShutdownRetry,
	} {
		if d < 0 {
			return fmt.Errorf("%w: negative %s", ErrInvalidConfig, name)
		}
	}
	if c.CredentialTTL > MaxCredentialTTL {
		return fmt.Errorf("%w: CredentialTTL %v exceeds %v: relay credentials should be short-lived", ErrInvalidConfig, c.CredentialTTL, MaxCredentialTTL)
	}
	if c.RegistryTTL != 0 && c.RegistryTTL < minRegistryTTL {
		return fmt.Errorf("%w: RegistryTTL %v is below %v", ErrInvalidConfig, c.RegistryTTL, minRegistryTTL)
	}
	if c.QueueBytes != 0 && c.QueueBytes < cmp.Or(c.MaxPayload, DefaultMaxPayload)+wire.Overhead {
		return fmt.Errorf("%w: QueueBytes %d is below MaxPayload plus the frame overhead (or negative)", ErrInvalidConfig, c.QueueBytes)
	}
	if c.QueueSize < 0 || c.PeerBurst < 0 || c.IPConnectBurst < 0 || c.IPLoginBurst < 0 || c.IPCredentialBurst < 0 || c.STUNBurst < 0 {
		return fmt.Errorf("%w: negative queue size or burst", ErrInvalidConfig)
	}
	if len(c.ReplicaID) > wire.MaxServerIDLen || strings.ContainsAny(c.ReplicaID, " \t\n{}") {
		return fmt.Errorf("%w: replica ID %q: at most %d bytes, no spaces or braces", ErrInvalidConfig, c.ReplicaID, wire.MaxServerIDLen)
	}
	if c.TLSConfig != nil && len(c.TLSConfig.Certificates) == 0 && c.TLSConfig.GetCertificate == nil && c.TLSConfig.GetConfigForClient == nil {
		return fmt.Errorf("%w: TLSConfig has no certificates", ErrInvalidConfig)
	}
	if c.TLSConfig != nil && len(c.serverNames()) == 0 {
		return fmt.Errorf("%w: with TLS, the server names logins are signed for are required: set ServerNames (--server-name), "+
			"PublicURL, or give TLSConfig a certificate that names them", ErrInvalidConfig)
	}
	return nil
}

// serverNames are the names logins may be signed for: ServerNames, or the
// host of PublicURL, or the names of TLSConfig's certificates.
func (c *Config) serverNames() []string {
	if len(c.ServerNames) > 0 {
		return c.ServerNames
	}
	if c.PublicURL != "" {
		return []string{hostOnly(c.PublicURL)}
	}
	if c.TLSConfig == nil {
		return nil
	}
	certs := c.TLSConfig.Certificates
	if len(certs) == 0 && c.TLSConfig.GetCertificate != nil {
		// Certificate files reloaded on change: the pair served to a
		// hello without SNI. ACME answers only for its names (none here).
		if crt, err := c.TLSConfig.GetCertificate(&tls.ClientHelloInfo{}); err == nil && crt != nil {
			certs = []tls.Certificate{*crt}
		}
	}
	var names []string
	for _, crt := range certs {
		leaf := crt.Leaf
		if leaf == nil && len(crt.Certificate) > 0 {
			var err error
			if leaf, err = x509.ParseCertificate(crt.Certificate[0]); err != nil {
				continue
			}
		}
		if leaf == nil {
			continue
		}
		names = append(names, leaf.DNSNames...)
		for _, ip := range leaf.IPAddresses {
			names = append(names, ip.String())
		}
	}
	return names
}

func isIPv6(s string) bool {
	a, err := netip.ParseAddr(s)
	return err == nil && a.Is6()
}

func checkURL(s string, schemes ...string) error {
	if len(s) > wire.MaxURLLen {
		return fmt.Errorf("%q is longer than %d bytes", s, wire.MaxURLLen)
	}
	u, err := url.Parse(s)
	if err != nil {
		return err
	}
	for _, sc := range schemes {
		if u.Scheme == sc && u.Host != "" {
			return nil
		}
	}
	return fmt.Errorf("%q: want %s://HOST[:PORT]/PATH", s, strings.Join(schemes, " or "))
}

// checkTURNURL checks the form turn[s]:HOST[:PORT][?transport=udp|tcp].
func checkTURNURL(s string) error {
	if len(s) > wire.MaxURLLen {
		return fmt.Errorf("longer than %d bytes", wire.MaxURLLen)
	}
	scheme, rest, ok := strings.Cut(s, ":")
	if !ok || (scheme != "turn" && scheme != "turns") {
		return fmt.Errorf("want turn:HOST:PORT?transport=udp|tcp or turns:HOST:PORT")
	}
	hostport, query, _ := strings.Cut(rest, "?")
	if hostport == "" || strings.HasPrefix(hostport, "//") {
		return fmt.Errorf("missing host (no // after the scheme)")
	}
	if query != "" {
		q, err := url.ParseQuery(query)
		if err != nil {
			return err
		}
		if tr := q.Get("transport"); tr != "udp" && tr != "tcp" || len(q) != 1 {
			return fmt.Errorf("the only query parameter is transport=udp or transport=tcp")
		}
	}
	return nil
}

// settings are Config with the defaults applied.
type settings struct {
	Config
	maxPayload  int
	bootPeers   int
	names       []string // what logins may be signed for; none: any
	replicaID   string
	redisPrefix string
}

func (c *Config) withDefaults() settings {
	s := settings{Config: *c}
	s.CredentialTTL = cmp.Or(s.CredentialTTL, DefaultCredentialTTL)
	s.LoginTimeout = cmp.Or(s.LoginTimeout, DefaultLoginTimeout)
	s.IdleTimeout = cmp.Or(s.IdleTimeout, DefaultIdleTimeout)
	s.ClockSkew = cmp.Or(s.ClockSkew, DefaultClockSkew)
	s.WriteTimeout = cmp.Or(s.WriteTimeout, DefaultWriteTimeout)
	s.RegistryTTL = cmp.Or(s.RegistryTTL, DefaultRegistryTTL)
	s.ShutdownGrace = cmp.Or(s.ShutdownGrace, DefaultShutdownGrace)
	s.ShutdownRetry = cmp.Or(s.ShutdownRetry, DefaultShutdownRetry)
	s.maxPayload = cmp.Or(c.MaxPayload, DefaultMaxPayload)
	s.QueueSize = cmp.Or(s.QueueSize, DefaultQueueSize)
	s.QueueBytes = cmp.Or(s.QueueBytes, DefaultQueueBytes)
	s.PeerRate = cmp.Or(s.PeerRate, DefaultPeerRate)
	s.PeerBurst = cmp.Or(s.PeerBurst, DefaultPeerBurst)
	s.IPConnectRate = cmp.Or(s.IPConnectRate, DefaultIPConnectRate)
	s.IPConnectBurst = cmp.Or(s.IPConnectBurst, DefaultIPConnectBurst)
	s.STUNRate = cmp.Or(s.STUNRate, DefaultSTUNRate)
	s.STUNBurst = cmp.Or(s.STUNBurst, DefaultSTUNBurst)
	s.STUNTCPConns = cmp.Or(s.STUNTCPConns, DefaultSTUNTCPConns)
	s.STUNTCPConnsPerIP = cmp.Or(s.STUNTCPConnsPerIP, DefaultSTUNTCPConnsPerIP)
	s.IPLoginRate = cmp.Or(s.IPLoginRate, DefaultIPLoginRate)
	s.IPLoginBurst = cmp.Or(s.IPLoginBurst, DefaultIPLoginBurst)
	s.IPCredentialRate = cmp.Or(s.IPCredentialRate, DefaultIPCredentialRate)
	s.IPCredentialBurst = cmp.Or(s.IPCredentialBurst, DefaultIPCredentialBurst)
	s.MaxConnsPerIP = cmp.Or(s.MaxConnsPerIP, DefaultMaxConnsPerIP)
	s.MaxConns = cmp.Or(s.MaxConns, DefaultMaxConns)
	s.bootPeers = c.BootstrapPeers
	switch {
	case s.bootPeers == 0:
		s.bootPeers = DefaultBootstrapPeers
	case s.bootPeers < 0:
		s.bootPeers = 0
	}
	s.redisPrefix = cmp.Or(c.RedisPrefix, "ferry:rv:")
	s.names = c.serverNames()
	s.replicaID = c.ReplicaID
	if s.now == nil {
		s.now = time.Now
	}
	if s.Logger == nil {
		s.Logger = slog.New(slog.DiscardHandler)
	}
	return s
}
