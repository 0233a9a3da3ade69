package wire

import (
	"strconv"

	"google.golang.org/protobuf/encoding/protowire"
)

// GoAway announces that the sender is closing the session, and why (type
// [TypeGoAway]). The sender closes the session after sending it; the
// receiver stops sending and closes too.
//
// Payload (protobuf message ferry.wire.v1.GoAway):
//
//	field 1  code                uint32   wire type 0: tag 0x08, varint (a GoAwayCode)
//	field 2  reason              string   wire type 2: tag 0x12, length, UTF-8, at most 1024 bytes
//	field 3  retry_after_millis  uint32   wire type 0: tag 0x18, varint
type GoAway struct {
	Code GoAwayCode
	// Reason is a human-readable explanation, for logs. At most
	// [MaxReasonLen] bytes.
	Reason string
	// RetryAfterMillis, when not 0, asks the peer to wait this long before
	// reconnecting.
	RetryAfterMillis uint32
}

// GoAwayCode says why a session is closed. Receivers treat codes they do
// not know like [GoAwayInternal].
type GoAwayCode uint32

// GOAWAY codes.
const (
	// GoAwayNormal: the application closed the connection.
	GoAwayNormal GoAwayCode = 0
	// GoAwayProtocolError: the peer broke the protocol (bad magic, bad CRC,
	// oversized frame, unknown type, malformed or truncated message, or a
	// message out of order).
	GoAwayProtocolError GoAwayCode = 1
	// GoAwayUnsupportedVersion: no version in the peer's HELLO is spoken here.
	GoAwayUnsupportedVersion GoAwayCode = 2
	// GoAwayFlowControl: the peer sent more DATA than the announced
	// receive window allows.
	GoAwayFlowControl GoAwayCode = 3
	// GoAwayInternal: the sender failed on its own account.
	GoAwayInternal GoAwayCode = 4
	// GoAwayShutdown: the sender is shutting down; reconnecting elsewhere
	// (or after RetryAfterMillis) may work.
	GoAwayShutdown GoAwayCode = 5
	// GoAwayReplaced: a newer session of the same connection (same ConnID)
	// replaces this one.
	GoAwayReplaced GoAwayCode = 6
	// GoAwayPolicy: the sender refuses the peer (authorization, rate limit).
	GoAwayPolicy GoAwayCode = 7
)

var goAwayNames = [...]string{
	GoAwayNormal:             "normal",
	GoAwayProtocolError:      "protocol error",
	GoAwayUnsupportedVersion: "unsupported version",
	GoAwayFlowControl:        "flow control",
	GoAwayInternal:           "internal error",
	GoAwayShutdown:           "shutdown",
	GoAwayReplaced:           "replaced",
	GoAwayPolicy:             "policy",
}

// String returns the code's name, such as "protocol error", or
// "GoAwayCode(42)" for a code this package does not define.
func (c GoAwayCode) String() string {
	if uint64(c) < uint64(len(goAwayNames)) {
		return goAwayNames[c]
	}
	return "GoAwayCode(" + strconv.FormatUint(uint64(c), 10) + ")"
}

const (
	goAwayCode       protowire.Number = 1
	goAwayReason     protowire.Number = 2
	goAwayRetryAfter protowire.Number = 3
)

var _ Message = (*GoAway)(nil)

// Type returns [TypeGoAway].
func (*GoAway) Type() Type { return TypeGoAway }

// Len returns the size of the encoded message.
func (m *GoAway) Len() int {
	return sizeVarintField(goAwayCode, uint64(m.Code)) +
		sizeBytesField(goAwayReason, len(m.Reason)) +
		sizeVarintField(goAwayRetryAfter, uint64(m.RetryAfterMillis))
}

// Append appends the encoded message to b.
func (m *GoAway) Append(b []byte) ([]byte, error) {
	if err := checkString("goaway", "reason", m.Reason, MaxReasonLen); err != nil {
		return b, err
	}
	b = appendVarintField(b, goAwayCode, uint64(m.Code))
	b = appendStringField(b, goAwayReason, m.Reason)
	return appendVarintField(b, goAwayRetryAfter, uint64(m.RetryAfterMillis)), nil
}

// Unmarshal resets m and decodes b into it. It copies what it keeps.
func (m *GoAway) Unmarshal(b []byte) error {
	*m = GoAway{}
	for len(b) > 0 {
		num, typ, n, err := consumeTag("goaway", b)
		if err != nil {
			return err
		}
		b = b[n:]
		switch num {
		case goAwayCode:
			var c uint32
			c, n, err = consumeUint32("goaway", num, typ, b)
			m.Code = GoAwayCode(c)
		case goAwayReason:
			m.Reason, n, err = consumeString("goaway", num, typ, b, MaxReasonLen)
		case goAwayRetryAfter:
			m.RetryAfterMillis, n, err = consumeUint32("goaway", num, typ, b)
		default:
			n, err = skipField("goaway", num, typ, b)
		}
		if err != nil {
			return err
		}
		b = b[n:]
	}
	return nil
}

// String formats the GOAWAY for logs and errors, e.g.
// "goaway: protocol error: bad checksum".
func (m *GoAway) String() string {
	s := "goaway: " + m.Code.String()
	if m.Reason != "" {
		s += ": " + m.Reason
	}
	return s
}
