package wire

// Pong answers a [Ping] (type [TypePong]), echoing its ID and SentUnixNano
// unchanged. Its payload is laid out exactly as PING's (protobuf message
// ferry.wire.v1.Pong, same field numbers and types):
//
//	field 1  id              uint64   wire type 0: tag 0x08, varint
//	field 2  sent_unix_nano  int64    wire type 0: tag 0x10, varint
type Pong struct {
	// ID is the ID of the PING answered.
	ID uint64
	// SentUnixNano is the PING's SentUnixNano, echoed.
	SentUnixNano int64
}

var _ Message = (*Pong)(nil)

// Type returns [TypePong].
func (*Pong) Type() Type { return TypePong }

// Len returns the size of the encoded message.
func (m *Pong) Len() int { return pingLen(m.ID, m.SentUnixNano) }

// Append appends the encoded message to b. It cannot fail.
func (m *Pong) Append(b []byte) ([]byte, error) {
	return appendPing(b, m.ID, m.SentUnixNano), nil
}

// Unmarshal resets m and decodes b into it.
func (m *Pong) Unmarshal(b []byte) error {
	var err error
	m.ID, m.SentUnixNano, err = unmarshalPing("pong", b)
	return err
}
