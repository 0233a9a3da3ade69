package natlab

import (
	"context"
	"fmt"
	"net"

	"github.com/pion/transport/v5"
	"github.com/pion/transport/v5/stdnet"
)

// Net returns a pion transport.Net whose sockets live in the host's
// namespace and whose interface list is the namespace's. Hand it to a pion
// ICE agent (ice.AgentConfig.Net) or TURN client, and the agent gathers and
// connects from inside the lab host.
//
// The interface list is read once, when Net is called.
func (h *Host) Net() (transport.Net, error) {
	var std *stdnet.Net
	err := h.Do(func() error {
		var err error
		std, err = stdnet.NewNet()
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("natlab: %s: %w", h.name, err)
	}
	return &nsNet{Net: std, h: h}, nil
}

// nsNet is stdnet.Net with every socket-creating call made inside the
// namespace. Resolution and interface queries use the embedded Net (its
// interface snapshot comes from the namespace).
type nsNet struct {
	*stdnet.Net
	h *Host
}

var _ transport.Net = (*nsNet)(nil)

func (n *nsNet) ListenPacket(network, address string) (net.PacketConn, error) {
	return n.h.ListenPacket(context.Background(), network, address)
}

func (n *nsNet) ListenUDP(network string, laddr *net.UDPAddr) (transport.UDPConn, error) {
	c, err := n.h.ListenUDP(network, laddr)
	if err != nil {
		return nil, err
	}
	return c, nil
}

func (n *nsNet) ListenTCP(network string, laddr *net.TCPAddr) (transport.TCPListener, error) {
	var l transport.TCPListener
	err := n.h.Do(func() error {
		var err error
		l, err = n.Net.ListenTCP(network, laddr)
		return err
	})
	return l, err
}

func (n *nsNet) Dial(network, address string) (net.Conn, error) {
	return n.h.DialContext(context.Background(), network, address)
}

func (n *nsNet) DialUDP(network string, laddr, raddr *net.UDPAddr) (transport.UDPConn, error) {
	var c transport.UDPConn
	err := n.h.Do(func() error {
		var err error
		c, err = n.Net.DialUDP(network, laddr, raddr)
		return err
	})
	return c, err
}

func (n *nsNet) DialTCP(network string, laddr, raddr *net.TCPAddr) (transport.TCPConn, error) {
	var c transport.TCPConn
	err := n.h.Do(func() error {
		var err error
		c, err = n.Net.DialTCP(network, laddr, raddr)
		return err
	})
	return c, err
}

func (n *nsNet) CreateDialer(d *net.Dialer) transport.Dialer {
	return nsDialer{d: d, h: n.h}
}

func (n *nsNet) CreateListenConfig(lc *net.ListenConfig) transport.ListenConfig {
	return nsListenConfig{lc: lc, h: n.h}
}

type nsDialer struct {
	d *net.Dialer
	h *Host
}

func (d nsDialer) Dial(network, address string) (net.Conn, error) {
	var c net.Conn
	err := d.h.Do(func() error {
		var err error
		c, err = d.d.DialContext(context.Background(), network, address)
		return err
	})
	return c, err
}

type nsListenConfig struct {
	lc *net.ListenConfig
	h  *Host
}

func (l nsListenConfig) Listen(ctx context.Context, network, address string) (net.Listener, error) {
	var ln net.Listener
	err := l.h.Do(func() error {
		var err error
		ln, err = l.lc.Listen(ctx, network, address)
		return err
	})
	return ln, err
}

func (l nsListenConfig) ListenPacket(ctx context.Context, network, address string) (net.PacketConn, error) {
	var pc net.PacketConn
	err := l.h.Do(func() error {
		var err error
		pc, err = l.lc.ListenPacket(ctx, network, address)
		return err
	})
	return pc, err
}
