// Package demo runs Ferry's demonstration, `ferry demo`: a rendezvous
// server and a TURN relay with embedded defaults, two SDK nodes that find
// each other by PeerID, connect (directly when they can, through the relay
// when they must), exchange messages both ways and push a 10 MiB
// application stream, and a report of what they saw.
//
// By default everything runs on loopback and needs no privileges. With
// NAT types for each peer (root only), the peers sit behind real kernel
// NATs in the NAT lab, so one can watch, say, a symmetric NAT fall back to
// the relay.
package demo

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"time"

	"github.com/ferrynet/ferry/internal/natlab"
	"github.com/ferrynet/ferry/internal/natlab/labworld"
	"github.com/ferrynet/ferry/internal/nattype"
	"github.com/ferrynet/ferry/sdk"
	"github.com/ferrynet/ferry/server/relay"
	"github.com/ferrynet/ferry/server/rendezvous"
)

// Options tune the demo; the zero value runs the defaults on loopback.
type Options struct {
	// Messages is how many messages each side sends (default 1000).
	Messages int
	// StreamBytes is the size of the bulk stream (default 10 MiB).
	StreamBytes int
	// NATA and NATB, when set, put the peers behind NATs of these types
	// in the NAT lab (root only).
	NATA, NATB nattype.Type
	// Relay is the relay policy of both nodes (default auto).
	Relay sdk.RelayPolicy
	// Logger receives the servers' and nodes' logs (default: none).
	Logger *slog.Logger
}

// Report is what the demo measured.
type Report struct {
	PeerA string `json:"peer_a"`
	PeerB string `json:"peer_b"`
	NATA  string `json:"nat_a,omitempty"`
	NATB  string `json:"nat_b,omitempty"`
	PathReport
	RTTMs            float64 `json:"rtt_ms"`
	MessagesSent     int     `json:"messages_sent"`
	MessagesReceived int     `json:"messages_received"`
	StreamBytes      int64   `json:"stream_bytes"`
	StreamMBps       float64 `json:"stream_mbps"`
	StreamSHA256     string  `json:"stream_sha256"`
}

// Run runs the demo and returns its report, or the first thing that went
// wrong.
func Run(ctx context.Context, o Options) (rep Report, err error) {
	if o.Messages <= 0 {
		o.Messages = 1000
	}
	if o.StreamBytes <= 0 {
		o.StreamBytes = 10 << 20
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	var (
		na, nb *sdk.Node
		stop   func() error
	)
	if o.NATA != "" || o.NATB != "" {
		na, nb, stop, err = inLab(ctx, o)
		rep.NATA, rep.NATB = string(o.NATA), string(o.NATB)
	} else {
		na, nb, stop, err = onLoopback(ctx, o)
	}
	if err != nil {
		return rep, err
	}
	defer func() { err = errors.Join(err, stop()) }()
	rep.PeerA, rep.PeerB = na.PeerID().String(), nb.PeerID().String()

	accepted := make(chan *sdk.Conn, 1)
	acceptErr := make(chan error, 1)
	go func() {
		c, aerr := nb.Accept(ctx)
		if aerr != nil {
			acceptErr <- aerr
			return
		}
		accepted <- c
	}()
	ca, err := na.Dial(ctx, nb.PeerID())
	if err != nil {
		return rep, fmt.Errorf("dial: %w", err)
	}
	defer ca.Close()
	var cb *sdk.Conn
	select {
	case cb = <-accepted:
	case aerr := <-acceptErr:
		return rep, fmt.Errorf("accept: %w", aerr)
	}
	defer cb.Close()

	if rep.MessagesSent, rep.MessagesReceived, err = exchange(ctx, ca, cb, o.Messages); err != nil {
		return rep, err
	}
	if rep.StreamBytes, rep.StreamMBps, rep.StreamSHA256, err = stream(ctx, ca, cb, o.StreamBytes); err != nil {
		return rep, err
	}
	// Heartbeats measure the RTT; the first one goes out at connect.
	for ca.RTT() == 0 && ctx.Err() == nil {
		time.Sleep(5 * time.Millisecond)
	}
	rep.PathReport = NewPathReport(ca.Path())
	rep.RTTMs = ms(ca.RTT())
	return rep, ctx.Err()
}

const demoSecret = "ferry-demo-relay-secret"

// closers stops what was started, last first.
type closers []func() error

func (c *closers) add(f func() error) { *c = append(*c, f) }

func (c closers) close() error {
	var errs []error
	for i := len(c) - 1; i >= 0; i-- {
		errs = append(errs, c[i]())
	}
	return errors.Join(errs...)
}

// onLoopback starts a rendezvous server, a relay and two nodes on 127.0.0.1.
func onLoopback(ctx context.Context, o Options) (_, _ *sdk.Node, stop func() error, err error) {
	var started closers
	stop = func() error { return started.close() }
	defer func() {
		if err != nil {
			_ = stop()
		}
	}()
	var lc net.ListenConfig
	relayPC, err := lc.ListenPacket(ctx, "udp4", "127.0.0.1:0")
	if err != nil {
		return nil, nil, nil, err
	}
	relayAddr := relayPC.LocalAddr().String()
	relayTCP, err := lc.Listen(ctx, "tcp4", relayAddr)
	if err != nil {
		_ = relayPC.Close()
		return nil, nil, nil, err
	}
	rl, err := relay.New(relay.Config{ //nolint:contextcheck // the relay outlives this call; stop ends it
		PacketConns:  []net.PacketConn{relayPC},
		TCPListeners: []net.Listener{relayTCP},
		Realm:        "ferry.demo",
		AuthSecrets:  []string{demoSecret},
		RelayIPs:     []netip.Addr{netip.MustParseAddr("127.0.0.1")},
		// Both peers live on this host: let the relay reach loopback,
		// which it refuses by default.
		AllowPeers: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")},
		Logger:     o.Logger.With("server", "relay"),
	})
	if err != nil {
		return nil, nil, nil, fmt.Errorf("relay: %w", err)
	}
	started.add(rl.Close)
	ln, err := lc.Listen(ctx, "tcp4", "127.0.0.1:0")
	if err != nil {
		return nil, nil, nil, err
	}
	stunPC, err := lc.ListenPacket(ctx, "udp4", "127.0.0.1:0")
	if err != nil {
		_ = ln.Close()
		return nil, nil, nil, err
	}
	rv, err := rendezvous.New(rendezvous.Config{ //nolint:contextcheck // the server outlives this call; stop ends it
		Listener:    ln,
		STUNConns:   []net.PacketConn{stunPC},
		ServerNames: []string{"127.0.0.1"},
		RelaySecret: demoSecret,
		RelayURLs:   []string{"turn:" + relayAddr + "?transport=udp", "turn:" + relayAddr + "?transport=tcp"},
		Logger:      o.Logger.With("server", "rendezvous"),
	})
	if err != nil {
		_ = ln.Close()
		_ = stunPC.Close()
		return nil, nil, nil, fmt.Errorf("rendezvous: %w", err)
	}
	started.add(rv.Close)
	url := "ws://" + rv.Addr().String() + "/v1/signal"
	node := func() (*sdk.Node, error) {
		id, gerr := sdk.GenerateIdentity()
		if gerr != nil {
			return nil, gerr
		}
		return sdk.New(ctx, sdk.WithIdentity(id), sdk.WithRendezvous(url), sdk.WithRelayPolicy(o.Relay),
			sdk.WithLoopbackCandidates(), sdk.WithCandidateFilter(func(ip net.IP) bool { return ip.IsLoopback() }),
			sdk.WithLogger(o.Logger))
	}
	na, err := node()
	if err != nil {
		return nil, nil, nil, err
	}
	started.add(na.Close)
	nb, err := node()
	if err != nil {
		return nil, nil, nil, err
	}
	started.add(nb.Close)
	return na, nb, stop, nil
}

// inLab builds a NAT lab with one site per peer and runs the servers on
// its public server host.
func inLab(ctx context.Context, o Options) (_, _ *sdk.Node, stop func() error, err error) {
	if !o.NATA.Valid() || !o.NATB.Valid() {
		return nil, nil, nil, fmt.Errorf("both NAT types are needed, from %v", nattype.All())
	}
	if err = natlab.CheckPrerequisites(); err != nil {
		return nil, nil, nil, err
	}
	lab, err := natlab.New(ctx, natlab.Config{Sites: []natlab.SiteConfig{
		{Name: "a", NAT: o.NATA}, {Name: "b", NAT: o.NATB},
	}})
	if err != nil {
		return nil, nil, nil, err
	}
	started := closers{lab.Close}
	stop = func() error { return started.close() }
	defer func() {
		if err != nil {
			_ = stop()
		}
	}()
	w, err := labworld.New(ctx, lab, o.Logger)
	if err != nil {
		return nil, nil, nil, err
	}
	started.add(w.Close)
	na, err := w.Node(ctx, lab.Site("a").Host(0), sdk.WithRelayPolicy(o.Relay))
	if err != nil {
		return nil, nil, nil, err
	}
	started.add(na.Close)
	nb, err := w.Node(ctx, lab.Site("b").Host(0), sdk.WithRelayPolicy(o.Relay))
	if err != nil {
		return nil, nil, nil, err
	}
	started.add(nb.Close)
	return na, nb, stop, nil
}

// exchange sends n numbered messages each way and checks every one.
func exchange(ctx context.Context, ca, cb *sdk.Conn, n int) (sent, received int, err error) {
	errc := make(chan error, 2)
	recv := func(c *sdk.Conn, from string) {
		for i := range n {
			m, err := c.Recv(ctx)
			if err != nil {
				errc <- err
				return
			}
			if want := fmt.Sprintf("%s %d", from, i); string(m) != want {
				errc <- fmt.Errorf("got %q, want %q", m, want)
				return
			}
		}
		errc <- nil
	}
	go recv(cb, "a")
	go recv(ca, "b")
	for i := range n {
		if err := ca.Send(ctx, fmt.Appendf(nil, "a %d", i)); err != nil {
			return sent, 0, err
		}
		if err := cb.Send(ctx, fmt.Appendf(nil, "b %d", i)); err != nil {
			return sent, 0, err
		}
		sent += 2
	}
	for range 2 {
		if err := <-errc; err != nil {
			return sent, 0, fmt.Errorf("messages: %w", err)
		}
	}
	return sent, sent, nil
}

// stream pushes size bytes over an application stream and checks them.
func stream(ctx context.Context, ca, cb *sdk.Conn, size int) (int64, float64, string, error) {
	data := make([]byte, size)
	for i := range data {
		data[i] = byte(i*31 + i>>8)
	}
	sum := sha256.Sum256(data)
	start := time.Now()
	werr := make(chan error, 1)
	go func() {
		st, err := ca.OpenStream(ctx, "ferry/demo/bulk")
		if err != nil {
			werr <- err
			return
		}
		if _, err := io.Copy(st, bytes.NewReader(data)); err != nil {
			werr <- err
			return
		}
		werr <- st.Close()
	}()
	st, err := cb.AcceptStream(ctx)
	if err != nil {
		return 0, 0, "", fmt.Errorf("stream: %w", err)
	}
	h := sha256.New()
	n, err := io.Copy(h, st)
	if err != nil {
		return n, 0, "", fmt.Errorf("stream: %w", err)
	}
	if err := <-werr; err != nil {
		return n, 0, "", fmt.Errorf("stream: %w", err)
	}
	took := time.Since(start)
	got := h.Sum(nil)
	if !bytes.Equal(got, sum[:]) || n != int64(size) {
		return n, 0, "", fmt.Errorf("stream: received %d bytes with sha256 %x, sent %d with %x", n, got, size, sum)
	}
	return n, float64(n) / took.Seconds() / 1e6, fmt.Sprintf("%x", got), nil
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// PathReport is a connection's path in the JSON that `ferry demo` and
// `ferry ping` print.
type PathReport struct {
	Path            string  `json:"path"`
	LocalCandidate  string  `json:"local_candidate"`
	RemoteCandidate string  `json:"remote_candidate"`
	LocalAddr       string  `json:"local_addr"`
	RemoteAddr      string  `json:"remote_addr"`
	Relay           string  `json:"relay,omitempty"`
	ConnectMs       float64 `json:"connect_ms"`
}

// NewPathReport describes p.
func NewPathReport(p sdk.Path) PathReport {
	return PathReport{
		Path: p.Kind(), LocalCandidate: p.LocalCandidate, RemoteCandidate: p.RemoteCandidate,
		LocalAddr: p.LocalAddr, RemoteAddr: p.RemoteAddr, Relay: p.Relay, ConnectMs: ms(p.ConnectTime),
	}
}
