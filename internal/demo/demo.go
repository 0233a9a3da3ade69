// Package demo runs Ferry's self-contained demonstration: two peers on
// loopback connect over an authenticated QUIC session, exchange messages
// both ways and push a 10 MiB application stream, and report what they saw.
// `ferry demo` prints its report.
package demo

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/ferrynet/ferry/sdk"
)

// Options tune the demo; the zero value runs the defaults.
type Options struct {
	// Messages is how many messages each side sends (default 1000).
	Messages int
	// StreamBytes is the size of the bulk stream (default 10 MiB).
	StreamBytes int
}

// Report is what the demo measured.
type Report struct {
	PeerA            string  `json:"peer_a"`
	PeerB            string  `json:"peer_b"`
	Path             string  `json:"path"`
	LocalAddr        string  `json:"local_addr"`
	RemoteAddr       string  `json:"remote_addr"`
	ConnectMs        float64 `json:"connect_ms"`
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
	opts := []sdk.Option{sdk.WithHeartbeat(250*time.Millisecond, 3)}
	a, closeA, err := endpoint(ctx, opts)
	if err != nil {
		return rep, err
	}
	defer func() { err = errors.Join(err, closeA()) }()
	b, closeB, err := endpoint(ctx, opts)
	if err != nil {
		return rep, err
	}
	defer func() { err = errors.Join(err, closeB()) }()
	rep.PeerA, rep.PeerB = a.PeerID().String(), b.PeerID().String()

	accepted := make(chan *sdk.Conn, 1)
	acceptErr := make(chan error, 1)
	go func() {
		c, aerr := b.Accept(ctx)
		if aerr != nil {
			acceptErr <- aerr
			return
		}
		accepted <- c
	}()
	start := time.Now()
	ca, err := a.Dial(ctx, b.LocalAddr(), b.PeerID())
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
	rep.ConnectMs = ms(time.Since(start))
	rep.Path = "direct"
	rep.LocalAddr, rep.RemoteAddr = a.LocalAddr().String(), b.LocalAddr().String()

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
	rep.RTTMs = ms(ca.RTT())
	return rep, ctx.Err()
}

func endpoint(ctx context.Context, opts []sdk.Option) (*sdk.Endpoint, func() error, error) {
	id, err := sdk.GenerateIdentity()
	if err != nil {
		return nil, nil, err
	}
	var lc net.ListenConfig
	pc, err := lc.ListenPacket(ctx, "udp", "127.0.0.1:0")
	if err != nil {
		return nil, nil, err
	}
	e, err := sdk.NewEndpoint(pc, id, opts...) //nolint:contextcheck // the endpoint outlives this call; Close ends it
	if err != nil {
		_ = pc.Close()
		return nil, nil, err
	}
	return e, func() error { return errors.Join(e.Close(), pc.Close()) }, nil
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
