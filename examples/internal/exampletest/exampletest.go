// Package exampletest holds what the examples' tests share: an in-process
// rendezvous server on loopback for the example programs to meet through.
package exampletest

import (
	"log/slog"
	"net"
	"testing"

	"github.com/ferrynet/ferry/server/rendezvous"
)

// Rendezvous starts a rendezvous server (plain WebSocket signaling and STUN
// on 127.0.0.1) that is closed when t ends, and returns its signaling URL.
func Rendezvous(t testing.TB) string {
	t.Helper()
	var lc net.ListenConfig
	ln, err := lc.Listen(t.Context(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	stun, err := lc.ListenPacket(t.Context(), "udp", "127.0.0.1:0")
	if err != nil {
		_ = ln.Close()
		t.Fatal(err)
	}
	rv, err := rendezvous.New(rendezvous.Config{
		Listener: ln, STUNConns: []net.PacketConn{stun}, ServerNames: []string{"127.0.0.1"},
		Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		_ = ln.Close()
		_ = stun.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rv.Close() })
	return "ws://" + rv.Addr().String() + "/v1/signal"
}
