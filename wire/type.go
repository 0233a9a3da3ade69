package wire

import "strconv"

// Type is a frame's type byte. It says how to read the payload.
//
// The values 0x01-0x0F belong to the session protocol and are defined here.
// Reserved ranges, for packages that will define their own types:
//
//	0x10-0x1F  signaling (rendezvous)
//	0x20-0x2F  DHT
//	0x30-0x3F  gossip
//	0x80-0xFF  experimental; never sent by a release build
//
// Everything else (0x00, 0x09-0x0F, 0x40-0x7F) is unassigned. The frame codec
// carries any type; deciding what to do with one is the caller's business
// (see [ErrUnknownType] and [Type.Known]).
type Type uint8

// Frame types of the session protocol.
const (
	// TypeHello opens the control stream: versions, maximum payload,
	// capabilities, connection ID, receive window. Payload: [Hello].
	TypeHello Type = 0x01
	// TypePing is a heartbeat probe. Payload: [Ping].
	TypePing Type = 0x02
	// TypePong answers a PING, echoing its fields. Payload: [Pong].
	TypePong Type = 0x03
	// TypeData carries one application message. The payload is the raw
	// message bytes (no protobuf) and the frame's seq is the message's
	// sequence number, starting at 1.
	TypeData Type = 0x04
	// TypeAck acknowledges consumed DATA cumulatively. Payload: [Ack].
	TypeAck Type = 0x05
	// TypeResume states what a side has received and consumed, at the start
	// of every session of a connection. Payload: [Resume].
	TypeResume Type = 0x06
	// TypeGoAway announces that the sender closes the session, and why.
	// Payload: [GoAway].
	TypeGoAway Type = 0x07
	// TypeStream is the header frame that opens an application stream.
	// Payload: [StreamHeader].
	TypeStream Type = 0x08
)

// Reserved type ranges (inclusive bounds).
const (
	TypeSignalingFirst    Type = 0x10
	TypeSignalingLast     Type = 0x1F
	TypeDHTFirst          Type = 0x20
	TypeDHTLast           Type = 0x2F
	TypeGossipFirst       Type = 0x30
	TypeGossipLast        Type = 0x3F
	TypeExperimentalFirst Type = 0x80
	TypeExperimentalLast  Type = 0xFF
)

var typeNames = [...]string{
	TypeHello:  "HELLO",
	TypePing:   "PING",
	TypePong:   "PONG",
	TypeData:   "DATA",
	TypeAck:    "ACK",
	TypeResume: "RESUME",
	TypeGoAway: "GOAWAY",
	TypeStream: "STREAM",
}

// String returns the type's name, such as "HELLO" or "OFFER", or
// "Type(0x2a)" for a type this package does not define.
func (t Type) String() string {
	if t.Known() {
		return typeNames[t]
	}
	if t.Signaling() {
		return signalNames[t-TypeSignalingFirst]
	}
	return "Type(0x" + strconv.FormatUint(uint64(t), 16) + ")"
}

// Known reports whether t is one of the session-protocol types defined in
// this package (0x01-0x08). The signaling types have [Type.Signaling].
func (t Type) Known() bool {
	return t >= TypeHello && t <= TypeStream
}
