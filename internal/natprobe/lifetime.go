package natprobe

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"sort"
	"sync"
	"time"

	"github.com/pion/stun/v4"

	"github.com/ferrynet/ferry/internal/netaddr"
	"github.com/ferrynet/ferry/internal/stunclient"
)

// lifetimePeriods are the idle periods tested: 1, 2, 4, 8... seconds below
// max, then max itself.
func lifetimePeriods(max time.Duration) []time.Duration {
	var out []time.Duration
	for d := time.Second; d < max; d *= 2 {
		out = append(out, d)
	}
	return append(out, max)
}

// lifetimeTest estimates the idle lifetime of a mapping (RFC 5780 section
// 4.6, with parallel timers instead of a sequential search): for each
// period T, socket X gets a mapping, stays silent for T, then socket Y asks
// the server (RESPONSE-PORT) to answer to X's mapped port. X hears the
// answer only if its mapping survived T idle.
func (p *prober) lifetimeTest(ctx context.Context, server netip.AddrPort) *Lifetime {
	periods := lifetimePeriods(p.cfg.Lifetime)
	type outcome struct {
		alive, known bool
		unsupported  string
	}
	outs := make([]outcome, len(periods))
	var wg sync.WaitGroup
	for i, d := range periods {
		wg.Go(func() {
			alive, known, unsup := p.lifetimeOne(ctx, server, d)
			outs[i] = outcome{alive, known, unsup}
		})
	}
	wg.Wait()
	lt := &Lifetime{}
	var dead []time.Duration
	var alive []time.Duration
	for i, o := range outs {
		switch {
		case o.unsupported != "":
			lt.Detail = "the server does not support RESPONSE-PORT (" + o.unsupported + "): lifetime unknown"
			p.note("%s", lt.Detail)
			return lt
		case !o.known:
		case o.alive:
			alive = append(alive, periods[i])
		default:
			dead = append(dead, periods[i])
		}
	}
	sort.Slice(dead, func(i, j int) bool { return dead[i] < dead[j] })
	for _, a := range alive {
		if s := a.Seconds(); s > lt.MinSeconds {
			lt.MinSeconds = s
		}
	}
	for _, d := range dead {
		if d.Seconds() > lt.MinSeconds {
			s := d.Seconds()
			lt.MaxSeconds = &s
			break
		}
	}
	if len(dead) > 0 && dead[0].Seconds() < lt.MinSeconds {
		p.note("mapping lifetime results are inconsistent (a mapping died after %v idle while a longer one lived); packet loss or a NAT that expires mappings unevenly", dead[0])
	}
	switch {
	case lt.MaxSeconds == nil:
		lt.Detail = fmt.Sprintf("idle mappings lived at least %v (the longest period tested)", p.cfg.Lifetime)
	case lt.MinSeconds == 0:
		lt.Detail = fmt.Sprintf("idle mappings died within %vs", *lt.MaxSeconds)
	default:
		lt.Detail = fmt.Sprintf("idle mappings live between %vs and %vs", lt.MinSeconds, *lt.MaxSeconds)
	}
	return lt
}

// lifetimeOne tests one idle period. known is false when the test could
// not run (no answer to the first request).
func (p *prober) lifetimeOne(ctx context.Context, server netip.AddrPort, idle time.Duration) (alive, known bool, unsupported string) {
	x, err := p.listen(ctx)
	if err != nil {
		return false, false, ""
	}
	defer x.Close()
	name := fmt.Sprintf("lifetime %v: mapping", idle)
	r, _, err := p.run(ctx, ordLifetime, name, x, server, request{}, exactly(server))
	if err != nil {
		return false, false, ""
	}
	select {
	case <-ctx.Done():
		return false, false, ""
	case <-time.After(idle):
	}
	y, err := p.listen(ctx)
	if err != nil {
		return false, false, ""
	}
	defer y.Close()
	m, err := request{responsePort: int(r.xorMapped.Port())}.build()
	if err != nil {
		return false, false, ""
	}
	deadline := time.Now().Add(p.timeout)
	// Y listens too: a server that ignores RESPONSE-PORT answers Y, and
	// one that does not know it answers 420 Unknown Attribute.
	yAnswer := make(chan string, 1)
	go func() { yAnswer <- waitAnyResponse(ctx, y, m, deadline) }()
	xGot := make(chan bool, 1)
	go func() { xGot <- waitResponse(ctx, x, m, deadline) }()
	done := make(chan struct{})
	resent := make(chan struct{})
	go func() {
		defer close(resent)
		_, _ = stunclient.Resend(ctx, y, server, m, p.schedule(), done)
	}()
	defer func() { close(done); <-resent }()
	var ySaid string
	yDone := false
	for {
		select {
		case alive = <-xGot:
			p.record(ordLifetime, Test{
				Name: fmt.Sprintf("lifetime %v: answer to the idle mapping", idle), Socket: netaddr.AddrPort(y.LocalAddr()).String(),
				To: server.String(), Response: alive, Mapped: r.xorMapped.String(),
				Detail: fmt.Sprintf("RESPONSE-PORT %d after %v idle", r.xorMapped.Port(), idle),
			})
			if !alive && !yDone {
				ySaid = <-yAnswer
			}
			return alive, true, ySaid
		case ySaid = <-yAnswer:
			if ySaid != "" {
				return false, true, ySaid
			}
			yDone, yAnswer = true, nil // nothing for Y: keep waiting for X
		}
	}
}

// waitResponse reports whether an answer to m arrives on pc.
func waitResponse(ctx context.Context, pc net.PacketConn, m *stun.Message, deadline time.Time) bool {
	_, err := stunclient.Await(ctx, pc, m, stunclient.Answer, deadline)
	return err == nil
}

// waitAnyResponse returns a description of the first answer to m on pc,
// or "" if none arrives before the deadline.
func waitAnyResponse(ctx context.Context, pc net.PacketConn, m *stun.Message, deadline time.Time) string {
	a, err := stunclient.Await(ctx, pc, m, stunclient.Answer, deadline)
	if err != nil {
		return ""
	}
	if _, err := parse(a.Msg); err != nil {
		return err.Error()
	}
	return "answered the requesting socket"
}
