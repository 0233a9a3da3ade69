package relay

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// RelayNet opens the sockets allocations relay through. The server calls it
// with concrete local addresses from the relay IPs and port range.
type RelayNet interface {
	// ListenPacket opens a UDP relay socket ("udp4" or "udp6").
	ListenPacket(network string, laddr netip.AddrPort) (net.PacketConn, error)
	// ListenTCP opens an RFC 6062 relay listener ("tcp4" or "tcp6"). Its
	// port must also be usable as the source port of DialTCP (SO_REUSEPORT).
	ListenTCP(network string, laddr netip.AddrPort) (net.Listener, error)
	// DialTCP connects from laddr (a relay listener's address) to a peer.
	DialTCP(ctx context.Context, network string, laddr, raddr netip.AddrPort) (net.Conn, error)
}

// OSRelayNet is the operating system's network.
type OSRelayNet struct{}

// ListenPacket implements RelayNet.
func (OSRelayNet) ListenPacket(network string, laddr netip.AddrPort) (net.PacketConn, error) {
	return net.ListenUDP(network, net.UDPAddrFromAddrPort(laddr))
}

// ListenTCP implements RelayNet.
func (OSRelayNet) ListenTCP(network string, laddr netip.AddrPort) (net.Listener, error) {
	lc := net.ListenConfig{Control: reusePort}
	return lc.Listen(context.Background(), network, laddr.String())
}

// DialTCP implements RelayNet.
func (OSRelayNet) DialTCP(ctx context.Context, network string, laddr, raddr netip.AddrPort) (net.Conn, error) {
	d := net.Dialer{LocalAddr: net.TCPAddrFromAddrPort(laddr), Control: reusePort}
	return d.DialContext(ctx, network, raddr.String())
}

func reusePort(_, _ string, c syscall.RawConn) error {
	var serr error
	err := c.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEADDR, 1) //nolint:gosec // fd fits int
		if serr == nil {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1) //nolint:gosec // fd fits int
		}
	})
	return errors.Join(err, serr)
}

// ListenUDP opens n UDP sockets on addr that share the port through
// SO_REUSEPORT. The kernel hashes each client's address to one of them, so n
// read loops relay in parallel; a client always lands on the same socket while
// the set is unchanged. With port 0, the first socket picks the port and the
// rest join it. n <= 0 means one.
func ListenUDP(ctx context.Context, addr string, n int) ([]net.PacketConn, error) {
	if n <= 0 {
		n = 1
	}
	lc := net.ListenConfig{Control: reusePort}
	var conns []net.PacketConn
	for i := range n {
		a := addr
		if i > 0 {
			a = conns[0].LocalAddr().String()
		}
		pc, err := lc.ListenPacket(ctx, "udp", a)
		if err != nil {
			for _, c := range conns {
				_ = c.Close()
			}
			return nil, fmt.Errorf("relay: listen udp %s: %w", addr, err)
		}
		conns = append(conns, pc)
	}
	return conns, nil
}

// ListenTCP opens a TCP listener on addr, for TURN over TCP or TLS.
func ListenTCP(ctx context.Context, addr string) (net.Listener, error) {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("relay: listen tcp %s: %w", addr, err)
	}
	return ln, nil
}

// hostAddrs returns the first global unicast IPv4 and IPv6 address of the
// host's up interfaces.
func hostAddrs() (v4, v6 netip.Addr) {
	ifs, err := net.Interfaces()
	if err != nil {
		return
	}
	for _, ifc := range ifs {
		if ifc.Flags&net.FlagUp == 0 || ifc.Flags&net.FlagLoopback != 0 {
			continue
		}
		addrs, err := ifc.Addrs()
		if err != nil {
			continue
		}
		for _, a := range addrs {
			pfx, err := netip.ParsePrefix(a.String())
			if err != nil {
				continue
			}
			ip := pfx.Addr().Unmap()
			if !ip.IsGlobalUnicast() {
				continue
			}
			if ip.Is4() && !v4.IsValid() {
				v4 = ip
			}
			if ip.Is6() && !v6.IsValid() {
				v6 = ip
			}
		}
	}
	return
}

// selfRefresh is how often the relay re-reads the host's interface addresses
// for the ACL's own-address set (addresses come and go: DHCP, IPv6 privacy
// addresses, a VPN).
const selfRefresh = 30 * time.Second

// interfaceAddrs returns every address of every interface of the host.
func interfaceAddrs() []netip.Addr {
	as, err := net.InterfaceAddrs()
	if err != nil {
		return nil
	}
	out := make([]netip.Addr, 0, len(as))
	for _, a := range as {
		if p, perr := netip.ParsePrefix(a.String()); perr == nil {
			out = append(out, p.Addr())
		}
	}
	return out
}

// refreshSelf gives the ACL the relay's own addresses: relay, advertised and
// listener addresses, and every interface address of the host.
func (s *Server) refreshSelf() {
	s.selfAt.Store(time.Now().UnixNano())
	s.acl.SetSelf(append(slices.Clone(s.fixedSelf), interfaceAddrs()...))
}

// checkPeer is the ACL's verdict on ip, after refreshing the relay's own
// addresses when they are older than selfRefresh (one caller refreshes;
// the others use the set they find).
func (s *Server) checkPeer(ip netip.Addr) (bool, string) {
	if at := s.selfAt.Load(); time.Since(time.Unix(0, at)) > selfRefresh && s.selfAt.CompareAndSwap(at, time.Now().UnixNano()) {
		s.refreshSelf()
	}
	return s.acl.Check(ip)
}
