// Package natprobe finds out what a network's NAT allows, with the NAT
// behaviour discovery tests of RFC 5780 run against a STUN server that
// supports them (coturn, or Ferry's rendezvous server with two addresses):
// mapping and filtering behaviour (tests I-III of each), hairpinning, port
// preservation, ALG interference, optionally the mapping lifetime, and,
// when UDP is blocked, whether TURN servers are reachable over TCP or TLS.
//
// Probe takes its network in the Config (a ListenPacket and a Dial
// function), so the same code runs on a real machine (cmd/natprobe) and
// inside NAT lab hosts (internal/natlab), which is how its verdicts are
// proven. It never prints; cmd/natprobe renders the Result.
//
// The package is internal: its users are cmd/natprobe, the lab tests and,
// later, the SDK. The JSON form of Result is the stable public interface.
package natprobe

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"time"
)

// DefaultPort is the STUN port used when Config.Server has none.
const DefaultPort = 3478

// Config configures one probe. Server, ListenPacket and Dial are required;
// every other field has a documented zero-value default.
type Config struct {
	// Server is the STUN server, "host" or "host:port" (port 3478 when
	// absent). RFC 5780 tests need a server with two addresses; a server
	// without them gets basic mode.
	Server string

	// ListenPacket opens a UDP socket (net.ListenConfig.ListenPacket, or a
	// lab host's). The probe binds several, to the local address only.
	ListenPacket func(ctx context.Context, network, address string) (net.PacketConn, error)
	// Dial opens a connection (net.Dialer.DialContext, or a lab host's).
	// It is used for "udp" to learn which local address routes to the
	// server (nothing is sent), and for "tcp" to reach STUN and TURN over
	// TCP and TLS.
	Dial func(ctx context.Context, network, address string) (net.Conn, error)
	// LookupNetIP resolves host names; nil means net.DefaultResolver.
	LookupNetIP func(ctx context.Context, network, host string) ([]netip.Addr, error)

	// LocalAddr is the local IP to probe from. Invalid (the zero value)
	// means the address the system routes to the server from.
	LocalAddr netip.Addr

	// Gateway, if valid, is the router asked whether it speaks UPnP IGD,
	// NAT-PMP or PCP (harmless requests only: nothing is mapped). The
	// zero value skips the check, unless AutoGateway.
	Gateway netip.Addr
	// AutoGateway, when Gateway is not set, asks the next hop of the
	// route to the server (FindGateway; Linux), unless the server is on
	// loopback. cmd/natprobe sets it.
	AutoGateway bool

	// TURN lists TURN servers to check over TCP and TLS: "host[:port]"
	// (TCP on port, default 3478, and TLS on 5349), or RFC 7065 URIs
	// "turn:host[:port]?transport=tcp" and "turns:host[:port]".
	TURN []string
	// TLSConfig verifies TURN over TLS. nil means the system roots; the
	// ServerName is set from each URI's host when empty.
	TLSConfig *tls.Config

	// RTO is the initial retransmission timeout of a STUN transaction over
	// UDP (RFC 8489 section 6.2.1): a request is resent after RTO, then
	// after 2*RTO, 4*RTO... 0 means 500 ms.
	RTO time.Duration
	// Timeout bounds one transaction, retransmissions included. A test
	// that expects no answer (a filtering test on a filtering NAT) costs
	// this long, so the whole probe takes a little more than Timeout:
	// the tests run in parallel. 0 means 5 s (four transmissions at the
	// default RTO: a lost request at 10 % loss fails 1 time in 10,000).
	Timeout time.Duration

	// Lifetime, if positive, also estimates how long an idle mapping
	// lives, waiting at most Lifetime (idle periods of 1, 2, 4, 8... s up
	// to it, tested in parallel). It needs a server that supports
	// RESPONSE-PORT (RFC 5780 section 7.5).
	Lifetime time.Duration

	// Logger receives each test's details at debug level; nil discards.
	Logger *slog.Logger
}

// MaxLifetime bounds Config.Lifetime.
const MaxLifetime = 10 * time.Minute

// Validate checks the configuration.
func (c *Config) Validate() error {
	if c.Server == "" {
		return fmt.Errorf("%w: a STUN server is required", ErrConfig)
	}
	if _, _, err := splitHostPort(c.Server, DefaultPort); err != nil {
		return fmt.Errorf("%w: server %q: %w", ErrConfig, c.Server, err)
	}
	if c.ListenPacket == nil || c.Dial == nil {
		return fmt.Errorf("%w: ListenPacket and Dial are required (the network is passed in)", ErrConfig)
	}
	if c.RTO < 0 || c.Timeout < 0 {
		return fmt.Errorf("%w: negative RTO or Timeout", ErrConfig)
	}
	if c.RTO > 0 && c.Timeout > 0 && c.RTO > c.Timeout {
		return fmt.Errorf("%w: RTO %v exceeds Timeout %v", ErrConfig, c.RTO, c.Timeout)
	}
	if c.Lifetime < 0 || c.Lifetime > MaxLifetime {
		return fmt.Errorf("%w: lifetime %v out of range [0, %v]", ErrConfig, c.Lifetime, MaxLifetime)
	}
	if c.Lifetime > 0 && c.Lifetime < time.Second {
		return fmt.Errorf("%w: lifetime %v: the shortest idle period tested is 1s", ErrConfig, c.Lifetime)
	}
	for _, u := range c.TURN {
		if _, err := parseTURN(u); err != nil {
			return fmt.Errorf("%w: %w", ErrConfig, err)
		}
	}
	return nil
}

func (c *Config) rto() time.Duration {
	if c.RTO == 0 {
		return 500 * time.Millisecond
	}
	return c.RTO
}

func (c *Config) timeout() time.Duration {
	if c.Timeout == 0 {
		return 5 * time.Second
	}
	return c.Timeout
}

func (c *Config) logger() *slog.Logger {
	if c.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return c.Logger
}

func (c *Config) lookup(ctx context.Context, host string) ([]netip.Addr, error) {
	if ip, err := netip.ParseAddr(host); err == nil {
		return []netip.Addr{ip.Unmap()}, nil
	}
	if c.LookupNetIP != nil {
		return c.LookupNetIP(ctx, "ip", host)
	}
	return net.DefaultResolver.LookupNetIP(ctx, "ip", host)
}

// splitHostPort splits "host", "host:port", "[v6]" or "[v6]:port".
func splitHostPort(s string, defPort int) (string, int, error) {
	if ip, err := netip.ParseAddr(s); err == nil {
		return ip.String(), defPort, nil // a bare IPv6 literal has colons
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		// No port: a bare host or IPv6 literal.
		var ae *net.AddrError
		if !errors.As(err, &ae) || ae.Err != "missing port in address" {
			return "", 0, err
		}
		host = s
		if len(host) > 1 && host[0] == '[' && host[len(host)-1] == ']' {
			host = host[1 : len(host)-1]
		}
		port = strconv.Itoa(defPort)
	}
	if host == "" {
		return "", 0, errors.New("empty host")
	}
	p, err := strconv.Atoi(port)
	if err != nil || p < 1 || p > 65535 {
		return "", 0, fmt.Errorf("bad port %q", port)
	}
	return host, p, nil
}
