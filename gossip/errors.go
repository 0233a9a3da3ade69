package gossip

import "errors"

// Sentinel errors. The package wraps them with %w and adds what it saw, so
// test with [errors.Is].
var (
	// ErrMalformed means a frame could not be decoded: truncated, a length
	// past the end, trailing bytes, a count or a topic out of range
	// (SPEC.md, "Bounds"). The encoder returns it for a frame that breaks a
	// bound.
	ErrMalformed = errors.New("gossip: malformed frame")

	// ErrUnknownType means a frame's type byte names no frame this version
	// knows.
	ErrUnknownType = errors.New("gossip: unknown frame type")

	// ErrBadVersion means a frame's version byte is not [Version].
	ErrBadVersion = errors.New("gossip: unknown frame version")

	// ErrTooLarge means a message's data exceeds the router's maximum
	// (4 KiB by default, [DefaultMaxData]).
	ErrTooLarge = errors.New("gossip: message too large")

	// ErrBadSignature means a message's signature does not verify against
	// the public key it carries.
	ErrBadSignature = errors.New("gossip: bad message signature")

	// ErrClosed means the router or the topic has been closed.
	ErrClosed = errors.New("gossip: closed")

	// ErrBadTopic means a topic name is empty or longer than [MaxTopicLen].
	ErrBadTopic = errors.New("gossip: bad topic name")
)
