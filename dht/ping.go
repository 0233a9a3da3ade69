package dht

import "google.golang.org/protobuf/encoding/protowire"

// Ping asks a node whether it is alive (type [TypePing]); the answer is
// [Pong]. Tables ping the head of a full bucket before evicting it, and a
// server pings a server that sent it a request before adding it.
//
//	field 1  server  bool  tag 0x08
type Ping struct {
	// Server is set by a sender that serves the DHT.
	Server bool
}

const pingServer protowire.Number = 1

// Type returns [TypePing].
func (*Ping) Type() Type { return TypePing }

// FromServer reports m.Server.
func (m *Ping) FromServer() bool { return m.Server }

// Len returns the size of the encoded message.
func (m *Ping) Len() int { return sizeVarintField(pingServer, boolVarint(m.Server)) }

// Append appends the encoded message to b.
func (m *Ping) Append(b []byte) ([]byte, error) {
	return appendVarintField(b, pingServer, boolVarint(m.Server)), nil
}

// Unmarshal resets m and decodes b into it.
func (m *Ping) Unmarshal(b []byte) error {
	*m = Ping{}
	for len(b) > 0 {
		num, typ, n, err := consumeTag("ping", b)
		if err != nil {
			return err
		}
		b = b[n:]
		switch num {
		case pingServer:
			m.Server, n, err = consumeBool("ping", num, typ, b)
		default:
			n, err = skipField("ping", num, typ, b)
		}
		if err != nil {
			return err
		}
		b = b[n:]
	}
	return nil
}
