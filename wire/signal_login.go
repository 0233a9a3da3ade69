package wire

import "google.golang.org/protobuf/encoding/protowire"

// Login proves a peer's identity to a rendezvous server (type [TypeLogin]):
// the peer signs, with the Ed25519 key whose SHA-256 is PeerID, the bytes
// [AppendLoginSignedData] builds from the CHALLENGE's nonce, the name of the
// server it meant to reach, and its clock, or, when the CHALLENGE asks for a
// TLS channel binding, the bytes [AppendLoginSignedDataTLS] builds, which
// also cover keying material exported from the TLS connection.
//
// Payload (protobuf message ferry.signal.v1.Login):
//
//	field 1  version           uint32            wire type 0: tag 0x08, varint
//	field 2  peer_id           bytes             wire type 2: tag 0x12, length 32, bytes
//	field 3  public_key        bytes             wire type 2: tag 0x1a, length 32, bytes
//	field 4  nonce             bytes             wire type 2: tag 0x22, length 32, bytes
//	field 5  server_name       string            wire type 2: tag 0x2a, length, UTF-8, at most 255 bytes
//	field 6  time_unix_millis  int64             wire type 0: tag 0x30, varint
//	field 7  signature         bytes             wire type 2: tag 0x3a, length 64, bytes
//	field 8  capabilities      repeated string   wire type 2: tag 0x42, length, UTF-8 (one field per entry)
//	field 9  channel_binding   uint32            wire type 0: tag 0x48, varint
type Login struct {
	// Version is the signaling protocol version the peer speaks.
	Version uint32
	// PeerID is the identity claimed: it must be SHA-256(PublicKey).
	PeerID [PeerIDLen]byte
	// PublicKey is the peer's Ed25519 public key.
	PublicKey [PublicKeyLen]byte
	// Nonce echoes the CHALLENGE's nonce.
	Nonce [NonceLen]byte
	// ServerName is the host name (or IP address) the peer dialed, without
	// a port. The server refuses a login signed for another name, so a
	// login cannot be relayed from one server to another.
	ServerName string
	// TimeUnixMillis is the peer's clock when it signed.
	TimeUnixMillis int64
	// Signature is the Ed25519 signature over [Login.SignedData].
	Signature [SignatureLen]byte
	// Capabilities names optional features of the peer; "dht" offers the
	// peer as a DHT bootstrap node to others. At most
	// [MaxCapabilitiesLogin] entries of at most [MaxCapabilityLen] bytes.
	Capabilities []string
	// ChannelBinding says what else the signature covers:
	// [ChannelBindingNone] or [ChannelBindingTLSExporter].
	ChannelBinding uint32
}

const (
	loginVersion      protowire.Number = 1
	loginPeerID       protowire.Number = 2
	loginPublicKey    protowire.Number = 3
	loginNonce        protowire.Number = 4
	loginServerName   protowire.Number = 5
	loginTime         protowire.Number = 6
	loginSignature    protowire.Number = 7
	loginCapabilities protowire.Number = 8
	loginBinding      protowire.Number = 9
)

var _ Message = (*Login)(nil)

// Type returns [TypeLogin].
func (*Login) Type() Type { return TypeLogin }

// SignedData returns the bytes the signature covers: with
// [ChannelBindingTLSExporter], those of [AppendLoginSignedDataTLS] with
// exporter, the connection's keying material; otherwise those of
// [AppendLoginSignedData] (exporter is then ignored).
func (m *Login) SignedData(exporter []byte) []byte {
	if m.ChannelBinding == ChannelBindingTLSExporter {
		return AppendLoginSignedDataTLS(nil, m.Nonce, m.ServerName, m.TimeUnixMillis, exporter)
	}
	return AppendLoginSignedData(nil, m.Nonce, m.ServerName, m.TimeUnixMillis)
}

// Len returns the size of the encoded message.
func (m *Login) Len() int {
	return sizeVarintField(loginVersion, uint64(m.Version)) +
		sizeFixedField(loginPeerID, m.PeerID[:]) +
		sizeFixedField(loginPublicKey, m.PublicKey[:]) +
		sizeFixedField(loginNonce, m.Nonce[:]) +
		sizeBytesField(loginServerName, len(m.ServerName)) +
		sizeVarintField(loginTime, uint64(m.TimeUnixMillis)) +
		sizeFixedField(loginSignature, m.Signature[:]) +
		sizeStrings(loginCapabilities, m.Capabilities) +
		sizeVarintField(loginBinding, uint64(m.ChannelBinding))
}

// Append appends the encoded message to b.
func (m *Login) Append(b []byte) ([]byte, error) {
	const msg = "login"
	if err := checkString(msg, "server name", m.ServerName, MaxServerNameLen); err != nil {
		return b, err
	}
	if err := checkStrings(msg, "capabilities", m.Capabilities, MaxCapabilitiesLogin, MaxCapabilityLen); err != nil {
		return b, err
	}
	b = appendVarintField(b, loginVersion, uint64(m.Version))
	b = appendFixedField(b, loginPeerID, m.PeerID[:])
	b = appendFixedField(b, loginPublicKey, m.PublicKey[:])
	b = appendFixedField(b, loginNonce, m.Nonce[:])
	b = appendStringField(b, loginServerName, m.ServerName)
	b = appendVarintField(b, loginTime, uint64(m.TimeUnixMillis))
	b = appendFixedField(b, loginSignature, m.Signature[:])
	b = appendStrings(b, loginCapabilities, m.Capabilities)
	return appendVarintField(b, loginBinding, uint64(m.ChannelBinding)), nil
}

// Unmarshal resets m and decodes b into it. It copies what it keeps.
func (m *Login) Unmarshal(b []byte) error {
	const msg = "login"
	*m = Login{}
	for len(b) > 0 {
		num, typ, n, err := consumeTag(msg, b)
		if err != nil {
			return err
		}
		b = b[n:]
		switch num {
		case loginVersion:
			m.Version, n, err = consumeUint32(msg, num, typ, b)
		case loginPeerID:
			n, err = consumeFixed(msg, num, typ, b, m.PeerID[:])
		case loginPublicKey:
			n, err = consumeFixed(msg, num, typ, b, m.PublicKey[:])
		case loginNonce:
			n, err = consumeFixed(msg, num, typ, b, m.Nonce[:])
		case loginServerName:
			m.ServerName, n, err = consumeString(msg, num, typ, b, MaxServerNameLen)
		case loginTime:
			var v uint64
			v, n, err = consumeVarint(msg, num, typ, b)
			m.TimeUnixMillis = int64(v)
		case loginSignature:
			n, err = consumeFixed(msg, num, typ, b, m.Signature[:])
		case loginCapabilities:
			n, err = consumeAppendString(msg, num, typ, b, &m.Capabilities, MaxCapabilitiesLogin, MaxCapabilityLen)
		case loginBinding:
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
