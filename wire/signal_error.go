package wire

import (
	"strconv"

	"google.golang.org/protobuf/encoding/protowire"
)

// SignalError reports that the server refused a message or a request, or
// is about to close the connection (type [TypeSignalError]). When Fatal is
// set the server closes the connection right after it; otherwise only the
// message named by ID (or, for ID 0, the last message sent to Peer) was
// dropped and the connection goes on.
//
// Payload (protobuf message ferry.signal.v1.SignalError):
//
//	field 1  code                uint32   wire type 0: tag 0x08, varint (a SignalErrorCode)
//	field 2  reason              string   wire type 2: tag 0x12, length, UTF-8, at most 1024 bytes
//	field 3  id                  uint64   wire type 0: tag 0x18, varint
//	field 4  peer                bytes    wire type 2: tag 0x22, length 32, bytes
//	field 5  retry_after_millis  uint32   wire type 0: tag 0x28, varint
//	field 6  fatal               bool     wire type 0: tag 0x30, varint 0 or 1
type SignalError struct {
	Code SignalErrorCode
	// Reason is a human-readable explanation. At most [MaxReasonLen] bytes.
	Reason string
	// ID is the ID of the request or routed message refused, or 0.
	ID uint64
	// Peer is the target of the refused routed message, if any.
	Peer [PeerIDLen]byte
	// RetryAfterMillis, when not 0, is how long to wait before trying again.
	RetryAfterMillis uint32
	// Fatal says the server closes the connection after this frame.
	Fatal bool
}

// SignalErrorCode says what went wrong. Receivers treat codes they do not
// know like [SignalErrInternal].
type SignalErrorCode uint32

// Signaling error codes.
const (
	// SignalErrInternal: the server failed on its own account.
	SignalErrInternal SignalErrorCode = 0
	// SignalErrPeerNotFound: the target is not logged in at any replica.
	SignalErrPeerNotFound SignalErrorCode = 1
	// SignalErrBusy: the target does not read fast enough; its queue is
	// full and the message was dropped.
	SignalErrBusy SignalErrorCode = 2
	// SignalErrRateLimited: the sender exceeded its message rate; the
	// message was dropped. Fatal when the sender keeps flooding.
	SignalErrRateLimited SignalErrorCode = 3
	// SignalErrMalformed: a frame or payload did not decode, or a field
	// was missing or out of range. Fatal.
	SignalErrMalformed SignalErrorCode = 4
	// SignalErrUnknownType: a frame type the server does not accept from
	// peers. Fatal.
	SignalErrUnknownType SignalErrorCode = 5
	// SignalErrNotLoggedIn: a message other than LOGIN before the login.
	// Fatal.
	SignalErrNotLoggedIn SignalErrorCode = 6
	// SignalErrLoginFailed: the login was refused (bad signature, key that
	// does not match the PeerID, wrong nonce, stale time, other server
	// name, unsupported version). Fatal.
	SignalErrLoginFailed SignalErrorCode = 7
	// SignalErrLoginTimeout: no LOGIN within the login timeout. Fatal.
	SignalErrLoginTimeout SignalErrorCode = 8
	// SignalErrIdleTimeout: nothing received within the idle timeout.
	// Fatal.
	SignalErrIdleTimeout SignalErrorCode = 9
	// SignalErrTooLarge: a message over the server's maximum size. Fatal.
	SignalErrTooLarge SignalErrorCode = 10
	// SignalErrUnavailable: the server cannot serve this request now or
	// at all (no relay secret configured, registry unreachable).
	SignalErrUnavailable SignalErrorCode = 11
)

var signalErrorNames = [...]string{
	SignalErrInternal:     "internal error",
	SignalErrPeerNotFound: "peer not found",
	SignalErrBusy:         "busy",
	SignalErrRateLimited:  "rate limited",
	SignalErrMalformed:    "malformed",
	SignalErrUnknownType:  "unknown type",
	SignalErrNotLoggedIn:  "not logged in",
	SignalErrLoginFailed:  "login failed",
	SignalErrLoginTimeout: "login timeout",
	SignalErrIdleTimeout:  "idle timeout",
	SignalErrTooLarge:     "too large",
	SignalErrUnavailable:  "unavailable",
}

// String returns the code's name, such as "peer not found", or
// "SignalErrorCode(42)".
func (c SignalErrorCode) String() string {
	if uint64(c) < uint64(len(signalErrorNames)) {
		return signalErrorNames[c]
	}
	return "SignalErrorCode(" + strconv.FormatUint(uint64(c), 10) + ")"
}

const (
	signalErrCode       protowire.Number = 1
	signalErrReason     protowire.Number = 2
	signalErrID         protowire.Number = 3
	signalErrPeer       protowire.Number = 4
	signalErrRetryAfter protowire.Number = 5
	signalErrFatal      protowire.Number = 6
)

var _ Message = (*SignalError)(nil)

// Type returns [TypeSignalError].
func (*SignalError) Type() Type { return TypeSignalError }

// Len returns the size of the encoded message.
func (m *SignalError) Len() int {
	n := sizeVarintField(signalErrCode, uint64(m.Code)) +
		sizeBytesField(signalErrReason, len(m.Reason)) +
		sizeVarintField(signalErrID, m.ID) +
		sizeFixedField(signalErrPeer, m.Peer[:]) +
		sizeVarintField(signalErrRetryAfter, uint64(m.RetryAfterMillis))
	if m.Fatal {
		n += sizeVarintField(signalErrFatal, 1)
	}
	return n
}

// Append appends the encoded message to b.
func (m *SignalError) Append(b []byte) ([]byte, error) {
	if err := checkString("signal error", "reason", m.Reason, MaxReasonLen); err != nil {
		return b, err
	}
	b = appendVarintField(b, signalErrCode, uint64(m.Code))
	b = appendStringField(b, signalErrReason, m.Reason)
	b = appendVarintField(b, signalErrID, m.ID)
	b = appendFixedField(b, signalErrPeer, m.Peer[:])
	b = appendVarintField(b, signalErrRetryAfter, uint64(m.RetryAfterMillis))
	if m.Fatal {
		b = appendVarintField(b, signalErrFatal, 1)
	}
	return b, nil
}

// Unmarshal resets m and decodes b into it. It copies what it keeps.
func (m *SignalError) Unmarshal(b []byte) error {
	const msg = "signal error"
	*m = SignalError{}
	for len(b) > 0 {
		num, typ, n, err := consumeTag(msg, b)
		if err != nil {
			return err
		}
		b = b[n:]
		switch num {
		case signalErrCode:
			var c uint32
			c, n, err = consumeUint32(msg, num, typ, b)
			m.Code = SignalErrorCode(c)
		case signalErrReason:
			m.Reason, n, err = consumeString(msg, num, typ, b, MaxReasonLen)
		case signalErrID:
			m.ID, n, err = consumeVarint(msg, num, typ, b)
		case signalErrPeer:
			n, err = consumeFixed(msg, num, typ, b, m.Peer[:])
		case signalErrRetryAfter:
			m.RetryAfterMillis, n, err = consumeUint32(msg, num, typ, b)
		case signalErrFatal:
			var v uint64
			v, n, err = consumeVarint(msg, num, typ, b)
			m.Fatal = v != 0
		default:
			n, err = skipField(msg, num, typ, b)
		}
		if err != nil {
			return err
		}
		b = b[n:]
	}
	return nil
}

// Error formats the error, e.g. "signal error: peer not found: ...". It
// makes *SignalError usable as a Go error.
func (m *SignalError) Error() string {
	s := "signal error: " + m.Code.String()
	if m.Reason != "" {
		s += ": " + m.Reason
	}
	return s
}
