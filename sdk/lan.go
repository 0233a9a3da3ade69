package sdk

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/ferrynet/ferry/sdk/internal/lan"
)

// lanMode is WithLAN's setting.
type lanMode int

const (
	lanAuto lanMode = iota // on when the node has no rendezvous server
	lanOn
	lanOff
)

// WithLAN turns discovery of peers on the local network (multicast DNS,
// service _ferry._udp) on or off. A node with it announces its PeerID, a
// signed proof of it and a UDP port to everyone on its links, and dials
// the peers it finds there directly, at their LAN address, before trying
// the rendezvous server.
//
// The default is on for a node with no rendezvous server (the LAN is then
// the only way to meet peers) and off for a node with one: announcing
// tells every device on the link that this PeerID is here, which lets a
// network watch it come and go, so a node that can meet its peers through
// a server opts in.
func WithLAN(on bool) NodeOption {
	return nodeOpt(func(c *config) {
		c.node.lan = lanOff
		if on {
			c.node.lan = lanOn
		}
	})
}

// lanEnabled reports whether the node runs LAN discovery.
func (nc *nodeConfig) lanEnabled() bool {
	return nc.lan == lanOn || (nc.lan == lanAuto && len(nc.rendezvous) == 0)
}

// LANPeer is a peer found on the local network.
type LANPeer struct {
	ID   PeerID
	Addr string // host:port of its session socket
	Seen time.Time
}

// LANPeers returns the peers found on the local network, sorted by PeerID
// (none when LAN discovery is off).
func (n *Node) LANPeers() []LANPeer {
	if n.lan == nil {
		return nil
	}
	var out []LANPeer
	for _, p := range n.lan.disc.Peers() {
		out = append(out, LANPeer{ID: p.ID, Addr: p.Addr.String(), Seen: p.Seen})
	}
	return out
}

// lanState is a node's LAN discovery and the socket its LAN sessions run
// on.
type lanState struct {
	pc   net.PacketConn
	tr   *quic.Transport
	ln   *quic.Listener
	disc *lan.Discovery
}

// startLAN opens the LAN session socket, accepts sessions on it and starts
// announcing it.
func (n *Node) startLAN(ctx context.Context) (err error) {
	pc, err := net.ListenUDP("udp4", &net.UDPAddr{})
	if err != nil {
		return fmt.Errorf("sdk: LAN socket: %w", err)
	}
	ls := &lanState{pc: pc, tr: &quic.Transport{Conn: pc}}
	defer func() {
		if err != nil {
			ls.close()
		}
	}()
	if ls.ln, err = ls.tr.Listen(n.serverTLS, quicConfig(&n.cfg)); err != nil {
		return fmt.Errorf("sdk: LAN listen: %w", err)
	}
	mc, err := lan.ListenMulticast(ctx)
	if err != nil {
		return err
	}
	ls.disc, err = lan.Start(lan.Config{ //nolint:contextcheck // discovery lives as long as the node, not New's ctx
		Identity: n.id,
		Port:     uint16(pc.LocalAddr().(*net.UDPAddr).Port), //nolint:gosec,forcetypeassert // a UDP port
		Conn:     mc,
		Logger:   n.log,
	})
	if err != nil {
		return err
	}
	n.lan = ls
	n.wg.Go(func() { n.serve(ls.ln, nil) }) //nolint:contextcheck // sessions live as long as the node
	return nil
}

func (ls *lanState) close() {
	if ls.disc != nil {
		_ = ls.disc.Close()
	}
	if ls.ln != nil {
		_ = ls.ln.Close()
	}
	_ = ls.tr.Close()
	_ = ls.pc.Close()
}

// stopLAN ends LAN discovery and the LAN socket, after the node's
// connections are closed.
func (n *Node) stopLAN() {
	if n.lan != nil {
		n.lan.close()
	}
}

// errNoRendezvous is why a peer not on the LAN cannot be dialed by a node
// with no rendezvous server.
var errNoRendezvous = errors.New("not found on the LAN, and the node has no rendezvous server")

// lanGrace is how long a node with no rendezvous server waits for a peer
// it dials to be announced on the LAN: a node that has just started has
// not heard every announcement yet.
const lanGrace = 5 * time.Second

// lanLookup returns peer's LAN address, waiting for it up to lanGrace
// when the node has no rendezvous server to fall back on.
func (n *Node) lanLookup(ctx context.Context, peer PeerID) (netip.AddrPort, bool) {
	addr, ok := n.lan.disc.Lookup(peer)
	if ok || n.rv != nil {
		return addr, ok
	}
	grace := time.NewTimer(lanGrace)
	defer grace.Stop()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return addr, false
		case <-grace.C:
			return addr, false
		case <-tick.C:
			if addr, ok = n.lan.disc.Lookup(peer); ok {
				return addr, true
			}
		}
	}
}

// dialAny dials peer at its LAN address when one is known, then, if that
// fails or none is, through the rendezvous server.
func (n *Node) dialAny(ctx context.Context, cfg *config, peer PeerID) (*session, error) {
	if n.lan != nil {
		if addr, ok := n.lanLookup(ctx, peer); ok {
			start := time.Now()
			s, err := n.dialSession(ctx, cfg, n.lan.tr, net.UDPAddrFromAddrPort(addr), peer, &path{})
			if err == nil {
				s.path.took = time.Since(start)
				return s, nil
			}
			if ctx.Err() != nil {
				return nil, err
			}
			n.lan.disc.Forget(peer) // back when it announces again
			n.log.Info("LAN dial failed", "peer", peer.Short(), "addr", addr, "err", err)
			if n.rv == nil {
				return nil, err
			}
		}
	}
	if n.rv == nil {
		return nil, fmt.Errorf("%w: %w", ErrPeerNotFound, errNoRendezvous)
	}
	return n.dialRendezvous(ctx, cfg, peer)
}
