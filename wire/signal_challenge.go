package wire

import "google.golang.org/protobuf/encoding/protowire"

// Challenge is the first frame a rendezvous server sends on a new signaling
// connection (type [TypeChallenge]). The peer answers with a [Login] that
// signs Nonce.
//
// Payload (protobuf message ferry.signal.v1.Challenge):
//
//	field 1  version                  uint32   wire type 0: tag 0x08, varint
//	field 2  nonce                    bytes    wire type 2: tag 0x12, length 32, bytes
//	field 3  server_time_unix_millis  int64    wire type 0: tag 0x18, varint
//	field 4  max_payload              uint32   wire type 0: tag 0x20, varint
//	field 5  login_timeout_millis     uint32   wire type 0: tag 0x28, varint
//	field 6  channel_binding          uint32   wire type 0: tag 0x30, varint
type Challenge struct {
	// Version is the signaling protocol version the server speaks
	// ([SignalVersion]).
	Version uint32
	// Nonce is fresh randomness for this connection only.
	Nonce [NonceLen]byte
	// ServerTimeUnixMillis is the server's clock, so a peer can tell that
	// its own clock is too far off for a login to be accepted.
	ServerTimeUnixMillis int64
	// MaxPayload is the largest frame payload the server accepts.
	MaxPayload uint32
	// LoginTimeoutMillis is how long the server waits for the LOGIN.
	LoginTimeoutMillis uint32
	// ChannelBinding is what the server requires a LOGIN's signature to
	// cover besides the nonce: [ChannelBindingTLSExporter] when it
	// terminates TLS itself, [ChannelBindingNone] otherwise.
	ChannelBinding uint32
}

const (
	challengeVersion      protowire.Number = 1
	challengeNonce        protowire.Number = 2
	challengeServerTime   protowire.Number = 3
	challengeMaxPayload   protowire.Number = 4
	challengeLoginTimeout protowire.Number = 5
	challengeBinding      protowire.Number = 6
)

var _ Message = (*Challenge)(nil)

// Type returns [TypeChallenge].
func (*Challenge) Type() Type { return TypeChallenge }

// Len returns the size of the encoded message.
func (m *Challenge) Len() int {
	return sizeVarintField(challengeVersion, uint64(m.Version)) +
		sizeFixedField(challengeNonce, m.Nonce[:]) +
		sizeVarintField(challengeServerTime, uint64(m.ServerTimeUnixMillis)) +
		sizeVarintField(challengeMaxPayload, uint64(m.MaxPayload)) +
		sizeVarintField(challengeLoginTimeout, uint64(m.LoginTimeoutMillis)) +
		sizeVarintField(challengeBinding, uint64(m.ChannelBinding))
}

// Append appends the encoded message to b. It cannot fail.
func (m *Challenge) Append(b []byte) ([]byte, error) {
	b = appendVarintField(b, challengeVersion, uint64(m.Version))
	b = appendFixedField(b, challengeNonce, m.Nonce[:])
	b = appendVarintField(b, challengeServerTime, uint64(m.ServerTimeUnixMillis))
	b = appendVarintField(b, challengeMaxPayload, uint64(m.MaxPayload))
	b = appendVarintField(b, challengeLoginTimeout, uint64(m.LoginTimeoutMillis))
	return appendVarintField(b, challengeBinding, uint64(m.ChannelBinding)), nil
}

// Unmarshal resets m and decodes b into it.
func (m *Challenge) Unmarshal(b []byte) error {
	const msg = "challenge"
	*m = Challenge{}
	for len(b) > 0 {
		num, typ, n, err := consumeTag(msg, b)
		if err != nil {
			return err
		}
		b = b[n:]
		switch num {
		case challengeVersion:
			m.Version, n, err = consumeUint32(msg, num, typ, b)
		case challengeNonce:
			n, err = consumeFixed(msg, num, typ, b, m.Nonce[:])
		case challengeServerTime:
			var v uint64
			v, n, err = consumeVarint(msg, num, typ, b)
			m.ServerTimeUnixMillis = int64(v)
		case challengeMaxPayload:
			m.MaxPayload, n, err = consumeUint32(msg, num, typ, b)
		case challengeLoginTimeout:
			m.LoginTimeoutMillis, n, err = consumeUint32(msg, num, typ, b)
		case challengeBinding:
			m.ChannelBinding, n, err = consumeUint32(msg, num, typ, b)
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
