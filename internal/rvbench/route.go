package rvbench

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/ferrynet/ferry/signal"
	"github.com/ferrynet/ferry/wire"
)

// RouteLoad measures routing latency: pairs of peers (From[i] sends to
// To[i]) exchange offers and answers at a fixed total rate. Each message
// carries its send time; its latency is when the target receives it, on
// the same clock (all peers are in this process). Every offer is answered,
// so half the messages are offers and half answers.
type RouteLoad struct {
	From, To []*signal.Client
	Rate     float64 // messages per second, offers and answers together
}

// RouteResult holds the latencies measured.
type RouteResult struct {
	Latencies []time.Duration // sorted
	Sent      int
	Elapsed   time.Duration
	Errors    int
}

// Percentile returns the p-th percentile (0 < p <= 100).
func (r RouteResult) Percentile(p float64) time.Duration {
	if len(r.Latencies) == 0 {
		return 0
	}
	i := int(float64(len(r.Latencies))*p/100+0.5) - 1
	return r.Latencies[min(max(i, 0), len(r.Latencies)-1)]
}

// Run sends n offers (answered, so 2n messages) paced at the rate.
func (l RouteLoad) Run(ctx context.Context, n int) (RouteResult, error) {
	if len(l.From) == 0 || len(l.From) != len(l.To) || l.Rate <= 0 {
		return RouteResult{}, errors.New("rvbench: route load needs pairs and a rate")
	}
	var (
		mu   sync.Mutex
		lat  = make([]time.Duration, 0, 2*n)
		errN int
		got  = make(chan struct{}, 2*n)
	)
	record := func(m signal.Message) {
		var meta []byte
		switch msg := m.Msg.(type) {
		case *wire.Offer:
			meta = msg.Metadata
		case *wire.Answer:
			meta = msg.Metadata
		}
		if len(meta) != 8 {
			return
		}
		d := time.Duration(time.Now().UnixNano() - int64(binary.BigEndian.Uint64(meta)))
		mu.Lock()
		lat = append(lat, d)
		mu.Unlock()
		got <- struct{}{}
	}
	stamp := func() []byte { return binary.BigEndian.AppendUint64(nil, uint64(time.Now().UnixNano())) }
	// Receivers answer offers; senders only record answers.
	var wg sync.WaitGroup
	rctx, cancel := context.WithCancel(ctx)
	defer func() { cancel(); wg.Wait() }()
	for i := range l.To {
		wg.Add(2)
		go func() {
			defer wg.Done()
			for {
				m, err := l.To[i].Recv(rctx)
				if err != nil {
					return
				}
				record(m)
				if m.Type == wire.TypeOffer {
					// The answer goes at the pace of the offers, half the rate.
					a := &wire.Answer{RouteHeader: wire.RouteHeader{SessionID: m.SessionID}, Ufrag: "b", Pwd: "bbbbbbbbbbbbbbbbbbbbbbbb", Metadata: stamp()}
					if err := l.To[i].Post(rctx, m.From, a); err != nil {
						return
					}
				}
			}
		}()
		go func() {
			defer wg.Done()
			for {
				m, err := l.From[i].Recv(rctx)
				if err != nil {
					return
				}
				record(m)
			}
		}()
	}
	interval := time.Duration(float64(time.Second) * 2 / l.Rate) // one offer per two messages
	start := time.Now()
	next := start
	sid := []byte("bench-session")
	for k := range n {
		if d := time.Until(next); d > 0 {
			t := time.NewTimer(d)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				return RouteResult{}, ctx.Err()
			}
		}
		next = next.Add(interval)
		i := k % len(l.From)
		o := &wire.Offer{RouteHeader: wire.RouteHeader{SessionID: sid}, Ufrag: "a", Pwd: "aaaaaaaaaaaaaaaaaaaaaaaa", Metadata: stamp()}
		if err := l.From[i].Post(ctx, l.To[i].PeerID(), o); err != nil {
			errN++
		}
	}
	// Wait for the stragglers.
	deadline := time.NewTimer(10 * time.Second)
	defer deadline.Stop()
	for seen := 0; seen < 2*n-2*errN; seen++ {
		select {
		case <-got:
		case <-deadline.C:
			mu.Lock()
			have := len(lat)
			mu.Unlock()
			return RouteResult{}, fmt.Errorf("rvbench: %d of %d messages arrived", have, 2*n)
		case <-ctx.Done():
			return RouteResult{}, ctx.Err()
		}
	}
	elapsed := time.Since(start)
	mu.Lock()
	defer mu.Unlock()
	slices.Sort(lat)
	return RouteResult{Latencies: lat, Sent: 2 * n, Elapsed: elapsed, Errors: errN}, nil
}
