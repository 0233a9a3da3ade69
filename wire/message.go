package wire

import (
	"fmt"
	"math"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protowire"
)

// Message is a control message: the protobuf payload of a frame of type
// Type(). Every message type in this package also has an Unmarshal method
// that resets the message, decodes a payload into it, skips unknown fields
// and returns errors wrapping [ErrMalformed].
//
// Encoders write fields in field-number order and omit fields that hold their
// zero value, so the encoding is exactly what a deterministic protobuf
// marshaler produces for the same values.
type Message interface {
	// Type returns the frame type that carries this message.
	Type() Type
	// Len returns the size of the encoded message.
	Len() int
	// Append appends the encoded message to b. It fails, wrapping
	// [ErrMalformed] and returning b unchanged, if the message breaks a
	// bound that its decoder enforces.
	Append(b []byte) ([]byte, error)
}

// Bounds that decoders enforce (and encoders, so that nothing is sent that
// the peer would refuse). They keep what a decoder allocates below a small
// multiple of its input's size.
const (
	// MaxVersions bounds Hello.Versions.
	MaxVersions = 64
	// MaxCapabilities bounds Hello.Capabilities.
	MaxCapabilities = 64
	// MaxCapabilityLen bounds each capability, in bytes.
	MaxCapabilityLen = 256
	// ConnIDLen is the length of a connection ID (Hello.ConnID).
	ConnIDLen = 16
	// MaxReasonLen bounds GoAway.Reason, in bytes.
	MaxReasonLen = 1024
	// MaxProtocolLen bounds StreamHeader.Protocol, in bytes.
	MaxProtocolLen = 256
)

// AppendMessage appends a whole frame carrying m (type m.Type(), seq 0) to b.
// It allocates nothing if cap(b) has room. On error it returns b unchanged.
func AppendMessage(b []byte, m Message) ([]byte, error) {
	start := len(b)
	b = appendHeader(b, m.Type(), 0, 0)
	b, err := m.Append(b)
	if err != nil {
		return b[:start], err
	}
	return finishFrame(b, start), nil
}

// finishFrame fills in the length of the frame that starts at b[start:] with
// its header written, and appends the trailer.
func finishFrame(b []byte, start int) []byte {
	n := len(b) - start - HeaderLen
	b[start+offLength] = byte(n >> 24)
	b[start+offLength+1] = byte(n >> 16)
	b[start+offLength+2] = byte(n >> 8)
	b[start+offLength+3] = byte(n)
	return appendCRC(b, start)
}

// malformedError builds an error for message msg wrapping ErrMalformed.
func malformedError(msg string, format string, args ...any) error {
	return fmt.Errorf("wire: %s: %s: %w", msg, fmt.Sprintf(format, args...), ErrMalformed)
}

// Encoding helpers. Each appends one field, omitting zero values as proto3
// does.

func sizeVarintField(num protowire.Number, v uint64) int {
	if v == 0 {
		return 0
	}
	return protowire.SizeTag(num) + protowire.SizeVarint(v)
}

func appendVarintField(b []byte, num protowire.Number, v uint64) []byte {
	if v == 0 {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.VarintType)
	return protowire.AppendVarint(b, v)
}

func sizeBytesField(num protowire.Number, n int) int {
	if n == 0 {
		return 0
	}
	return protowire.SizeTag(num) + protowire.SizeBytes(n)
}

func appendBytesField(b []byte, num protowire.Number, v []byte) []byte {
	if len(v) == 0 {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendBytes(b, v)
}

func appendStringField(b []byte, num protowire.Number, v string) []byte {
	if len(v) == 0 {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendString(b, v)
}

// Decoding helpers. Each consumes one field value after its tag, checks
// the wire type, and returns the number of bytes used.

// consumeTag reads a field tag.
func consumeTag(msg string, b []byte) (protowire.Number, protowire.Type, int, error) {
	num, typ, n := protowire.ConsumeTag(b)
	if n < 0 {
		return 0, 0, 0, malformedError(msg, "field tag: %v", protowire.ParseError(n))
	}
	return num, typ, n, nil
}

// wrongType is the error for a known field with an unexpected wire type.
func wrongType(msg string, num protowire.Number, typ, want protowire.Type) error {
	return malformedError(msg, "field %d has wire type %d, want %d", num, typ, want)
}

func consumeVarint(msg string, num protowire.Number, typ protowire.Type, b []byte) (uint64, int, error) {
	if typ != protowire.VarintType {
		return 0, 0, wrongType(msg, num, typ, protowire.VarintType)
	}
	v, n := protowire.ConsumeVarint(b)
	if n < 0 {
		return 0, 0, malformedError(msg, "field %d: %v", num, protowire.ParseError(n))
	}
	return v, n, nil
}

// consumeUint32 reads a uint32 field. Unlike some protobuf parsers, which
// truncate, it refuses a value that does not fit.
func consumeUint32(msg string, num protowire.Number, typ protowire.Type, b []byte) (uint32, int, error) {
	v, n, err := consumeVarint(msg, num, typ, b)
	if err != nil {
		return 0, 0, err
	}
	if v > math.MaxUint32 {
		return 0, 0, malformedError(msg, "field %d: value %d overflows uint32", num, v)
	}
	return uint32(v), n, nil
}

// consumeBytes reads a length-delimited field of at most maxLen bytes. The
// result aliases b.
func consumeBytes(msg string, num protowire.Number, typ protowire.Type, b []byte, maxLen int) ([]byte, int, error) {
	if typ != protowire.BytesType {
		return nil, 0, wrongType(msg, num, typ, protowire.BytesType)
	}
	v, n := protowire.ConsumeBytes(b)
	if n < 0 {
		return nil, 0, malformedError(msg, "field %d: %v", num, protowire.ParseError(n))
	}
	if len(v) > maxLen {
		return nil, 0, malformedError(msg, "field %d: %d bytes exceeds maximum %d", num, len(v), maxLen)
	}
	return v, n, nil
}

// consumeString reads a string field of at most maxLen bytes of valid UTF-8.
func consumeString(msg string, num protowire.Number, typ protowire.Type, b []byte, maxLen int) (string, int, error) {
	v, n, err := consumeBytes(msg, num, typ, b, maxLen)
	if err != nil {
		return "", 0, err
	}
	if !utf8.Valid(v) {
		return "", 0, malformedError(msg, "field %d: invalid UTF-8", num)
	}
	return string(v), n, nil
}

// skipField skips the value of an unknown field.
func skipField(msg string, num protowire.Number, typ protowire.Type, b []byte) (int, error) {
	n := protowire.ConsumeFieldValue(num, typ, b)
	if n < 0 {
		return 0, malformedError(msg, "unknown field %d: %v", num, protowire.ParseError(n))
	}
	return n, nil
}

// checkString is the encoder's counterpart of consumeString.
func checkString(msg, field, v string, maxLen int) error {
	if len(v) > maxLen {
		return malformedError(msg, "%s is %d bytes, maximum %d", field, len(v), maxLen)
	}
	if !utf8.ValidString(v) {
		return malformedError(msg, "%s is not valid UTF-8", field)
	}
	return nil
}
