package benchproc

import (
	"context"
	"fmt"
	"net"
)

// FreePort returns a port on 127.0.0.1 that was free a moment ago for
// network "udp" or "tcp". Another process may take it before the caller
// uses it; the benchmarks accept that race on loopback.
func FreePort(ctx context.Context, network string) (int, error) {
	var lc net.ListenConfig
	switch network {
	case "udp":
		c, err := lc.ListenPacket(ctx, "udp4", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		defer c.Close()
		return c.LocalAddr().(*net.UDPAddr).Port, nil
	case "tcp":
		l, err := lc.Listen(ctx, "tcp4", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		defer l.Close()
		return l.Addr().(*net.TCPAddr).Port, nil
	default:
		return 0, fmt.Errorf("benchproc: FreePort: network %q is not udp or tcp", network)
	}
}
