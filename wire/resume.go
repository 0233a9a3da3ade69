package wire

import "google.golang.org/protobuf/encoding/protowire"

// Resume opens every session of a connection, after HELLO (type
// [TypeResume]). Each side states how far it got, so the other resends what
// was lost with the previous session; both are 0 on a new connection.
//
// Payload (protobuf message ferry.wire.v1.Resume):
//
//	field 1  last_received  uint64   wire type 0: tag 0x08, varint
//	field 2  last_consumed  uint64   wire type 0: tag 0x10, varint
type Resume struct {
	// LastReceived is the highest DATA seq the sender has received in
	// order; the peer resends from LastReceived+1.
	LastReceived uint64
	// LastConsumed is the highest DATA seq the sender's application has
	// consumed, an implicit ACK.
	LastConsumed uint64
}

const (
	resumeLastReceived protowire.Number = 1
	resumeLastConsumed protowire.Number = 2
)

var _ Message = (*Resume)(nil)

// Type returns [TypeResume].
func (*Resume) Type() Type { return TypeResume }

// Len returns the size of the encoded message.
func (m *Resume) Len() int {
	return sizeVarintField(resumeLastReceived, m.LastReceived) +
		sizeVarintField(resumeLastConsumed, m.LastConsumed)
}

// Append appends the encoded message to b. It cannot fail.
func (m *Resume) Append(b []byte) ([]byte, error) {
	b = appendVarintField(b, resumeLastReceived, m.LastReceived)
	return appendVarintField(b, resumeLastConsumed, m.LastConsumed), nil
}

// Unmarshal resets m and decodes b into it.
func (m *Resume) Unmarshal(b []byte) error {
	*m = Resume{}
	for len(b) > 0 {
		num, typ, n, err := consumeTag("resume", b)
		if err != nil {
			return err
		}
		b = b[n:]
		switch num {
		case resumeLastReceived:
			m.LastReceived, n, err = consumeVarint("resume", num, typ, b)
		case resumeLastConsumed:
			m.LastConsumed, n, err = consumeVarint("resume", num, typ, b)
		default:
			n, err = skipField("resume", num, typ, b)
		}
		if err != nil {
			return err
		}
		b = b[n:]
	}
	return nil
}
