package rendezvous

import "errors"

// Errors returned by New, Validate and Close. They are wrapped with detail;
// test with errors.Is.
var (
	// ErrInvalidConfig reports a Config that Validate refuses.
	ErrInvalidConfig = errors.New("rendezvous: invalid config")

	// ErrClosed is returned by methods called after Close.
	ErrClosed = errors.New("rendezvous: server closed")
)
