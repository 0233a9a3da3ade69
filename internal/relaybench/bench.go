// Package relaybench drives TURN relays with a Go TURN client (pion/turn) and
// measures them, for `make bench-relay` and the relay's Go benchmarks.
//
// Load: N allocations, each keeping a window of W datagrams of a fixed size
// in flight to an in-process UDP echo peer through its relay (ChannelData once
// the channel is bound), as a closed loop: every echo that returns sends the
// next datagram. Reported: relayed round trips per second, round-trip time
// percentiles, and the relay process's CPU time (utime+stime from
// /proc/<pid>/stat) per round trip. A relayed round trip is four datagrams
// through the relay: client to relay to peer, and back.
package relaybench

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/logging"
	"github.com/pion/turn/v5"

	"github.com/ferrynet/ferry/internal/benchproc"
	"github.com/ferrynet/ferry/server/relay"
)

// Config describes one load run.
type Config struct {
	Server      string // host:port of the relay's UDP listener
	Realm       string
	Secret      string // TURN REST shared secret
	Allocations int    // concurrent allocations; zero means 32
	Window      int    // datagrams in flight per allocation; zero means 8
	Payload     int    // bytes per datagram; zero means 1000
	PID         int    // the relay process, for CPU time; zero skips it
}

func (c *Config) defaults() {
	if c.Allocations == 0 {
		c.Allocations = 32
	}
	if c.Window == 0 {
		c.Window = 8
	}
	if c.Payload < 16 {
		c.Payload = 1000
	}
}

// Result is one measured round.
type Result struct {
	RoundTrips int64
	Elapsed    time.Duration
	CPU        time.Duration // relay process CPU (user+system) during the round
	P50, P99   time.Duration
}

// RoundTripsPerSec is the relayed round-trip rate.
func (r Result) RoundTripsPerSec() float64 { return float64(r.RoundTrips) / r.Elapsed.Seconds() }

// CPUPerRoundTrip is the relay's CPU time per relayed round trip.
func (r Result) CPUPerRoundTrip() time.Duration {
	if r.RoundTrips == 0 {
		return 0
	}
	return r.CPU / time.Duration(r.RoundTrips)
}

func (r Result) String() string {
	return fmt.Sprintf("%9.0f rt/s  p50 %6.0f us  p99 %6.0f us  cpu %6.2f us/rt  (%d rt in %v)",
		r.RoundTripsPerSec(), us(r.P50), us(r.P99), us(r.CPUPerRoundTrip()), r.RoundTrips, r.Elapsed.Round(time.Millisecond))
}

func us(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

// Load is a set of live allocations ready to be measured.
type Load struct {
	cfg       Config
	completed atomic.Int64
	echo      net.PacketConn
	echoWG    sync.WaitGroup
	allocs    []*allocation
}

type allocation struct {
	client *turn.Client
	conn   net.PacketConn
	relay  net.PacketConn
}

type quiet struct{}

func (quiet) NewLogger(string) logging.LeveledLogger {
	lf := logging.NewDefaultLoggerFactory()
	lf.DefaultLogLevel = logging.LogLevelDisabled
	return lf.NewLogger("bench")
}

// Prepare starts the echo peer and makes the allocations, binding each one's
// channel to the peer.
func Prepare(ctx context.Context, cfg Config) (_ *Load, err error) {
	cfg.defaults()
	l := &Load{cfg: cfg}
	defer func() {
		if err != nil {
			l.Close()
		}
	}()
	var lc net.ListenConfig
	l.echo, err = lc.ListenPacket(ctx, "udp4", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	if uc, ok := l.echo.(*net.UDPConn); ok {
		_ = uc.SetReadBuffer(4 << 20)
		_ = uc.SetWriteBuffer(4 << 20)
	}
	l.echoWG.Go(func() {
		buf := make([]byte, 65536)
		for {
			n, from, err := l.echo.ReadFrom(buf)
			if err != nil {
				return
			}
			_, _ = l.echo.WriteTo(buf[:n], from)
		}
	})
	for i := range cfg.Allocations {
		a, err := allocate(ctx, cfg, i)
		if err != nil {
			return nil, fmt.Errorf("allocation %d: %w", i, err)
		}
		l.allocs = append(l.allocs, a)
	}
	// Bind every channel: pion binds on the first write, in the background,
	// and sends Send indications meanwhile.
	for _, a := range l.allocs {
		if err := warm(a, l.echo.LocalAddr()); err != nil {
			return nil, err
		}
	}
	return l, nil
}

func allocate(ctx context.Context, cfg Config, i int) (*allocation, error) {
	var lc net.ListenConfig
	conn, err := lc.ListenPacket(ctx, "udp4", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	if uc, ok := conn.(*net.UDPConn); ok {
		_ = uc.SetReadBuffer(1 << 20)
	}
	exp := strconv.FormatInt(time.Now().Add(2*time.Hour).Unix(), 10)
	user := exp + ":bench" + strconv.Itoa(i)
	client, err := turn.NewClient(&turn.ClientConfig{
		TURNServerAddr: cfg.Server,
		Username:       user,
		Password:       relay.RESTPassword(cfg.Secret, user),
		Realm:          cfg.Realm,
		Conn:           conn,
		LoggerFactory:  quiet{},
	})
	if err != nil {
		_ = conn.Close()
		return nil, err
	}
	if err = client.Listen(); err != nil {
		client.Close()
		_ = conn.Close()
		return nil, err
	}
	relay, err := client.AllocateWithContext(ctx)
	if err != nil {
		client.Close()
		_ = conn.Close()
		return nil, err
	}
	return &allocation{client: client, conn: conn, relay: relay}, nil
}

type channelFinder interface {
	FindChannelNumberByAddr(net.Addr) (uint16, bool)
	IsChannelActive(uint16) bool
}

func warm(a *allocation, peer net.Addr) error {
	buf := make([]byte, 2048)
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if _, err := a.relay.WriteTo([]byte("warm"), peer); err != nil {
			return err
		}
		_ = a.relay.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		_, _, err := a.relay.ReadFrom(buf)
		if err == nil {
			if cf, ok := a.relay.(channelFinder); ok {
				if n, ok := cf.FindChannelNumberByAddr(peer); ok && cf.IsChannelActive(n) {
					_ = a.relay.SetReadDeadline(time.Time{})
					return nil
				}
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	return errors.New("bench: channel did not bind")
}

// Run measures one round of d: round trips completed within d, and the
// relay's CPU time over exactly that interval.
func (l *Load) Run(ctx context.Context, d time.Duration) (Result, error) {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	peer := l.echo.LocalAddr()
	total := &l.completed
	total.Store(0)
	rtts := make([][]time.Duration, len(l.allocs))
	var wg sync.WaitGroup
	cpu0, err := benchproc.CPU(l.cfg.PID)
	if err != nil {
		return Result{}, err
	}
	start := time.Now()
	type end struct {
		at    time.Time
		cpu   time.Duration
		count int64
		err   error
	}
	ended := make(chan end, 1)
	stop := context.AfterFunc(ctx, func() {
		e := end{at: time.Now(), count: total.Load()}
		e.cpu, e.err = benchproc.CPU(l.cfg.PID)
		ended <- e
	})
	defer stop()
	for i, a := range l.allocs {
		wg.Go(func() {
			rtts[i] = a.loop(ctx, peer, l.cfg.Window, l.cfg.Payload, total)
		})
	}
	wg.Wait()
	e := <-ended
	if e.err != nil {
		return Result{}, e.err
	}
	var all []time.Duration
	for _, r := range rtts {
		all = append(all, r...)
	}
	slices.Sort(all)
	res := Result{RoundTrips: e.count, Elapsed: e.at.Sub(start), CPU: e.cpu - cpu0}
	if len(all) > 0 {
		res.P50 = all[len(all)/2]
		res.P99 = all[len(all)*99/100]
	}
	return res, nil
}

// RunCount measures until n round trips have completed (at least one per
// allocation), for Go benchmarks.
func (l *Load) RunCount(ctx context.Context, n int64) (Result, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var res Result
	var err error
	done := make(chan struct{})
	go func() {
		defer close(done)
		res, err = l.Run(ctx, time.Hour)
	}()
	ticker := time.NewTicker(time.Millisecond)
	defer ticker.Stop()
	for {
		select {
		case <-done:
			return res, err
		case <-ticker.C:
			if l.completed.Load() >= n {
				cancel()
			}
		}
	}
}

// Drain reads away the datagrams still in flight after a round, so the next
// round starts clean.
func (l *Load) Drain() {
	buf := make([]byte, 2048)
	for _, a := range l.allocs {
		for {
			_ = a.relay.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
			if _, _, err := a.relay.ReadFrom(buf); err != nil {
				break
			}
		}
		_ = a.relay.SetReadDeadline(time.Time{})
	}
}

// loop keeps window datagrams in flight until ctx ends, and returns sampled
// round-trip times.
func (a *allocation) loop(ctx context.Context, peer net.Addr, window, size int, total *atomic.Int64) []time.Duration {
	out := make([]byte, size)
	in := make([]byte, 2048)
	var samples []time.Duration
	var seq uint64
	send := func() bool {
		seq++
		binary.BigEndian.PutUint64(out[0:8], seq)
		binary.BigEndian.PutUint64(out[8:16], uint64(time.Now().UnixNano())) //nolint:gosec // positive
		_, err := a.relay.WriteTo(out, peer)
		return err == nil
	}
	for range window {
		if !send() {
			return samples
		}
	}
	stop := context.AfterFunc(ctx, func() { _ = a.relay.SetReadDeadline(time.Now()) })
	defer stop()
	for ctx.Err() == nil {
		_ = a.relay.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
		n, _, err := a.relay.ReadFrom(in)
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			// A datagram was lost: put a new one in flight.
			if !send() {
				break
			}
			continue
		}
		if n >= 16 && ctx.Err() == nil {
			sent := int64(binary.BigEndian.Uint64(in[8:16])) //nolint:gosec // our own timestamp
			if total.Add(1)%7 == 0 {
				samples = append(samples, time.Duration(time.Now().UnixNano()-sent))
			}
		}
		if !send() {
			break
		}
	}
	_ = a.relay.SetReadDeadline(time.Time{})
	return samples
}

// Close ends the allocations and the echo peer.
func (l *Load) Close() {
	for _, a := range l.allocs {
		_ = a.relay.Close()
		a.client.Close()
		_ = a.conn.Close()
	}
	l.allocs = nil
	if l.echo != nil {
		_ = l.echo.Close()
		l.echoWG.Wait()
	}
}
