package sdk

import (
	"context"
	"fmt"
	"io"
	"syscall"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/ferrynet/ferry/sdk/internal/secure"
)

// bareQUIC is the baseline Ferry competes with: one quic-go stream between
// two loopback transports, with the same TLS (Ed25519 peer keys) and QUIC
// settings as a Ferry session.
type bareQUIC struct {
	client, server *quic.Stream
	close          func()
}

func newBareQUIC(b *testing.B) *bareQUIC {
	b.Helper()
	idA, idB := newIdentity(b), newIdentity(b)
	pcA, pcB := listenUDP(b), listenUDP(b)
	trA, trB := &quic.Transport{Conn: pcA}, &quic.Transport{Conn: pcB}
	cfg := defaultConfig()
	qconf := quicConfig(&cfg)
	serverTLS, err := secure.ServerConfig(idB, nil)
	if err != nil {
		b.Fatal(err)
	}
	ln, err := trB.Listen(serverTLS, qconf)
	if err != nil {
		b.Fatal(err)
	}
	clientTLS, _, err := secure.ClientConfig(idA, idB.PeerID())
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	qa, err := trA.Dial(ctx, pcB.LocalAddr(), clientTLS, qconf)
	if err != nil {
		b.Fatal(err)
	}
	sa, err := qa.OpenStreamSync(ctx)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := sa.Write([]byte{0}); err != nil { // announce the stream
		b.Fatal(err)
	}
	qb, err := ln.Accept(ctx)
	if err != nil {
		b.Fatal(err)
	}
	sb, err := qb.AcceptStream(ctx)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := io.ReadFull(sb, make([]byte, 1)); err != nil {
		b.Fatal(err)
	}
	return &bareQUIC{client: sa, server: sb, close: func() {
		_ = qa.CloseWithError(0, "")
		_ = qb.CloseWithError(0, "")
		_ = ln.Close()
		_ = trA.Close()
		_ = trB.Close()
	}}
}

func benchPair(b *testing.B) (*Conn, *Conn) {
	b.Helper()
	a, e := newEndpoint(b), newEndpoint(b)
	return connect(b, a, e)
}

// BenchmarkMessageThroughput compares Ferry's Send/Recv with a bare quic-go
// stream carrying the same bytes, in alternating rounds of the same run.
// Each iteration moves 4 MiB of messages over each. It reports both rates
// and their ratio (the bar: ferry/quic >= 0.8).
func BenchmarkMessageThroughput(b *testing.B) {
	for _, size := range []int{1 << 10, 64 << 10} {
		b.Run(fmt.Sprintf("%dKiB", size>>10), func(b *testing.B) {
			ca, cb := benchPair(b)
			q := newBareQUIC(b)
			defer q.close()
			const total = 16 << 20
			count := total / size
			msg := make([]byte, size)
			ctx := context.Background()

			var ferryTime, quicTime, ferryCPU, quicCPU time.Duration
			b.SetBytes(2 * total)
			b.ReportAllocs()
			for b.Loop() {
				// Ferry.
				start, cpu0 := time.Now(), cpuTime()
				done := make(chan error, 1)
				go func() {
					for range count {
						if _, err := cb.Recv(ctx); err != nil {
							done <- err
							return
						}
					}
					done <- nil
				}()
				for range count {
					if err := ca.Send(ctx, msg); err != nil {
						b.Fatal(err)
					}
				}
				if err := <-done; err != nil {
					b.Fatal(err)
				}
				ferryTime += time.Since(start)
				ferryCPU += cpuTime() - cpu0

				// Bare quic-go, same messages.
				start, cpu0 = time.Now(), cpuTime()
				go func() {
					buf := make([]byte, size)
					for range count {
						if _, err := io.ReadFull(q.server, buf); err != nil {
							done <- err
							return
						}
					}
					done <- nil
				}()
				for range count {
					if _, err := q.client.Write(msg); err != nil {
						b.Fatal(err)
					}
				}
				if err := <-done; err != nil {
					b.Fatal(err)
				}
				quicTime += time.Since(start)
				quicCPU += cpuTime() - cpu0
			}
			n := float64(b.N) * total
			ferryRate := n / ferryTime.Seconds() / 1e6
			quicRate := n / quicTime.Seconds() / 1e6
			b.ReportMetric(ferryRate, "ferry-MB/s")
			b.ReportMetric(quicRate, "quic-MB/s")
			b.ReportMetric(ferryRate/quicRate, "ferry/quic")
			b.ReportMetric(float64(ferryCPU.Nanoseconds())/n*1e3, "ferry-cpu-ns/KB")
			b.ReportMetric(float64(quicCPU.Nanoseconds())/n*1e3, "quic-cpu-ns/KB")
		})
	}
}

// BenchmarkPingPong measures the round trip of a 1 KiB message and its
// answer, on Ferry and on a bare quic-go stream, alternating. It reports
// both and their ratio (the bar: ferry/quic <= 1.25).
func BenchmarkPingPong(b *testing.B) {
	ca, cb := benchPair(b)
	q := newBareQUIC(b)
	defer q.close()
	ctx := context.Background()
	msg := make([]byte, 1024)

	stop := make(chan struct{})
	defer close(stop)
	echoErr := make(chan error, 2)
	go func() { // Ferry echo
		for {
			m, err := cb.Recv(ctx)
			if err != nil {
				select {
				case <-stop:
				default:
					echoErr <- err
				}
				return
			}
			if err := cb.Send(ctx, m); err != nil {
				echoErr <- err
				return
			}
		}
	}()
	go func() { // quic-go echo
		buf := make([]byte, len(msg))
		for {
			if _, err := io.ReadFull(q.server, buf); err != nil {
				return
			}
			if _, err := q.server.Write(buf); err != nil {
				return
			}
		}
	}()
	buf := make([]byte, len(msg))
	var ferryTime, quicTime time.Duration
	b.ReportAllocs()
	for b.Loop() {
		start := time.Now()
		if err := ca.Send(ctx, msg); err != nil {
			b.Fatal(err)
		}
		if _, err := ca.Recv(ctx); err != nil {
			b.Fatal(err)
		}
		ferryTime += time.Since(start)

		start = time.Now()
		if _, err := q.client.Write(msg); err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(q.client, buf); err != nil {
			b.Fatal(err)
		}
		quicTime += time.Since(start)
	}
	select {
	case err := <-echoErr:
		b.Fatal(err)
	default:
	}
	ferryRTT := float64(ferryTime.Microseconds()) / float64(b.N)
	quicRTT := float64(quicTime.Microseconds()) / float64(b.N)
	b.ReportMetric(ferryRTT, "ferry-µs/rtt")
	b.ReportMetric(quicRTT, "quic-µs/rtt")
	b.ReportMetric(ferryRTT/quicRTT, "ferry/quic")
}

// cpuTime returns the CPU time the process has used (user and system).
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
