package natlab

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"time"

	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
	"golang.org/x/sync/errgroup"
)

// waitReady pings the server's two addresses from every host until each
// answers. Besides proving the paths, this resolves ARP through fresh
// delay stages, whose first ARP can otherwise cost a 1 s retry in the
// middle of a test.
func (l *Lab) waitReady(ctx context.Context, hosts []*Host) error {
	ctx, cancel := context.WithTimeout(ctx, l.cfg.ReadyTimeout)
	defer cancel()
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(8)
	for _, h := range hosts {
		g.Go(func() error {
			for _, dst := range []netip.Addr{ServerAddr, ServerAltAddr} {
				if err := h.Ping(gctx, dst); err != nil {
					return fmt.Errorf("natlab: lab not ready: %w", err)
				}
			}
			return nil
		})
	}
	return g.Wait()
}

// Ping sends ICMP echo requests from the host to dst every 100 ms until one
// is answered or ctx ends.
func (h *Host) Ping(ctx context.Context, dst netip.Addr) error {
	var c *icmp.PacketConn
	err := h.Do(func() error {
		var err error
		c, err = icmp.ListenPacket("ip4:icmp", "0.0.0.0")
		return err
	})
	if err != nil {
		return fmt.Errorf("%s: icmp socket: %w", h.name, err)
	}
	defer c.Close()
	id := rand.IntN(0xffff)
	to := &net.IPAddr{IP: dst.AsSlice()}
	buf := make([]byte, 1500)
	for seq := 1; ; seq++ {
		msg := icmp.Message{Type: ipv4.ICMPTypeEcho, Body: &icmp.Echo{ID: id, Seq: seq, Data: []byte("natlab")}}
		wb, err := msg.Marshal(nil)
		if err != nil {
			return err
		}
		if _, err := c.WriteTo(wb, to); err != nil {
			// Transient (e.g. ARP not resolved yet): retry below.
			_ = err
		}
		until := time.Now().Add(100 * time.Millisecond)
		for {
			if err := ctx.Err(); err != nil {
				return fmt.Errorf("%s: no answer from %s: %w", h.name, dst, err)
			}
			_ = c.SetReadDeadline(until)
			n, from, err := c.ReadFrom(buf)
			if err != nil {
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					break
				}
				return fmt.Errorf("%s: ping %s: %w", h.name, dst, err)
			}
			rm, err := icmp.ParseMessage(1, buf[:n])
			if err != nil || rm.Type != ipv4.ICMPTypeEchoReply {
				continue
			}
			if e, ok := rm.Body.(*icmp.Echo); ok && e.ID == id && from.String() == dst.String() {
				return nil
			}
		}
	}
}
