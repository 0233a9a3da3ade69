package dht

import "errors"

// Sentinel errors. The package wraps them with %w and adds what it saw, so
// test with [errors.Is].
var (
	// ErrMalformed means a message or record could not be decoded: a
	// truncated or overlong varint, a length past the end, a field with the
	// wrong wire type, a value out of range, invalid UTF-8, or a list or
	// string over its bound (SPEC.md, "Bounds"). The encoder returns it for
	// a message that breaks a bound.
	ErrMalformed = errors.New("malformed DHT message")

	// ErrMessageTooLarge means an encoded message exceeds [MaxMessageSize].
	ErrMessageTooLarge = errors.New("DHT message too large")

	// ErrUnknownType means a message's type byte names no message this
	// version knows.
	ErrUnknownType = errors.New("unknown DHT message type")

	// ErrRecordTooLarge means an encoded record exceeds [MaxRecordSize]
	// (1000 bytes, as BitTorrent's BEP 44).
	ErrRecordTooLarge = errors.New("record too large")

	// ErrBadSignature means a record's signature does not verify against
	// the public key it carries. It also matches identity.ErrBadSignature.
	ErrBadSignature = errors.New("bad record signature")

	// ErrWrongKey means a record was offered under a key it does not speak
	// for: a peer record under another PeerID, or an announcement under
	// another topic.
	ErrWrongKey = errors.New("record for the wrong key")

	// ErrExpired means a record's expiry has passed.
	ErrExpired = errors.New("record expired")

	// ErrExpiryTooFar means a record expires further ahead than a store
	// accepts ([MaxTTL]).
	ErrExpiryTooFar = errors.New("record expiry too far in the future")

	// ErrOldSeq means a store already holds a record from the same key with
	// a higher sequence number, or an equal one with different content.
	ErrOldSeq = errors.New("record sequence number not newer")

	// ErrTopicFull means a topic already holds the per-topic maximum of
	// announcements.
	ErrTopicFull = errors.New("topic full")

	// ErrSourceLimit means one source already has the per-source maximum of
	// announcements stored on the node.
	ErrSourceLimit = errors.New("too many announcements from one source")

	// ErrStoreFull means the node stores the maximum number of records.
	ErrStoreFull = errors.New("record store full")

	// ErrNotFound means a lookup ended without finding what it looked for.
	ErrNotFound = errors.New("not found in the DHT")

	// ErrBadOption reports an option value out of range.
	ErrBadOption = errors.New("dht: bad option")

	// ErrClosed means the node was closed.
	ErrClosed = errors.New("dht: node closed")

	// ErrUnexpectedResponse means a node answered a request with a message
	// of the wrong type.
	ErrUnexpectedResponse = errors.New("unexpected DHT response")
)
