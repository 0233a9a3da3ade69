package rvbench

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/stun/v4"

	"github.com/ferrynet/ferry/internal/benchproc"
	"github.com/ferrynet/ferry/internal/stunclient"
)

// STUNLoad drives a STUN server with Binding requests in a closed loop:
// Clients sockets, each keeping Window requests in flight; every answer
// sends the next request. Lost requests are re-sent after a timeout.
type STUNLoad struct {
	Server  netip.AddrPort
	Clients int // zero means 4
	Window  int // zero means 16
}

// STUNResult is one measured run.
type STUNResult struct {
	Responses int64
	Elapsed   time.Duration
	CPU       time.Duration // the server's CPU time during the run; 0 if not measured
}

// PerSecond returns the answers per second.
func (r STUNResult) PerSecond() float64 { return float64(r.Responses) / r.Elapsed.Seconds() }

// CPUPerResponse returns the server CPU time per answer.
func (r STUNResult) CPUPerResponse() time.Duration {
	if r.Responses == 0 {
		return 0
	}
	return r.CPU / time.Duration(r.Responses)
}

// Run sends requests until ctx ends or, when n > 0, n answers arrived. pid
// (when not 0) is the server process whose CPU time is measured.
func (l STUNLoad) Run(ctx context.Context, pid int, n int64) (STUNResult, error) {
	clients, window := l.Clients, l.Window
	if clients == 0 {
		clients = 4
	}
	if window == 0 {
		window = 16
	}
	conns := make([]*net.UDPConn, clients)
	for i := range conns {
		c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			for _, c := range conns[:i] {
				c.Close()
			}
			return STUNResult{}, err
		}
		conns[i] = c
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var count atomic.Int64
	var cpu0 time.Duration
	if pid != 0 {
		var err error
		if cpu0, err = benchproc.CPU(pid); err != nil {
			return STUNResult{}, err
		}
	}
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for _, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer c.Close()
			if err := l.loop(ctx, c, window, &count, n, cancel); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	res := STUNResult{Responses: count.Load(), Elapsed: elapsed}
	if pid != 0 {
		cpu1, err := benchproc.CPU(pid)
		if err != nil {
			return res, err
		}
		res.CPU = cpu1 - cpu0
	}
	close(errs)
	return res, <-errs
}

func (l STUNLoad) loop(ctx context.Context, c *net.UDPConn, window int, count *atomic.Int64, n int64, done func()) error {
	req, err := stun.Build(stun.TransactionID, stun.BindingRequest, stun.Fingerprint)
	if err != nil {
		return err
	}
	raw := append([]byte(nil), req.Raw...)
	send := func() error {
		_, err := c.WriteToUDPAddrPort(raw, l.Server)
		return err
	}
	for range window {
		if err := send(); err != nil {
			return err
		}
	}
	buf := make([]byte, 1500)
	stop := context.AfterFunc(ctx, func() { _ = c.SetReadDeadline(time.Now()) })
	defer stop()
	for ctx.Err() == nil {
		_ = c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		k, err := c.Read(buf)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				if ctx.Err() != nil {
					return nil
				}
				for range window { // lost: refill the window
					if serr := send(); serr != nil {
						return serr
					}
				}
				continue
			}
			return err
		}
		if k < 20 || buf[0] != 0x01 || buf[1] != 0x01 { // Binding success
			continue
		}
		if v := count.Add(1); n > 0 && v >= n {
			done()
			return nil
		}
		if err := send(); err != nil {
			return err
		}
	}
	return nil
}

// WaitSTUN waits until a STUN server answers at addr (see stunclient.Poll).
func WaitSTUN(ctx context.Context, addr netip.AddrPort) error {
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return err
	}
	defer c.Close()
	return stunclient.Poll(ctx, c, addr, 100*time.Millisecond)
}
