// Package rvtest starts in-process rendezvous servers on loopback for tests:
// the SDK's, the examples', gossip's and the ferry command's tests meet their
// nodes through one. It is test code (binaries must not link it).
package rvtest

import (
	"log/slog"
	"net"
	"testing"

	"github.com/ferrynet/ferry/server/rendezvous"
)

// Start starts a rendezvous server from cfg and closes it when t ends. What
// cfg leaves unset is filled for loopback: Listener on 127.0.0.1:0 (TCP),
// one STUN socket on 127.0.0.1:0 (UDP), ServerNames 127.0.0.1, and a
// discarding Logger. It returns the server and its signaling URL.
func Start(t testing.TB, cfg rendezvous.Config) (*rendezvous.Server, string) {
	t.Helper()
	var lc net.ListenConfig
	var opened []interface{ Close() error }
	fail := func(err error) {
		for _, c := range opened {
			_ = c.Close()
		}
		t.Fatal(err)
	}
	if cfg.Listener == nil {
		ln, err := lc.Listen(t.Context(), "tcp", "127.0.0.1:0")
		if err != nil {
			fail(err)
		}
		opened = append(opened, ln)
		cfg.Listener = ln
	}
	if cfg.STUNConns == nil {
		stun, err := lc.ListenPacket(t.Context(), "udp", "127.0.0.1:0")
		if err != nil {
			fail(err)
		}
		opened = append(opened, stun)
		cfg.STUNConns = []net.PacketConn{stun}
	}
	if cfg.ServerNames == nil {
		cfg.ServerNames = []string{"127.0.0.1"}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	rv, err := rendezvous.New(cfg)
	if err != nil {
		fail(err)
	}
	t.Cleanup(func() { _ = rv.Close() })
	return rv, SignalURL(rv)
}

// URL starts a plain rendezvous server (see Start) and returns its
// signaling URL.
func URL(t testing.TB) string {
	t.Helper()
	_, url := Start(t, rendezvous.Config{})
	return url
}

// SignalURL is the WebSocket signaling URL of rv.
func SignalURL(rv *rendezvous.Server) string {
	return "ws://" + rv.Addr().String() + "/v1/signal"
}
