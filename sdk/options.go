package sdk

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/ferrynet/ferry/wire"
)

// Defaults for the options below.
const (
	DefaultHeartbeatInterval = 5 * time.Second
	DefaultHeartbeatMisses   = 3
	DefaultSendBuffer        = 4 << 20
	DefaultRecvWindow        = 4 << 20
	DefaultMaxPayload        = wire.DefaultMaxPayload
	DefaultHandshakeTimeout  = 10 * time.Second
	DefaultAcceptBacklog     = 32
	DefaultStreamBacklog     = 64
)

// PacketPath is a fresh way to reach a peer: a packet conn and the peer's
// address on it. A Conn that receives one from a RedialFunc owns it and
// closes it when the session over it ends.
type PacketPath struct {
	Conn net.PacketConn
	Addr net.Addr
}

// RedialFunc obtains a new path to the peer after the session under a
// connection died. It is called by the dialing side only, with backoff, until
// it succeeds, the reconnect timeout passes or the connection is closed.
type RedialFunc func(ctx context.Context) (PacketPath, error)

// A NodeOption configures a Node; pass it to [New].
type NodeOption interface{ applyNode(*config) }

// An EndpointOption configures an Endpoint; pass it to [NewEndpoint].
type EndpointOption interface{ applyEndpoint(*config) }

// An EndpointDialOption configures one connection dialed by
// [Endpoint.Dial]. Every [DialOption] is one.
type EndpointDialOption interface{ applyEndpointDial(*config) }

// A DialOption configures one connection; pass it to [Node.Dial] or
// [Endpoint.Dial].
type DialOption interface {
	EndpointDialOption
	applyDial(*config)
}

// A LocalOption configures a Node or an Endpoint as a whole; it does not
// apply to a single Dial.
type LocalOption interface {
	NodeOption
	EndpointOption
}

// A ConnOption configures connections. Given to [New] or [NewEndpoint], it
// sets the default for every connection there; given to a Dial, it
// overrides that default for the one connection.
type ConnOption interface {
	NodeOption
	EndpointOption
	DialOption
}

// nodeOpt applies to New only.
type nodeOpt func(*config)

func (o nodeOpt) applyNode(c *config) { o(c) }

// localOpt applies to New and NewEndpoint.
type localOpt func(*config)

func (o localOpt) applyNode(c *config)     { o(c) }
func (o localOpt) applyEndpoint(c *config) { o(c) }

// connOpt applies everywhere.
type connOpt func(*config)

func (o connOpt) applyNode(c *config)         { o(c) }
func (o connOpt) applyEndpoint(c *config)     { o(c) }
func (o connOpt) applyDial(c *config)         { o(c) }
func (o connOpt) applyEndpointDial(c *config) { o(c) }

// endpointDialOpt applies to Endpoint.Dial only.
type endpointDialOpt func(*config)

func (o endpointDialOpt) applyEndpointDial(c *config) { o(c) }

type config struct {
	heartbeatInterval time.Duration
	heartbeatMisses   int
	sendBuffer        int
	recvWindow        int
	maxPayload        int
	handshakeTimeout  time.Duration
	reconnectTimeout  time.Duration
	acceptBacklog     int
	streamBacklog     int
	redial            RedialFunc
	allowPeer         func(PeerID) error
	logger            *slog.Logger
	eventHook         func(PeerID, Event)
	node              nodeConfig
	// presence asks the rendezvous whether a peer is still logged in
	// there (supervise.go); set by a Node, nil for an Endpoint.
	presence func(ctx context.Context, peer PeerID) error
}

func defaultConfig() config {
	return config{
		heartbeatInterval: DefaultHeartbeatInterval,
		heartbeatMisses:   DefaultHeartbeatMisses,
		sendBuffer:        DefaultSendBuffer,
		recvWindow:        DefaultRecvWindow,
		maxPayload:        DefaultMaxPayload,
		handshakeTimeout:  DefaultHandshakeTimeout,
		acceptBacklog:     DefaultAcceptBacklog,
		streamBacklog:     DefaultStreamBacklog,
		logger:            slog.New(slog.DiscardHandler),
		node:              nodeConfig{offerRate: DefaultOfferRate, offerBurst: DefaultOfferBurst, loginTimeout: DefaultLoginTimeout},
	}
}

// applyOpts applies each non-nil option with apply, then validates.
func applyOpts[O comparable](c *config, opts []O, apply func(O, *config)) error {
	var zero O
	for _, o := range opts {
		if o != zero {
			apply(o, c)
		}
	}
	return c.validate()
}

func (c *config) validate() error {
	var errs []error
	if c.heartbeatInterval <= 0 {
		errs = append(errs, fmt.Errorf("heartbeat interval %v must be positive", c.heartbeatInterval))
	}
	if c.heartbeatMisses < 1 {
		errs = append(errs, fmt.Errorf("heartbeat misses %d must be at least 1", c.heartbeatMisses))
	}
	if c.maxPayload < minMaxPayload || c.maxPayload > maxMaxPayload {
		errs = append(errs, fmt.Errorf("max payload %d outside [%d, %d]", c.maxPayload, minMaxPayload, maxMaxPayload))
	}
	if c.sendBuffer < 1 {
		errs = append(errs, fmt.Errorf("send buffer %d must be positive", c.sendBuffer))
	}
	if c.recvWindow < 1 {
		errs = append(errs, fmt.Errorf("receive window %d must be positive", c.recvWindow))
	}
	if c.handshakeTimeout <= 0 {
		errs = append(errs, fmt.Errorf("handshake timeout %v must be positive", c.handshakeTimeout))
	}
	if c.reconnectTimeout < 0 {
		errs = append(errs, fmt.Errorf("reconnect timeout %v must not be negative", c.reconnectTimeout))
	}
	if c.acceptBacklog < 1 || c.streamBacklog < 1 {
		errs = append(errs, errors.New("backlogs must be positive"))
	}
	if c.node.loginTimeout <= 0 {
		errs = append(errs, fmt.Errorf("login timeout %v must be positive", c.node.loginTimeout))
	}
	if c.node.offerRate <= 0 || c.node.offerBurst < 1 {
		errs = append(errs, fmt.Errorf("offer limit %v/s, burst %d: both must be positive", c.node.offerRate, c.node.offerBurst))
	}
	if c.logger == nil {
		c.logger = slog.New(slog.DiscardHandler)
	}
	if len(errs) > 0 {
		return fmt.Errorf("sdk: invalid options: %w", errors.Join(errs...))
	}
	return nil
}

// Bounds on the negotiable frame payload.
const (
	minMaxPayload = wire.MinMaxPayload
	maxMaxPayload = 16 << 20
)

// WithHeartbeat sets how often a PING is sent (default 5 s) and after how
// many silent intervals the peer is declared dead (default 3). Anything
// heard from the peer counts, not only PONGs: control frames (messages,
// ACKs, PINGs) and bytes read from its application streams. The session is
// declared lost (Disconnected, a net.Error timeout) once nothing has been
// heard for misses·interval, checked four times per interval: with the
// defaults, between 15 and 16.25 s after the peer's last packet.
func WithHeartbeat(interval time.Duration, misses int) ConnOption {
	return connOpt(func(c *config) { c.heartbeatInterval, c.heartbeatMisses = interval, misses })
}

// WithSendBuffer bounds the bytes of sent messages kept until the peer
// acknowledges them (default 4 MiB). A full buffer blocks Send.
func WithSendBuffer(n int) ConnOption { return connOpt(func(c *config) { c.sendBuffer = n }) }

// WithRecvWindow bounds the bytes of received messages not yet read with
// Recv (default 4 MiB). It is advertised to the peer, whose sends stop when
// it is full.
func WithRecvWindow(n int) ConnOption { return connOpt(func(c *config) { c.recvWindow = n }) }

// WithMaxPayload sets the largest message this side accepts (default 1 MiB,
// between 4 KiB and 16 MiB). The effective maximum for each direction is
// what the receiving side accepts.
func WithMaxPayload(n int) ConnOption { return connOpt(func(c *config) { c.maxPayload = n }) }

// WithHandshakeTimeout bounds the QUIC handshake and the HELLO/RESUME
// exchange (default 10 s).
func WithHandshakeTimeout(d time.Duration) ConnOption {
	return connOpt(func(c *config) { c.handshakeTimeout = d })
}

// WithReconnectTimeout bounds how long a connection may stay without a
// session before it fails with ErrReconnectTimeout, losing the messages not
// yet acknowledged. Zero (the default) keeps trying until Close.
func WithReconnectTimeout(d time.Duration) ConnOption {
	return connOpt(func(c *config) { c.reconnectTimeout = d })
}

// WithStreamBacklog bounds application streams opened by the peer but not
// yet returned by AcceptStream (default 64); further streams are reset.
func WithStreamBacklog(n int) ConnOption { return connOpt(func(c *config) { c.streamBacklog = n }) }

// WithLogger sets the structured logger (default: discard). Given to a
// Dial, it logs that connection only.
func WithLogger(l *slog.Logger) ConnOption { return connOpt(func(c *config) { c.logger = l }) }

// WithRedial sets how the dialing side of one connection obtains a new path
// after its session died. Without it, the dialer re-dials the same address
// from the same endpoint. A Node finds new paths itself, with ICE, so this
// applies to [Endpoint.Dial] only.
func WithRedial(f RedialFunc) EndpointDialOption {
	return endpointDialOpt(func(c *config) { c.redial = f })
}

// WithAllowPeer lets a Node or an Endpoint refuse dialers by PeerID
// (default: every peer may dial). A Node asks it as soon as an offer
// arrives, before any ICE or relay work, so a refused peer learns none of
// the node's addresses; both ask it again in every TLS handshake.
func WithAllowPeer(f func(PeerID) error) LocalOption {
	return localOpt(func(c *config) { c.allowPeer = f })
}

// WithEventHook has every connection's events (state and path changes)
// passed to hook, with the peer's ID, for metrics and logs. The hook runs on
// one goroutine per Node or Endpoint, in order; if it falls more than 1024
// events behind, further events are dropped until it catches up (Events is
// not affected).
func WithEventHook(hook func(peer PeerID, ev Event)) LocalOption {
	return localOpt(func(c *config) { c.eventHook = hook })
}

// WithAcceptBacklog bounds connections accepted but not yet returned by
// Accept (default 32); further dialers get a GOAWAY.
func WithAcceptBacklog(n int) LocalOption { return localOpt(func(c *config) { c.acceptBacklog = n }) }
