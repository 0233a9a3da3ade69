package dht

import (
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/ferrynet/ferry/identity"
)

// Get asks a node for the records it stores under Key (type [TypeGet]):
// a peer record (Key is a PeerID) or a topic's announcements (Key is a
// [TopicKey]). The answer is [Values].
//
//	field 1  key     bytes (32)  tag 0x0a
//	field 2  server  bool        tag 0x10
type Get struct {
	Key identity.PeerID
	// Server is set by a sender that serves the DHT.
	Server bool
}

const (
	getKey    protowire.Number = 1
	getServer protowire.Number = 2
)

// Type returns [TypeGet].
func (*Get) Type() Type { return TypeGet }

// FromServer reports m.Server.
func (m *Get) FromServer() bool { return m.Server }

// Len returns the size of the encoded message.
func (m *Get) Len() int {
	return sizeBytesField(getKey, len(idBytes(m.Key))) + sizeVarintField(getServer, boolVarint(m.Server))
}

// Append appends the encoded message to b.
func (m *Get) Append(b []byte) ([]byte, error) {
	b = appendBytesField(b, getKey, idBytes(m.Key))
	return appendVarintField(b, getServer, boolVarint(m.Server)), nil
}

// Unmarshal resets m and decodes b into it.
func (m *Get) Unmarshal(b []byte) error {
	*m = Get{}
	for len(b) > 0 {
		num, typ, n, err := consumeTag("get", b)
		if err != nil {
			return err
		}
		b = b[n:]
		switch num {
		case getKey:
			m.Key, n, err = consumeID("get", num, typ, b)
		case getServer:
			m.Server, n, err = consumeBool("get", num, typ, b)
		default:
			n, err = skipField("get", num, typ, b)
		}
		if err != nil {
			return err
		}
		b = b[n:]
	}
	return nil
}
