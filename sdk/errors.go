package sdk

import (
	"errors"
	"fmt"

	"github.com/ferrynet/ferry/wire"
)

var (
	// ErrClosed is returned by operations on a connection or endpoint that
	// was closed locally.
	ErrClosed = errors.New("sdk: connection closed")
	// ErrReconnectTimeout is returned when a connection could not be
	// restored within the reconnect timeout the application set
	// (WithReconnectTimeout). Messages not yet acknowledged are lost.
	ErrReconnectTimeout = errors.New("sdk: reconnect timeout")
	// ErrMessageTooLarge is returned by Send for a message larger than the
	// maximum frame payload negotiated with the peer.
	ErrMessageTooLarge = errors.New("sdk: message too large")
	// ErrProtocol reports a peer that broke the protocol.
	ErrProtocol = errors.New("sdk: protocol error")
)

// GoAwayError reports a session or connection ended by a GOAWAY, sent by the
// peer (Remote) or by this side because the peer broke the protocol.
type GoAwayError struct {
	Code   wire.GoAwayCode
	Reason string
	Remote bool
}

func (e *GoAwayError) Error() string {
	who := "peer sent"
	if !e.Remote {
		who = "sent"
	}
	return fmt.Sprintf("sdk: %s GOAWAY (%v): %s", who, e.Code, e.Reason)
}

// Is lets errors.Is(err, ErrProtocol) match GOAWAYs for protocol errors.
func (e *GoAwayError) Is(target error) bool {
	return target == ErrProtocol && (e.Code == wire.GoAwayProtocolError || e.Code == wire.GoAwayFlowControl || e.Code == wire.GoAwayUnsupportedVersion)
}

// fatal reports whether a GOAWAY ends the whole connection rather than only
// the session under it.
func (e *GoAwayError) fatal() bool {
	return e.Code != wire.GoAwayReplaced
}

// timeoutError is a net.Error reporting a peer that stopped answering.
type timeoutError struct{ msg string }

func (e *timeoutError) Error() string { return e.msg }
func (e *timeoutError) Timeout() bool { return true }
func (e *timeoutError) Temporary() bool {
	return true
}
