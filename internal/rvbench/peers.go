package rvbench

import (
	"context"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/ferrynet/ferry/identity"
	"github.com/ferrynet/ferry/signal"
)

// LoginPeers logs n peers in at url with new identities, spreading their
// TCP connections over the source addresses 127.0.0.2 to 127.0.0.(1+sources)
// (each source address has its own range of ephemeral ports). At most
// parallel logins run at once. On error the peers logged in so far are
// closed.
func LoginPeers(ctx context.Context, url string, n, sources, parallel int, opts ...signal.Option) ([]*signal.Client, error) {
	if sources < 1 {
		sources = 1
	}
	if parallel < 1 {
		parallel = 64
	}
	out := make([]*signal.Client, n)
	var wg sync.WaitGroup
	sem := make(chan struct{}, parallel)
	errs := make(chan error, n)
	for i := range n {
		src := &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(2+i%sources))}
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			id, err := identity.Generate()
			if err != nil {
				errs <- err
				return
			}
			d := &net.Dialer{LocalAddr: src, Timeout: 10 * time.Second}
			c, err := signal.Dial(ctx, url, id, append([]signal.Option{signal.WithDialer(d.DialContext)}, opts...)...)
			if err != nil {
				errs <- fmt.Errorf("peer %d from %v: %w", i, src.IP, err)
				return
			}
			out[i] = c
		}()
		if ctx.Err() != nil {
			break
		}
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		ClosePeers(out)
		return nil, err
	}
	return out, nil
}

// ClosePeers closes every client, in parallel.
func ClosePeers(cs []*signal.Client) {
	var wg sync.WaitGroup
	sem := make(chan struct{}, 256)
	for _, c := range cs {
		if c == nil {
			continue
		}
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			c.Close()
		}()
	}
	wg.Wait()
}
