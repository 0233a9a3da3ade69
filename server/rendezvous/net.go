package rendezvous

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
)

// ListenSTUN opens the STUN sockets for Config.STUNConns: one socket on addr
// ("IP:PORT" or ":PORT"), or, when alt ("IP2:PORT2") is not empty, the four
// sockets of RFC 5780 behaviour discovery (IP:PORT, IP:PORT2, IP2:PORT,
// IP2:PORT2). Both addresses then need specific IPs. On error nothing stays
// open.
func ListenSTUN(ctx context.Context, addr, alt string) (conns []net.PacketConn, err error) {
	defer func() {
		if err != nil {
			for _, c := range conns {
				c.Close()
			}
			conns = nil
		}
	}()
	var lc net.ListenConfig
	listen := func(a string) error {
		c, lerr := lc.ListenPacket(ctx, "udp", a)
		if lerr != nil {
			return fmt.Errorf("rendezvous: STUN listen %s: %w", a, lerr)
		}
		conns = append(conns, c)
		return nil
	}
	if alt == "" {
		return conns, listen(addr)
	}
	p1, err := netip.ParseAddrPort(addr)
	if err != nil {
		return nil, fmt.Errorf("%w: STUN address %q: RFC 5780 needs IP:PORT with a specific IP: %w", ErrInvalidConfig, addr, err)
	}
	p2, err := netip.ParseAddrPort(alt)
	if err != nil {
		return nil, fmt.Errorf("%w: STUN alternate address %q: want IP2:PORT2: %w", ErrInvalidConfig, alt, err)
	}
	if p1.Addr() == p2.Addr() || p1.Port() == p2.Port() || p1.Addr().IsUnspecified() || p2.Addr().IsUnspecified() {
		return nil, fmt.Errorf("%w: RFC 5780 needs two different specific IPs and two different ports, got %v and %v", ErrInvalidConfig, p1, p2)
	}
	for _, ip := range []netip.Addr{p1.Addr(), p2.Addr()} {
		for _, port := range []uint16{p1.Port(), p2.Port()} {
			if err := listen(netip.AddrPortFrom(ip, port).String()); err != nil {
				return conns, err
			}
		}
	}
	return conns, nil
}

// ListenSTUNTCP opens the TCP listener for Config.STUNListener on addr
// ("IP:PORT" or ":PORT"), normally the primary STUN socket's address: a
// STUN port number is the same for UDP and TCP (RFC 8489 section 6.2.2).
func ListenSTUNTCP(ctx context.Context, addr string) (net.Listener, error) {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("rendezvous: STUN TCP listen %s: %w", addr, err)
	}
	return ln, nil
}

// Listen opens the TCP listener for Config.Listener (the signaling HTTPS
// server), for example on ":443".
func Listen(ctx context.Context, addr string) (net.Listener, error) {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("rendezvous: listen %s: %w", addr, err)
	}
	return ln, nil
}

// clientAddr returns the address a request is attributed to: its TCP
// peer's, or, when that peer is a trusted proxy, the rightmost address in
// X-Forwarded-For that is not a trusted proxy. A header that is malformed,
// or names only trusted proxies, leaves the request with its TCP peer's
// address. It returns the address as a string for logs, too.
func clientAddr(remoteAddr string, forwarded []string, trusted []netip.Prefix) (netip.Addr, string, error) {
	ap, err := netip.ParseAddrPort(remoteAddr)
	if err != nil {
		return netip.Addr{}, "", err
	}
	peer := ap.Addr().Unmap()
	if !inPrefixes(peer, trusted) || len(forwarded) == 0 {
		return peer, remoteAddr, nil
	}
	// Several headers are one list, in order.
	var hops []string
	for _, h := range forwarded {
		for hop := range strings.SplitSeq(h, ",") {
			hops = append(hops, strings.TrimSpace(hop))
		}
	}
	for i := len(hops) - 1; i >= 0; i-- {
		ip, ok := parseHop(hops[i])
		if !ok {
			break // a hop we cannot read: nothing left of it can be trusted
		}
		if !inPrefixes(ip, trusted) {
			return ip, ip.String() + " (via " + remoteAddr + ")", nil
		}
	}
	return peer, remoteAddr, nil
}

// parseHop reads one X-Forwarded-For entry: an IP address, or IP:PORT
// ("198.51.100.1:5555", "[2001:db8::1]:5555"), or a bracketed IPv6 address,
// as proxies variously write them. An address with a zone is not a client's.
func parseHop(s string) (netip.Addr, bool) {
	ip, err := netip.ParseAddr(s)
	if err != nil {
		if ap, aerr := netip.ParseAddrPort(s); aerr == nil {
			ip, err = ap.Addr(), nil
		} else if inner, ok := strings.CutPrefix(s, "["); ok && strings.HasSuffix(inner, "]") {
			ip, err = netip.ParseAddr(strings.TrimSuffix(inner, "]"))
		}
	}
	if err != nil || ip.Zone() != "" {
		return netip.Addr{}, false
	}
	return ip.Unmap(), true
}

func inPrefixes(ip netip.Addr, ps []netip.Prefix) bool {
	for _, p := range ps {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// hostPort joins a host (possibly an IPv6 literal) and a port.
func hostPort(host string, port int) string {
	return net.JoinHostPort(host, strconv.Itoa(port))
}

var errNoPort = errors.New("no port")

func listenerPort(ln net.Listener) (int, error) {
	if ln == nil {
		return 0, errNoPort
	}
	if ta, ok := ln.Addr().(*net.TCPAddr); ok {
		return ta.Port, nil
	}
	return 0, errNoPort
}
