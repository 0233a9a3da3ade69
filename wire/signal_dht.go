package wire

import "google.golang.org/protobuf/encoding/protowire"

// MaxDHTMessageLen bounds DHT.Message, in bytes: package dht's largest
// message (type byte included).
const MaxDHTMessageLen = 24 << 10

// DHT carries one DHT message over signaling (type [TypeDHT]), between a
// peer and a rendezvous server that runs a DHT node. A request goes from the
// logged-in peer to the server, with a fresh ID; the server's DHT node
// answers with a DHT message carrying the same ID and its own PeerID, or a
// [SignalError] with the same ID. The server takes the requester to be the
// PeerID it logged in as.
//
// Payload (protobuf message ferry.signal.v1.DHT):
//
//	field 1  id       uint64  wire type 0: tag 0x08, varint
//	field 2  node     bytes   wire type 2: tag 0x12, length 32; answers only: the answering DHT node's PeerID
//	field 3  message  bytes   wire type 2: tag 0x1a, length, at most 24576 bytes: the DHT message (type byte and payload)
type DHT struct {
	// ID matches the answer to the request; senders count up from 1.
	ID uint64
	// Node is the answering DHT node's PeerID; all zero in a request.
	Node [PeerIDLen]byte
	// Message is one DHT message as package dht encodes it.
	Message []byte
}

const (
	dhtID      protowire.Number = 1
	dhtNode    protowire.Number = 2
	dhtMessage protowire.Number = 3
)

var _ Message = (*DHT)(nil)

// Type returns [TypeDHT].
func (*DHT) Type() Type { return TypeDHT }

func (m *DHT) hasNode() bool { return m.Node != [PeerIDLen]byte{} }

// Len returns the size of the encoded message.
func (m *DHT) Len() int {
	n := sizeVarintField(dhtID, m.ID) + sizeBytesField(dhtMessage, len(m.Message))
	if m.hasNode() {
		n += sizeBytesField(dhtNode, PeerIDLen)
	}
	return n
}

// Append appends the encoded message to b.
func (m *DHT) Append(b []byte) ([]byte, error) {
	const msg = "dht"
	if len(m.Message) == 0 {
		return b, malformedError(msg, "empty message")
	}
	if len(m.Message) > MaxDHTMessageLen {
		return b, malformedError(msg, "message is %d bytes, maximum %d", len(m.Message), MaxDHTMessageLen)
	}
	b = appendVarintField(b, dhtID, m.ID)
	if m.hasNode() {
		b = appendBytesField(b, dhtNode, m.Node[:])
	}
	return appendBytesField(b, dhtMessage, m.Message), nil
}

// Unmarshal resets m and decodes b into it. It copies what it keeps.
func (m *DHT) Unmarshal(b []byte) error {
	const msg = "dht"
	*m = DHT{}
	for len(b) > 0 {
		num, typ, n, err := consumeTag(msg, b)
		if err != nil {
			return err
		}
		b = b[n:]
		switch num {
		case dhtID:
			m.ID, n, err = consumeVarint(msg, num, typ, b)
		case dhtNode:
			var v []byte
			v, n, err = consumeBytes(msg, num, typ, b, PeerIDLen)
			if err == nil && len(v) != PeerIDLen {
				err = malformedError(msg, "node ID is %d bytes, want %d", len(v), PeerIDLen)
			}
			if err == nil {
				m.Node = [PeerIDLen]byte(v)
			}
		case dhtMessage:
			var v []byte
			v, n, err = consumeBytes(msg, num, typ, b, MaxDHTMessageLen)
			m.Message = append([]byte(nil), v...)
		default:
			n, err = skipField(msg, num, typ, b)
		}
		if err != nil {
			return err
		}
		b = b[n:]
	}
	if len(m.Message) == 0 {
		return malformedError(msg, "empty message")
	}
	return nil
}
