package wire

import "google.golang.org/protobuf/encoding/protowire"

// Receipt tells a peer that a routed message it sent with a non-zero ID
// reached the target's queue (type [TypeReceipt]). It says nothing about
// whether the target has read it yet.
//
// Payload (protobuf message ferry.signal.v1.Receipt):
//
//	field 1  id    uint64   wire type 0: tag 0x08, varint
//	field 2  peer  bytes    wire type 2: tag 0x12, length 32, bytes
type Receipt struct {
	// ID is the routed message's ID.
	ID uint64
	// Peer is the target it was sent to.
	Peer [PeerIDLen]byte
}

const (
	receiptID   protowire.Number = 1
	receiptPeer protowire.Number = 2
)

var _ Message = (*Receipt)(nil)

// Type returns [TypeReceipt].
func (*Receipt) Type() Type { return TypeReceipt }

// Len returns the size of the encoded message.
func (m *Receipt) Len() int {
	return sizeVarintField(receiptID, m.ID) + sizeFixedField(receiptPeer, m.Peer[:])
}

// Append appends the encoded message to b. It cannot fail.
func (m *Receipt) Append(b []byte) ([]byte, error) {
	b = appendVarintField(b, receiptID, m.ID)
	return appendFixedField(b, receiptPeer, m.Peer[:]), nil
}

// Unmarshal resets m and decodes b into it.
func (m *Receipt) Unmarshal(b []byte) error {
	const msg = "receipt"
	*m = Receipt{}
	for len(b) > 0 {
		num, typ, n, err := consumeTag(msg, b)
		if err != nil {
			return err
		}
		b = b[n:]
		switch num {
		case receiptID:
			m.ID, n, err = consumeVarint(msg, num, typ, b)
		case receiptPeer:
			n, err = consumeFixed(msg, num, typ, b, m.Peer[:])
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
