package signal

import (
	"errors"
	"fmt"
	"time"

	"github.com/ferrynet/ferry/wire"
)

// Sentinel errors. Errors from the server are *ServerError values, which
// match the sentinel of their code with errors.Is.
var (
	// ErrPeerNotFound: the target is not logged in at the rendezvous (at
	// any of its replicas).
	ErrPeerNotFound = errors.New("rendezvous: peer not found")
	// ErrBusy: the target does not read its messages fast enough; this one
	// was dropped. Retry later.
	ErrBusy = errors.New("rendezvous: peer busy")
	// ErrRateLimited: this client sent faster than the server allows; the
	// message was dropped.
	ErrRateLimited = errors.New("rendezvous: rate limited")
	// ErrUnavailable: the server cannot serve the request now (its
	// registry is unreachable) or at all.
	ErrUnavailable = errors.New("rendezvous: unavailable")
	// ErrLoginRefused: the server refused the login (see the wrapped
	// *ServerError for why: signature, clock, server name, ...).
	ErrLoginRefused = errors.New("rendezvous: login refused")
	// ErrReplaced: another login with this identity took over; the client
	// stops, since reconnecting would take the identity back and forth.
	ErrReplaced = errors.New("rendezvous: replaced by another login of this peer ID")
	// ErrDisconnected: the connection was lost while waiting for the
	// server's answer; the message may or may not have been delivered.
	ErrDisconnected = errors.New("rendezvous: disconnected")
	// ErrClosed: the client is closed.
	ErrClosed = errors.New("rendezvous: client closed")
	// ErrProtocol: the server broke the signaling protocol.
	ErrProtocol = errors.New("rendezvous: protocol error")
)

// ServerError is a SIGNAL_ERROR from the server.
type ServerError struct {
	Code   wire.SignalErrorCode
	Reason string
	// RetryAfter is the server's hint before trying again, or 0.
	RetryAfter time.Duration
	// Fatal says the server closed the connection after it.
	Fatal bool
}

func (e *ServerError) Error() string {
	return fmt.Sprintf("rendezvous: %v: %s", e.Code, e.Reason)
}

// Is matches the sentinel of the error's code.
func (e *ServerError) Is(target error) bool {
	switch e.Code {
	case wire.SignalErrPeerNotFound:
		return target == ErrPeerNotFound
	case wire.SignalErrBusy:
		return target == ErrBusy
	case wire.SignalErrRateLimited:
		return target == ErrRateLimited
	case wire.SignalErrUnavailable:
		return target == ErrUnavailable
	case wire.SignalErrLoginFailed:
		return target == ErrLoginRefused
	}
	return false
}

func serverError(m *wire.SignalError) *ServerError {
	return &ServerError{
		Code:       m.Code,
		Reason:     m.Reason,
		RetryAfter: time.Duration(m.RetryAfterMillis) * time.Millisecond,
		Fatal:      m.Fatal,
	}
}
