package sdk

import (
	"errors"
	"fmt"
	"net"

	"github.com/ferrynet/ferry/wire"
)

// The SDK's errors. Every error a Node, an Endpoint, a Conn or a Stream
// returns is one of these (tested with errors.Is, or errors.As for the
// types below), a context's error, a net.Error timeout from a deadline, or
// an error that wraps one of them with detail: handling an error never needs
// an import of quic-go or of package wire.
var (
	// ErrClosed is returned by operations on a connection, stream, node or
	// endpoint that was closed locally. errors.Is(ErrClosed, net.ErrClosed)
	// holds, as code written for the net package expects.
	ErrClosed error = &closedError{}
	// ErrPeerClosed reports a connection the peer closed normally (it
	// called Close): messages it sent before are still delivered by Recv.
	// The error is a *GoAwayError.
	ErrPeerClosed = errors.New("sdk: peer closed the connection")
	// ErrSessionLost reports that the session under a connection died (the
	// path failed, or the peer stopped answering). The connection itself
	// reconnects; streams, which belong to one session, fail with it.
	ErrSessionLost = errors.New("sdk: session lost")
	// ErrStreamReset reports a stream the peer reset; the error is a
	// *StreamResetError holding the code.
	ErrStreamReset = errors.New("sdk: stream reset by peer")
	// ErrStreamRefused reports a stream the peer refused before reading
	// it: its header was malformed, or its accept backlog was full.
	ErrStreamRefused = errors.New("sdk: stream refused by peer")
	// ErrProtocolNotSupported reports a stream opened for a protocol that
	// nothing on the peer listens on (see Node.Listen).
	ErrProtocolNotSupported = errors.New("sdk: protocol not supported by peer")
	// ErrPeerNotFound reports a peer that is not online at the rendezvous
	// server.
	// A dialer's reconnect also ends with it (the conn is Closed) when
	// every redial for about 2 s found the peer gone: it died or left.
	ErrPeerNotFound = errors.New("sdk: peer not found")
	// ErrNoPath reports that ICE found no working candidate pair; the error
	// is a *NoPathError holding what was tried.
	ErrNoPath = errors.New("sdk: no path to the peer")
	// ErrDialSelf reports a Dial to the node's own PeerID.
	ErrDialSelf = errors.New("sdk: cannot dial yourself")
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

// closedError is ErrClosed: the SDK's own value, which also matches
// net.ErrClosed.
type closedError struct{}

func (*closedError) Error() string { return "sdk: connection closed" }
func (*closedError) Unwrap() error { return net.ErrClosed }

// GoAwayError reports a session or connection ended by a GOAWAY, sent by the
// peer (Remote) or by this side because the peer broke the protocol.
// errors.Is matches ErrPeerClosed for a peer's normal close and ErrProtocol
// for protocol violations.
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

// Is lets errors.Is(err, ErrProtocol) match GOAWAYs for protocol errors and
// errors.Is(err, ErrPeerClosed) a peer's normal close.
func (e *GoAwayError) Is(target error) bool {
	switch target {
	case ErrProtocol:
		return e.Code == wire.GoAwayProtocolError || e.Code == wire.GoAwayFlowControl || e.Code == wire.GoAwayUnsupportedVersion
	case ErrPeerClosed:
		return e.Remote && e.Code == wire.GoAwayNormal
	}
	return false
}

// fatal reports whether a GOAWAY ends the whole connection rather than only
// the session under it.
func (e *GoAwayError) fatal() bool {
	return e.Code != wire.GoAwayReplaced
}

// SessionLostError reports the death of the session under a connection;
// errors.Is matches ErrSessionLost. Cause says why, in the transport's
// words.
type SessionLostError struct {
	Cause error
}

func (e *SessionLostError) Error() string {
	if e.Cause == nil {
		return ErrSessionLost.Error()
	}
	return ErrSessionLost.Error() + ": " + e.Cause.Error()
}

// Is matches ErrSessionLost.
func (e *SessionLostError) Is(target error) bool { return target == ErrSessionLost }

// Unwrap returns the cause.
func (e *SessionLostError) Unwrap() error { return e.Cause }

// StreamResetError reports a stream the peer reset, with the code it gave
// (Stream.ResetWithCode; 0 for Stream.Reset). errors.Is matches
// ErrStreamReset.
type StreamResetError struct {
	Code uint32
}

func (e *StreamResetError) Error() string {
	return fmt.Sprintf("sdk: stream reset by peer (code %d)", e.Code)
}

// Is matches ErrStreamReset.
func (e *StreamResetError) Is(target error) bool { return target == ErrStreamReset }

// NoPathError reports that ICE found no way to the peer. Its Error is one
// line; Dump lists the candidates gathered on both sides and the checks
// tried, for logs and bug reports. errors.Is matches ErrNoPath.
type NoPathError struct {
	Peer PeerID
	Dump string
}

func (e *NoPathError) Error() string {
	return fmt.Sprintf("sdk: no path to %s: no candidate pair worked (NoPathError.Dump lists them)", e.Peer.Short())
}

// Is matches ErrNoPath.
func (e *NoPathError) Is(target error) bool { return target == ErrNoPath }

// timeoutError is a net.Error reporting a peer that stopped answering.
type timeoutError struct{ msg string }

func (e *timeoutError) Error() string { return e.msg }
func (e *timeoutError) Timeout() bool { return true }
func (e *timeoutError) Temporary() bool {
	return true
}
