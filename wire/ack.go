package wire

import "google.golang.org/protobuf/encoding/protowire"

// Ack acknowledges DATA cumulatively (type [TypeAck]): every DATA message
// with seq <= Cumulative has been consumed by the receiving application, so
// the sender may drop it from its resend buffer.
//
// Payload (protobuf message ferry.wire.v1.Ack):
//
//	field 1  cumulative  uint64   wire type 0: tag 0x08, varint
type Ack struct {
	Cumulative uint64
}

const ackCumulative protowire.Number = 1

var _ Message = (*Ack)(nil)

// Type returns [TypeAck].
func (*Ack) Type() Type { return TypeAck }

// Len returns the size of the encoded message.
func (m *Ack) Len() int { return sizeVarintField(ackCumulative, m.Cumulative) }

// Append appends the encoded message to b. It cannot fail.
func (m *Ack) Append(b []byte) ([]byte, error) {
	return appendVarintField(b, ackCumulative, m.Cumulative), nil
}

// Unmarshal resets m and decodes b into it.
func (m *Ack) Unmarshal(b []byte) error {
	*m = Ack{}
	for len(b) > 0 {
		num, typ, n, err := consumeTag("ack", b)
		if err != nil {
			return err
		}
		b = b[n:]
		switch num {
		case ackCumulative:
			m.Cumulative, n, err = consumeVarint("ack", num, typ, b)
		default:
			n, err = skipField("ack", num, typ, b)
		}
		if err != nil {
			return err
		}
		b = b[n:]
	}
	return nil
}
