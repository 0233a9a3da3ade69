package wire

import "google.golang.org/protobuf/encoding/protowire"

// BootstrapRequest asks the server for DHT seeds (type
// [TypeBootstrapRequest]). The server answers with [Bootstrap] or a
// [SignalError] carrying the same ID.
//
// Payload (protobuf message ferry.signal.v1.BootstrapRequest):
//
//	field 1  id  uint64   wire type 0: tag 0x08, varint
type BootstrapRequest struct {
	// ID matches the answer to the request; senders count up from 1.
	ID uint64
}

var _ Message = (*BootstrapRequest)(nil)

// Type returns [TypeBootstrapRequest].
func (*BootstrapRequest) Type() Type { return TypeBootstrapRequest }

// Len returns the size of the encoded message.
func (m *BootstrapRequest) Len() int { return sizeVarintField(requestID, m.ID) }

// Append appends the encoded message to b. It cannot fail.
func (m *BootstrapRequest) Append(b []byte) ([]byte, error) {
	return appendVarintField(b, requestID, m.ID), nil
}

// Unmarshal resets m and decodes b into it.
func (m *BootstrapRequest) Unmarshal(b []byte) (err error) {
	m.ID, err = unmarshalRequest("bootstrap request", b)
	return err
}

// Bootstrap answers a [BootstrapRequest] (type [TypeBootstrap]) with
// where a new DHT node can start: rendezvous servers that seed the DHT
// (this one first), and PeerIDs of online peers that offered themselves as
// DHT nodes (login capability "dht"), reachable through this server.
//
// Payload (protobuf message ferry.signal.v1.Bootstrap):
//
//	field 1  id     uint64            wire type 0: tag 0x08, varint
//	field 2  seeds  repeated string   wire type 2: tag 0x12, length, UTF-8, at most 32 of 512 bytes
//	field 3  peers  repeated bytes    wire type 2: tag 0x1a, length 32, bytes, at most 64 entries
type Bootstrap struct {
	// ID is the request's ID.
	ID uint64
	// Seeds are signaling URLs of rendezvous servers that seed the DHT,
	// such as "wss://rendezvous.example.com/v1/signal".
	Seeds []string
	// Peers are PeerIDs of DHT-capable peers online at this server.
	Peers [][PeerIDLen]byte
}

const (
	bootID    protowire.Number = 1
	bootSeeds protowire.Number = 2
	bootPeers protowire.Number = 3
)

var _ Message = (*Bootstrap)(nil)

// Type returns [TypeBootstrap].
func (*Bootstrap) Type() Type { return TypeBootstrap }

// Len returns the size of the encoded message.
func (m *Bootstrap) Len() int {
	return sizeVarintField(bootID, m.ID) + sizeStrings(bootSeeds, m.Seeds) +
		len(m.Peers)*(protowire.SizeTag(bootPeers)+protowire.SizeBytes(PeerIDLen))
}

// Append appends the encoded message to b.
func (m *Bootstrap) Append(b []byte) ([]byte, error) {
	const msg = "bootstrap"
	if err := checkStrings(msg, "seeds", m.Seeds, MaxURLs, MaxURLLen); err != nil {
		return b, err
	}
	if len(m.Peers) > MaxBootstrapPeers {
		return b, malformedError(msg, "%d peers, maximum %d", len(m.Peers), MaxBootstrapPeers)
	}
	b = appendVarintField(b, bootID, m.ID)
	b = appendStrings(b, bootSeeds, m.Seeds)
	for i := range m.Peers {
		// Every entry is written, even an all-zero one: a repeated field
		// has no zero value to omit.
		b = protowire.AppendTag(b, bootPeers, protowire.BytesType)
		b = protowire.AppendBytes(b, m.Peers[i][:])
	}
	return b, nil
}

// Unmarshal resets m and decodes b into it. It copies what it keeps.
func (m *Bootstrap) Unmarshal(b []byte) error {
	const msg = "bootstrap"
	*m = Bootstrap{}
	for len(b) > 0 {
		num, typ, n, err := consumeTag(msg, b)
		if err != nil {
			return err
		}
		b = b[n:]
		switch num {
		case bootID:
			m.ID, n, err = consumeVarint(msg, num, typ, b)
		case bootSeeds:
			n, err = consumeAppendString(msg, num, typ, b, &m.Seeds, MaxURLs, MaxURLLen)
		case bootPeers:
			var v []byte
			v, n, err = consumeBytes(msg, num, typ, b, PeerIDLen)
			if err == nil && len(v) != PeerIDLen {
				err = malformedError(msg, "peer ID is %d bytes, want %d", len(v), PeerIDLen)
			}
			if err == nil && len(m.Peers) == MaxBootstrapPeers {
				err = malformedError(msg, "more than %d peers", MaxBootstrapPeers)
			}
			if err == nil {
				m.Peers = append(m.Peers, [PeerIDLen]byte(v))
			}
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
