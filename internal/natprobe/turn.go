package natprobe

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"

	"github.com/pion/stun/v4"
)

// turnTarget is one transport of one TURN server to check.
type turnTarget struct {
	url, transport, host string
	port                 int
}

// Default TURN ports (RFC 8656).
const (
	turnPort    = 3478
	turnTLSPort = 5349
)

// parseTURN turns a --turn value into the transports to check: a bare
// "host[:port]" means TCP on port (3478) and TLS on 5349; RFC 7065 URIs
// name one transport ("turn:" is UDP unless ?transport=tcp; UDP is what the
// probe already tests, so a UDP URI is checked over TCP too).
func parseTURN(s string) ([]turnTarget, error) {
	lower := strings.ToLower(s)
	switch {
	case strings.HasPrefix(lower, "turns:"):
		hp, _, _ := strings.Cut(s[len("turns:"):], "?")
		host, port, err := splitHostPort(hp, turnTLSPort)
		if err != nil {
			return nil, fmt.Errorf("TURN URI %q: %w", s, err)
		}
		return []turnTarget{{s, "tls", host, port}}, nil
	case strings.HasPrefix(lower, "turn:"):
		hp, _, _ := strings.Cut(s[len("turn:"):], "?")
		host, port, err := splitHostPort(hp, turnPort)
		if err != nil {
			return nil, fmt.Errorf("TURN URI %q: %w", s, err)
		}
		return []turnTarget{{s, "tcp", host, port}}, nil
	case strings.Contains(s, "://") || strings.HasPrefix(lower, "stun:"):
		return nil, fmt.Errorf("TURN server %q: want host[:port], turn:host[:port] or turns:host[:port]", s)
	}
	host, port, err := splitHostPort(s, turnPort)
	if err != nil {
		return nil, fmt.Errorf("TURN server %q: %w", s, err)
	}
	return []turnTarget{{s, "tcp", host, port}, {s, "tls", host, turnTLSPort}}, nil
}

// turnChecks sends an unauthenticated Allocate request to each TURN
// target over TCP or TLS. Any STUN answer (normally 401 Unauthorized)
// proves a TURN server is reachable there.
func (p *prober) turnChecks(ctx context.Context) []TURNCheck {
	var targets []turnTarget
	for _, u := range p.cfg.TURN {
		ts, err := parseTURN(u)
		if err != nil {
			continue // Validate rejected these already
		}
		targets = append(targets, ts...)
	}
	out := make([]TURNCheck, len(targets))
	var wg sync.WaitGroup
	for i, t := range targets {
		wg.Go(func() { out[i] = p.turnCheck(ctx, t) })
	}
	wg.Wait()
	return out
}

func (p *prober) turnCheck(ctx context.Context, t turnTarget) TURNCheck {
	addr := net.JoinHostPort(t.host, strconv.Itoa(t.port))
	res := TURNCheck{URL: t.url, Transport: t.transport, Address: addr}
	dctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	c, err := p.cfg.Dial(dctx, "tcp", addr)
	if err != nil {
		res.Detail = err.Error()
		return res
	}
	defer c.Close()
	if t.transport == "tls" {
		cfg := &tls.Config{MinVersion: tls.VersionTLS12}
		if p.cfg.TLSConfig != nil {
			cfg = p.cfg.TLSConfig.Clone()
		}
		if cfg.ServerName == "" {
			cfg.ServerName = t.host
		}
		tc := tls.Client(c, cfg)
		if err = tc.HandshakeContext(dctx); err != nil {
			res.Detail = "TLS: " + err.Error()
			return res
		}
		c = tc
	}
	m, err := stun.Build(stun.TransactionID, stun.NewType(stun.MethodAllocate, stun.ClassRequest))
	if err != nil {
		res.Detail = err.Error()
		return res
	}
	// REQUESTED-TRANSPORT: UDP (17) and three reserved bytes.
	m.Add(stun.AttrRequestedTransport, []byte{17, 0, 0, 0})
	m.WriteHeader()
	_, err = transactStream(dctx, c, m, p.timeout)
	var er *ResponseError
	switch {
	case err == nil:
		res.Reachable, res.Detail = true, "allocated without credentials"
	case errors.As(err, &er):
		// An error response (401 Unauthorized) is the expected answer.
		res.Reachable, res.Detail = true, fmt.Sprintf("error %d %s", er.Code, er.Reason)
	default:
		res.Detail = err.Error()
	}
	return res
}
