package signal

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net"
	"os"
	"time"

	"github.com/ferrynet/ferry/internal/backoff"
)

// Option configures a Client.
type Option func(*options) error

type options struct {
	tls          *tls.Config
	caFile       string
	dial         func(ctx context.Context, network, addr string) (net.Conn, error)
	logger       *slog.Logger
	minBackoff   time.Duration
	maxBackoff   time.Duration
	capabilities []string
	serverName   string
	inbox        int
	handler      func(Message)
	stateHook    func(State, error)
	pingInterval time.Duration
	now          func() time.Time
}

func defaultOptions() options {
	return options{
		minBackoff: 250 * time.Millisecond,
		maxBackoff: 30 * time.Second,
		inbox:      64,
		now:        time.Now,
	}
}

// WithCAFile trusts the PEM certificates in path in addition to the system
// roots (for a private CA, or a server's self-signed certificate).
func WithCAFile(path string) Option {
	return func(o *options) error { o.caFile = path; return nil }
}

// WithTLSConfig replaces the TLS configuration (roots, client certificates)
// used for wss:// URLs. WithCAFile still adds to its RootCAs.
func WithTLSConfig(c *tls.Config) Option {
	return func(o *options) error { o.tls = c.Clone(); return nil }
}

// WithDialer sets how TCP connections to the server are opened, for
// example to bind a source address. Default: a net.Dialer.
func WithDialer(dial func(ctx context.Context, network, addr string) (net.Conn, error)) Option {
	return func(o *options) error { o.dial = dial; return nil }
}

// WithLogger sets the logger. Default: none.
func WithLogger(l *slog.Logger) Option {
	return func(o *options) error { o.logger = l; return nil }
}

// WithBackoff bounds the wait between reconnection attempts, with full
// jitter: the n-th wait (n from 0) is drawn uniformly from [1ms,
// min(maxWait, minWait·2^n)), and never falls below a server's Retry-After.
// Default: 250ms to 30s.
func WithBackoff(minWait, maxWait time.Duration) Option {
	return func(o *options) error {
		if minWait <= 0 || maxWait < minWait {
			return fmt.Errorf("rendezvous: backoff %v-%v: want 0 < min <= max", minWait, maxWait)
		}
		o.minBackoff, o.maxBackoff = minWait, maxWait
		return nil
	}
}

// WithCapabilities announces optional features at login; "dht" offers this
// peer as a DHT bootstrap node to others.
func WithCapabilities(caps ...string) Option {
	return func(o *options) error { o.capabilities = append([]string(nil), caps...); return nil }
}

// WithServerName sets the server name the login is signed for. Default:
// the URL's host, which is what the server expects unless it sits behind a
// name it does not know.
func WithServerName(name string) Option {
	return func(o *options) error { o.serverName = name; return nil }
}

// WithInbox sets how many received messages wait in Messages() before the
// client stops reading from the server (which then answers "busy" to
// senders). Default: 64.
func WithInbox(n int) Option {
	return func(o *options) error {
		if n < 0 {
			return fmt.Errorf("rendezvous: negative inbox size %d", n)
		}
		o.inbox = n
		return nil
	}
}

// WithHandler delivers received messages by calling h, on the client's
// reading goroutine, instead of through Messages(). h must return quickly;
// while it runs, nothing else is read.
func WithHandler(h func(Message)) Option {
	return func(o *options) error { o.handler = h; return nil }
}

// WithStateHook calls h on every change of the connection state, with the
// error that caused it (nil for Connected and a plain Close). It is called
// on the client's goroutines and must not block.
func WithStateHook(h func(State, error)) Option {
	return func(o *options) error { o.stateHook = h; return nil }
}

// WithPingInterval sets how often the client sends PING. Default: a third
// of the idle timeout the server announces, at most 30s.
func WithPingInterval(d time.Duration) Option {
	return func(o *options) error {
		if d <= 0 {
			return fmt.Errorf("rendezvous: ping interval %v", d)
		}
		o.pingInterval = d
		return nil
	}
}

// WithClock sets the clock used to time-stamp logins. Default: time.Now.
func WithClock(now func() time.Time) Option {
	return func(o *options) error { o.now = now; return nil }
}

// reconnectFloor is the smallest wait between reconnection attempts.
const reconnectFloor = time.Millisecond

// backoff returns a fresh reconnection schedule (see WithBackoff).
func (o *options) backoff() backoff.Backoff {
	return backoff.Backoff{Base: o.minBackoff, Cap: o.maxBackoff, Floor: reconnectFloor}
}

func (o *options) tlsConfig() (*tls.Config, error) {
	c := o.tls
	if c == nil {
		c = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	if o.caFile != "" {
		pem, err := os.ReadFile(o.caFile)
		if err != nil {
			return nil, fmt.Errorf("rendezvous: CA file: %w", err)
		}
		pool := c.RootCAs
		if pool == nil {
			if pool, err = x509.SystemCertPool(); err != nil || pool == nil {
				pool = x509.NewCertPool()
			}
		} else {
			pool = pool.Clone()
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("rendezvous: CA file %s holds no PEM certificate", o.caFile)
		}
		c.RootCAs = pool
	}
	c.NextProtos = []string{"http/1.1"}
	return c, nil
}
