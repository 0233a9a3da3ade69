package natprobe

import (
	"errors"
	"fmt"
)

// Sentinel errors. Probe wraps them with %w.
var (
	// ErrConfig means the Config is unusable (cmd/natprobe exits 2).
	ErrConfig = errors.New("natprobe: bad configuration")
	// ErrNoResponse means a STUN transaction got no acceptable answer
	// within its timeout. It is a net.Error whose Timeout() is true.
	ErrNoResponse error = noResponseError{}
	// ErrServerUnreachable means nothing reached the server: no answer over
	// UDP nor over TCP, and no TURN server reachable either.
	ErrServerUnreachable = errors.New("natprobe: STUN server unreachable over UDP and TCP")
	// ErrBadResponse means the server answered our transaction with a
	// message we cannot use (an error response, or no mapped address).
	ErrBadResponse = errors.New("natprobe: unusable STUN response")
)

// ResponseError is a STUN error response to our transaction. It wraps
// ErrBadResponse.
type ResponseError struct {
	Code   int
	Reason string
}

func (e *ResponseError) Error() string {
	return fmt.Sprintf("%v: error %d %s", ErrBadResponse, e.Code, e.Reason)
}

func (e *ResponseError) Unwrap() error { return ErrBadResponse }

type noResponseError struct{}

func (noResponseError) Error() string   { return "natprobe: no STUN response" }
func (noResponseError) Timeout() bool   { return true }
func (noResponseError) Temporary() bool { return true }
