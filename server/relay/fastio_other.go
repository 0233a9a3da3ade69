//go:build !linux

package relay

import (
	"net"
	"net/netip"
)

// Without Linux's recvmmsg/sendmmsg the relay uses the portable path:
// newSockIO returns nil and nothing else here is called.
type sockIO struct{}

func newSockIO(*net.UDPConn) *sockIO { return nil }

type rxBatch struct{}

func newRxBatch(*sockIO, int, int, int) *rxBatch { return nil }

func (*rxBatch) next() ([]byte, int, netip.AddrPort, bool, error) {
	return nil, 0, netip.AddrPort{}, false, net.ErrClosed
}
func (*rxBatch) pending() bool { return false }

type txBatch struct{}

func newTxBatch(int) *txBatch                             { return nil }
func (*txBatch) add(*sockIO, []byte, netip.AddrPort) bool { return false }
func (*txBatch) flush(*sockIO) (int, error)               { return 0, nil }
func (*txBatch) len() int                                 { return 0 }
