package wire

import "google.golang.org/protobuf/encoding/protowire"

// LoggedIn accepts a LOGIN (type [TypeLoggedIn]). From now on the peer may
// send routed messages and requests, and receives messages addressed to
// PeerID.
//
// Payload (protobuf message ferry.signal.v1.LoggedIn):
//
//	field 1  peer_id              bytes    wire type 2: tag 0x0a, length 32, bytes
//	field 2  server_id            string   wire type 2: tag 0x12, length, UTF-8, at most 128 bytes
//	field 3  idle_timeout_millis  uint32   wire type 0: tag 0x18, varint
//	field 4  max_payload          uint32   wire type 0: tag 0x20, varint
type LoggedIn struct {
	// PeerID is the identity the server accepted.
	PeerID [PeerIDLen]byte
	// ServerID names the server replica, for logs.
	ServerID string
	// IdleTimeoutMillis is how long the server lets the connection go
	// without receiving a frame; the peer sends PING well within it.
	IdleTimeoutMillis uint32
	// MaxPayload is the largest frame payload the server accepts.
	MaxPayload uint32
}

const (
	loggedInPeerID      protowire.Number = 1
	loggedInServerID    protowire.Number = 2
	loggedInIdleTimeout protowire.Number = 3
	loggedInMaxPayload  protowire.Number = 4
)

var _ Message = (*LoggedIn)(nil)

// Type returns [TypeLoggedIn].
func (*LoggedIn) Type() Type { return TypeLoggedIn }

// Len returns the size of the encoded message.
func (m *LoggedIn) Len() int {
	return sizeFixedField(loggedInPeerID, m.PeerID[:]) +
		sizeBytesField(loggedInServerID, len(m.ServerID)) +
		sizeVarintField(loggedInIdleTimeout, uint64(m.IdleTimeoutMillis)) +
		sizeVarintField(loggedInMaxPayload, uint64(m.MaxPayload))
}

// Append appends the encoded message to b.
func (m *LoggedIn) Append(b []byte) ([]byte, error) {
	if err := checkString("logged in", "server ID", m.ServerID, MaxServerIDLen); err != nil {
		return b, err
	}
	b = appendFixedField(b, loggedInPeerID, m.PeerID[:])
	b = appendStringField(b, loggedInServerID, m.ServerID)
	b = appendVarintField(b, loggedInIdleTimeout, uint64(m.IdleTimeoutMillis))
	return appendVarintField(b, loggedInMaxPayload, uint64(m.MaxPayload)), nil
}

// Unmarshal resets m and decodes b into it. It copies what it keeps.
func (m *LoggedIn) Unmarshal(b []byte) error {
	const msg = "logged in"
	*m = LoggedIn{}
	for len(b) > 0 {
		num, typ, n, err := consumeTag(msg, b)
		if err != nil {
			return err
		}
		b = b[n:]
		switch num {
		case loggedInPeerID:
			n, err = consumeFixed(msg, num, typ, b, m.PeerID[:])
		case loggedInServerID:
			m.ServerID, n, err = consumeString(msg, num, typ, b, MaxServerIDLen)
		case loggedInIdleTimeout:
			m.IdleTimeoutMillis, n, err = consumeUint32(msg, num, typ, b)
		case loggedInMaxPayload:
			m.MaxPayload, n, err = consumeUint32(msg, num, typ, b)
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
