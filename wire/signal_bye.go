package wire

import "google.golang.org/protobuf/encoding/protowire"

// Bye ends the signaling for one session (type [TypeBye]): the sender
// refuses an offer, gives up, or has closed the connection.
//
// Payload (protobuf message ferry.signal.v1.Bye): the [RouteHeader]
// (fields 1-3), then
//
//	field 4  reason  string   wire type 2: tag 0x22, length, UTF-8, at most 1024 bytes
type Bye struct {
	RouteHeader
	// Reason is human-readable, for logs. At most [MaxReasonLen] bytes.
	Reason string
}

const byeReason protowire.Number = 4

var _ RoutedMessage = (*Bye)(nil)

// Type returns [TypeBye].
func (*Bye) Type() Type { return TypeBye }

// Len returns the size of the encoded message.
func (m *Bye) Len() int {
	return m.len() + sizeBytesField(byeReason, len(m.Reason))
}

// Append appends the encoded message to b.
func (m *Bye) Append(b []byte) ([]byte, error) {
	if err := checkString("bye", "reason", m.Reason, MaxReasonLen); err != nil {
		return b, err
	}
	b, err := m.append("bye", b)
	if err != nil {
		return b, err
	}
	return appendStringField(b, byeReason, m.Reason), nil
}

// Unmarshal resets m and decodes b into it. It copies what it keeps.
func (m *Bye) Unmarshal(b []byte) error {
	const msg = "bye"
	*m = Bye{}
	return unmarshalRouted(msg, b, &m.RouteHeader, func(num protowire.Number, typ protowire.Type, b []byte) (n int, ok bool, err error) {
		if num != byeReason {
			return 0, false, nil
		}
		m.Reason, n, err = consumeString(msg, num, typ, b, MaxReasonLen)
		return n, true, err
	})
}
