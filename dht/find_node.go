package dht

import (
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/ferrynet/ferry/identity"
)

// FindNode asks a node for the contacts it knows closest to Target (type
// [TypeFindNode]); the answer is [Nodes].
//
//	field 1  target  bytes (32)  tag 0x0a
//	field 2  server  bool        tag 0x10
type FindNode struct {
	Target identity.PeerID
	// Server is set by a sender that serves the DHT.
	Server bool
}

const (
	findNodeTarget protowire.Number = 1
	findNodeServer protowire.Number = 2
)

// Type returns [TypeFindNode].
func (*FindNode) Type() Type { return TypeFindNode }

// FromServer reports m.Server.
func (m *FindNode) FromServer() bool { return m.Server }

// Len returns the size of the encoded message.
func (m *FindNode) Len() int {
	return sizeBytesField(findNodeTarget, len(idBytes(m.Target))) + sizeVarintField(findNodeServer, boolVarint(m.Server))
}

// Append appends the encoded message to b.
func (m *FindNode) Append(b []byte) ([]byte, error) {
	b = appendBytesField(b, findNodeTarget, idBytes(m.Target))
	return appendVarintField(b, findNodeServer, boolVarint(m.Server)), nil
}

// Unmarshal resets m and decodes b into it.
func (m *FindNode) Unmarshal(b []byte) error {
	*m = FindNode{}
	for len(b) > 0 {
		num, typ, n, err := consumeTag("find_node", b)
		if err != nil {
			return err
		}
		b = b[n:]
		switch num {
		case findNodeTarget:
			m.Target, n, err = consumeID("find_node", num, typ, b)
		case findNodeServer:
			m.Server, n, err = consumeBool("find_node", num, typ, b)
		default:
			n, err = skipField("find_node", num, typ, b)
		}
		if err != nil {
			return err
		}
		b = b[n:]
	}
	return nil
}
