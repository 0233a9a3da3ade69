package wire

import "google.golang.org/protobuf/encoding/protowire"

// StreamHeader is the payload of the one frame (type [TypeStream]) that
// opens an application stream: a bidirectional QUIC stream other than the
// control stream. It names the application protocol spoken on the stream;
// after the frame, the stream carries raw bytes.
//
// Payload (protobuf message ferry.wire.v1.StreamHeader):
//
//	field 1  protocol  string   wire type 2: tag 0x0a, length, UTF-8, 1 to 256 bytes
type StreamHeader struct {
	// Protocol names the application protocol, e.g. "ferry/file/1".
	// Required; at most [MaxProtocolLen] bytes.
	Protocol string
}

const streamProtocol protowire.Number = 1

var _ Message = (*StreamHeader)(nil)

// Type returns [TypeStream].
func (*StreamHeader) Type() Type { return TypeStream }

// Len returns the size of the encoded message.
func (m *StreamHeader) Len() int { return sizeBytesField(streamProtocol, len(m.Protocol)) }

// Append appends the encoded message to b. An empty or oversized protocol
// is an error.
func (m *StreamHeader) Append(b []byte) ([]byte, error) {
	if err := m.validate(); err != nil {
		return b, err
	}
	return appendStringField(b, streamProtocol, m.Protocol), nil
}

func (m *StreamHeader) validate() error {
	if m.Protocol == "" {
		return malformedError("stream header", "no protocol")
	}
	return checkString("stream header", "protocol", m.Protocol, MaxProtocolLen)
}

// Unmarshal resets m and decodes b into it. It copies what it keeps. A
// header without a protocol is malformed.
func (m *StreamHeader) Unmarshal(b []byte) error {
	*m = StreamHeader{}
	for len(b) > 0 {
		num, typ, n, err := consumeTag("stream header", b)
		if err != nil {
			return err
		}
		b = b[n:]
		switch num {
		case streamProtocol:
			m.Protocol, n, err = consumeString("stream header", num, typ, b, MaxProtocolLen)
		default:
			n, err = skipField("stream header", num, typ, b)
		}
		if err != nil {
			return err
		}
		b = b[n:]
	}
	if m.Protocol == "" {
		return malformedError("stream header", "no protocol")
	}
	return nil
}
