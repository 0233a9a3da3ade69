package wire

import "google.golang.org/protobuf/encoding/protowire"

// RouteHeader starts every routed message (OFFER, ANSWER, CANDIDATE,
// END_OF_CANDIDATES, BYE): fields 1 to 3 of each.
//
//	field 1  peer        bytes    wire type 2: tag 0x0a, length 32, bytes
//	field 2  session_id  bytes    wire type 2: tag 0x12, length, at most 32 bytes
//	field 3  id          uint64   wire type 0: tag 0x18, varint
//
// A peer sends a routed message with Peer set to the target. The server
// delivers it with Peer replaced by the authenticated sender, so a receiver
// can trust Peer; every other field passes through unchanged.
type RouteHeader struct {
	// Peer is the target (as sent) or the sender (as delivered).
	Peer [PeerIDLen]byte
	// SessionID names the connection attempt the message belongs to,
	// chosen by the peer that sends the OFFER and echoed in everything
	// that follows, so that one peer can run several at once. At most
	// [MaxSessionIDLen] bytes.
	SessionID []byte
	// ID, when not 0, asks the server for a [Receipt] (or a
	// [SignalError]) carrying it. Senders count up from 1 per connection.
	ID uint64
}

const (
	routePeer      protowire.Number = 1
	routeSessionID protowire.Number = 2
	routeID        protowire.Number = 3
)

// Header returns h, so that every routed message gives access to its
// header through [RoutedMessage].
func (h *RouteHeader) Header() *RouteHeader { return h }

func (h *RouteHeader) len() int {
	return sizeFixedField(routePeer, h.Peer[:]) +
		sizeBytesField(routeSessionID, len(h.SessionID)) +
		sizeVarintField(routeID, h.ID)
}

func (h *RouteHeader) append(msg string, b []byte) ([]byte, error) {
	if err := checkBytes(msg, "session ID", h.SessionID, MaxSessionIDLen); err != nil {
		return b, err
	}
	b = appendFixedField(b, routePeer, h.Peer[:])
	b = appendBytesField(b, routeSessionID, h.SessionID)
	return appendVarintField(b, routeID, h.ID), nil
}

// consume decodes one header field; ok is false for other field numbers.
func (h *RouteHeader) consume(msg string, num protowire.Number, typ protowire.Type, b []byte) (n int, ok bool, err error) {
	switch num {
	case routePeer:
		n, err = consumeFixed(msg, num, typ, b, h.Peer[:])
	case routeSessionID:
		var v []byte
		v, n, err = consumeBytes(msg, num, typ, b, MaxSessionIDLen)
		h.SessionID = cloneBytes(v)
	case routeID:
		h.ID, n, err = consumeVarint(msg, num, typ, b)
	default:
		return 0, false, nil
	}
	return n, true, err
}

// RoutedMessage is a message the rendezvous server routes between peers:
// [*Offer], [*Answer], [*Candidate], [*EndOfCandidates] or [*Bye].
type RoutedMessage interface {
	Message
	// Unmarshal resets the message and decodes a payload into it.
	Unmarshal(b []byte) error
	// Header returns the message's routing header, for reading or
	// changing it in place.
	Header() *RouteHeader
}

// NewRoutedMessage returns an empty routed message of type t, or nil if t
// is not a routed type (see [Type.Routed]).
func NewRoutedMessage(t Type) RoutedMessage {
	switch t {
	case TypeOffer:
		return new(Offer)
	case TypeAnswer:
		return new(Answer)
	case TypeCandidate:
		return new(Candidate)
	case TypeEndOfCandidates:
		return new(EndOfCandidates)
	case TypeBye:
		return new(Bye)
	}
	return nil
}

// unmarshalRouted is the decoding loop shared by the routed messages: the
// header fields go to h, the others to body (which returns ok false for
// unknown numbers, which are skipped).
func unmarshalRouted(msg string, b []byte, h *RouteHeader,
	body func(num protowire.Number, typ protowire.Type, b []byte) (int, bool, error),
) error {
	for len(b) > 0 {
		num, typ, n, err := consumeTag(msg, b)
		if err != nil {
			return err
		}
		b = b[n:]
		var ok bool
		n, ok, err = h.consume(msg, num, typ, b)
		if !ok {
			n, ok, err = body(num, typ, b)
		}
		if !ok {
			n, err = skipField(msg, num, typ, b)
		}
		if err != nil {
			return err
		}
		b = b[n:]
	}
	return nil
}
