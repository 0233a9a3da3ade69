package sdk

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/ferrynet/ferry/sdk/internal/secure"
)

// An Endpoint speaks Ferry's session protocol over one net.PacketConn: it
// dials peers at known addresses and accepts their connections. The caller
// owns the packet conn and closes it after the endpoint.
type Endpoint struct {
	*router
	tr    *quic.Transport
	ln    *quic.Listener
	qconf *quic.Config

	closeOnce sync.Once
	closeErr  error
}

// NewEndpoint starts an endpoint for identity id on pc.
func NewEndpoint(pc net.PacketConn, id *Identity, opts ...EndpointOption) (_ *Endpoint, err error) {
	if pc == nil || id == nil {
		return nil, errors.New("sdk: NewEndpoint needs a packet conn and an identity")
	}
	cfg := defaultConfig()
	if err = applyOpts(&cfg, opts, EndpointOption.applyEndpoint); err != nil {
		return nil, err
	}
	serverTLS, err := secure.ServerConfig(id, cfg.allowPeer)
	if err != nil {
		return nil, err
	}
	e := &Endpoint{
		router: newRouter(id, cfg),
		tr:     &quic.Transport{Conn: pc},
		qconf:  quicConfig(&cfg),
	}
	defer func() {
		if err != nil {
			e.cancel()
			_ = e.tr.Close()
		}
	}()
	e.ln, err = e.tr.Listen(serverTLS, e.qconf)
	if err != nil {
		return nil, fmt.Errorf("sdk: listen: %w", err)
	}
	e.wg.Go(func() { e.serve(e.ln, nil) })
	return e, nil
}

// quicConfig derives QUIC settings from the heartbeat: QUIC's idle timeout
// sits beyond the heartbeat's verdict, so the heartbeat decides.
func quicConfig(cfg *config) *quic.Config {
	return &quic.Config{
		HandshakeIdleTimeout:  cfg.handshakeTimeout,
		MaxIdleTimeout:        time.Duration(cfg.heartbeatMisses+2) * cfg.heartbeatInterval,
		MaxIncomingStreams:    int64(cfg.streamBacklog) + 64,
		MaxIncomingUniStreams: -1,
	}
}

// PeerID returns the endpoint's own PeerID, the one peers dial.
func (e *Endpoint) PeerID() PeerID { return e.peerID() }

// Accept returns the next connection a peer dialed. It fails with
// ErrClosed once the endpoint is closed, and with ctx's error when ctx
// ends.
func (e *Endpoint) Accept(ctx context.Context) (*Conn, error) { return e.accept(ctx) }

// LocalAddr returns the address the endpoint's packet conn is bound to.
func (e *Endpoint) LocalAddr() net.Addr { return e.tr.Conn.LocalAddr() }

// Dial connects to the peer at addr, which must prove it holds the key of
// peer. opts override the endpoint's options for this connection.
func (e *Endpoint) Dial(ctx context.Context, addr net.Addr, peer PeerID, opts ...EndpointDialOption) (*Conn, error) {
	cfg := e.cfg
	if err := applyOpts(&cfg, opts, EndpointDialOption.applyEndpointDial); err != nil {
		return nil, err
	}
	dial := func(ctx context.Context, c *Conn) (*session, error) {
		if cfg.redial == nil || !c.isEstablished() {
			return e.dialSession(ctx, &cfg, e.tr, addr, peer, nil)
		}
		pp, err := cfg.redial(ctx)
		if err != nil {
			return nil, fmt.Errorf("sdk: redial: %w", err)
		}
		tr := &quic.Transport{Conn: pp.Conn}
		p := &path{release: func() {
			_ = tr.Close()
			_ = pp.Conn.Close()
		}}
		s, err := e.dialSession(ctx, &cfg, tr, pp.Addr, peer, p)
		if err != nil {
			p.close()
			return nil, err
		}
		return s, nil
	}
	c, err := e.newDialConn(ctx, cfg, peer, dial)
	if err != nil {
		return nil, fmt.Errorf("sdk: dial %s at %v: %w", peer.Short(), addr, err)
	}
	return c, nil
}

// Close closes every connection of the endpoint (with GOAWAY), stops
// accepting and waits for the endpoint's goroutines. It does not close the
// packet conn. Close is idempotent.
func (e *Endpoint) Close() error {
	e.closeOnce.Do(func() {
		lnErr := e.ln.Close()
		e.shutdown()
		e.closeErr = errors.Join(lnErr, e.tr.Close())
	})
	return e.closeErr
}
