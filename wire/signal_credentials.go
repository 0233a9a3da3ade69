package wire

import "google.golang.org/protobuf/encoding/protowire"

// CredentialsRequest asks the server for TURN credentials and the relay and
// STUN servers to use (type [TypeCredentialsRequest]). The server answers
// with [Credentials] or a [SignalError] carrying the same ID.
//
// Payload (protobuf message ferry.signal.v1.CredentialsRequest):
//
//	field 1  id  uint64   wire type 0: tag 0x08, varint
type CredentialsRequest struct {
	// ID matches the answer to the request; senders count up from 1.
	ID uint64
}

const requestID protowire.Number = 1

var _ Message = (*CredentialsRequest)(nil)

// Type returns [TypeCredentialsRequest].
func (*CredentialsRequest) Type() Type { return TypeCredentialsRequest }

// Len returns the size of the encoded message.
func (m *CredentialsRequest) Len() int { return sizeVarintField(requestID, m.ID) }

// Append appends the encoded message to b. It cannot fail.
func (m *CredentialsRequest) Append(b []byte) ([]byte, error) {
	return appendVarintField(b, requestID, m.ID), nil
}

// Unmarshal resets m and decodes b into it.
func (m *CredentialsRequest) Unmarshal(b []byte) (err error) {
	m.ID, err = unmarshalRequest("credentials request", b)
	return err
}

// unmarshalRequest decodes the payload shared by the request messages.
func unmarshalRequest(msg string, b []byte) (id uint64, err error) {
	for len(b) > 0 {
		num, typ, n, err := consumeTag(msg, b)
		if err != nil {
			return 0, err
		}
		b = b[n:]
		if num == requestID {
			id, n, err = consumeVarint(msg, num, typ, b)
		} else {
			n, err = skipField(msg, num, typ, b)
		}
		if err != nil {
			return 0, err
		}
		b = b[n:]
	}
	return id, nil
}

// Credentials answers a [CredentialsRequest] (type [TypeCredentials]):
// short-lived TURN credentials in the coturn REST format, valid at every
// relay in RelayURLs, and the STUN servers to use for server-reflexive
// candidates.
//
// Payload (protobuf message ferry.signal.v1.Credentials):
//
//	field 1  id                 uint64            wire type 0: tag 0x08, varint
//	field 2  username           string            wire type 2: tag 0x12, length, UTF-8, at most 512 bytes
//	field 3  password           string            wire type 2: tag 0x1a, length, UTF-8, at most 512 bytes
//	field 4  expires_unix       int64             wire type 0: tag 0x20, varint (seconds)
//	field 5  relay_urls         repeated string   wire type 2: tag 0x2a, length, UTF-8, at most 32 of 512 bytes
//	field 6  stun_urls          repeated string   wire type 2: tag 0x32, length, UTF-8, at most 32 of 512 bytes
type Credentials struct {
	// ID is the request's ID.
	ID uint64
	// Username is "EXPIRY:PEERID" (EXPIRY in Unix seconds); Password is
	// base64(HMAC-SHA1(secret, Username)). Both are empty when the server
	// has no relays.
	Username, Password string
	// ExpiresUnix is when the credentials stop working, in Unix seconds.
	ExpiresUnix int64
	// RelayURLs are TURN URIs (RFC 7065), such as
	// "turn:relay.example.com:3478?transport=udp" or
	// "turns:relay.example.com:443?transport=tcp".
	RelayURLs []string
	// STUNURLs are STUN URIs (RFC 7064), such as
	// "stun:rendezvous.example.com:3478".
	STUNURLs []string
}

const (
	credsID       protowire.Number = 1
	credsUsername protowire.Number = 2
	credsPassword protowire.Number = 3
	credsExpires  protowire.Number = 4
	credsRelays   protowire.Number = 5
	credsSTUN     protowire.Number = 6
)

var _ Message = (*Credentials)(nil)

// Type returns [TypeCredentials].
func (*Credentials) Type() Type { return TypeCredentials }

// Len returns the size of the encoded message.
func (m *Credentials) Len() int {
	return sizeVarintField(credsID, m.ID) +
		sizeBytesField(credsUsername, len(m.Username)) +
		sizeBytesField(credsPassword, len(m.Password)) +
		sizeVarintField(credsExpires, uint64(m.ExpiresUnix)) +
		sizeStrings(credsRelays, m.RelayURLs) +
		sizeStrings(credsSTUN, m.STUNURLs)
}

// Append appends the encoded message to b.
func (m *Credentials) Append(b []byte) ([]byte, error) {
	const msg = "credentials"
	if err := checkString(msg, "username", m.Username, MaxCredentialLen); err != nil {
		return b, err
	}
	if err := checkString(msg, "password", m.Password, MaxCredentialLen); err != nil {
		return b, err
	}
	if err := checkStrings(msg, "relay URLs", m.RelayURLs, MaxURLs, MaxURLLen); err != nil {
		return b, err
	}
	if err := checkStrings(msg, "STUN URLs", m.STUNURLs, MaxURLs, MaxURLLen); err != nil {
		return b, err
	}
	b = appendVarintField(b, credsID, m.ID)
	b = appendStringField(b, credsUsername, m.Username)
	b = appendStringField(b, credsPassword, m.Password)
	b = appendVarintField(b, credsExpires, uint64(m.ExpiresUnix))
	b = appendStrings(b, credsRelays, m.RelayURLs)
	return appendStrings(b, credsSTUN, m.STUNURLs), nil
}

// Unmarshal resets m and decodes b into it. It copies what it keeps.
func (m *Credentials) Unmarshal(b []byte) error {
	const msg = "credentials"
	*m = Credentials{}
	for len(b) > 0 {
		num, typ, n, err := consumeTag(msg, b)
		if err != nil {
			return err
		}
		b = b[n:]
		switch num {
		case credsID:
			m.ID, n, err = consumeVarint(msg, num, typ, b)
		case credsUsername:
			m.Username, n, err = consumeString(msg, num, typ, b, MaxCredentialLen)
		case credsPassword:
			m.Password, n, err = consumeString(msg, num, typ, b, MaxCredentialLen)
		case credsExpires:
			var v uint64
			v, n, err = consumeVarint(msg, num, typ, b)
			m.ExpiresUnix = int64(v)
		case credsRelays:
			n, err = consumeAppendString(msg, num, typ, b, &m.RelayURLs, MaxURLs, MaxURLLen)
		case credsSTUN:
			n, err = consumeAppendString(msg, num, typ, b, &m.STUNURLs, MaxURLs, MaxURLLen)
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
