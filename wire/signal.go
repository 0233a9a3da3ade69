package wire

import (
	"encoding/binary"

	"google.golang.org/protobuf/encoding/protowire"
)

// Signaling frame types (range 0x10-0x1F). They travel between a peer and a
// rendezvous server, inside WebSocket binary messages, never on a peer
// session; see SPEC.md, section 7. PING, PONG and GOAWAY from the session
// protocol are reused on the same connection.
const (
	// TypeChallenge is the server's first frame: a fresh nonce to sign.
	// Payload: [Challenge].
	TypeChallenge Type = 0x10
	// TypeLogin proves the peer's identity. Payload: [Login].
	TypeLogin Type = 0x11
	// TypeLoggedIn accepts a login. Payload: [LoggedIn].
	TypeLoggedIn Type = 0x12
	// TypeOffer starts (or restarts) ICE towards a peer. Payload: [Offer].
	TypeOffer Type = 0x13
	// TypeAnswer answers an offer. Payload: [Answer].
	TypeAnswer Type = 0x14
	// TypeCandidate trickles one ICE candidate. Payload: [Candidate].
	TypeCandidate Type = 0x15
	// TypeEndOfCandidates says no more candidates follow. Payload:
	// [EndOfCandidates].
	TypeEndOfCandidates Type = 0x16
	// TypeBye ends a signaling session between two peers. Payload: [Bye].
	TypeBye Type = 0x17
	// TypeReceipt confirms that a routed message reached the target's
	// queue. Payload: [Receipt].
	TypeReceipt Type = 0x18
	// TypeSignalError reports a failed request or a refused message.
	// Payload: [SignalError].
	TypeSignalError Type = 0x19
	// TypeCredentialsRequest asks for TURN credentials. Payload:
	// [CredentialsRequest].
	TypeCredentialsRequest Type = 0x1A
	// TypeCredentials carries TURN credentials and relay and STUN URLs.
	// Payload: [Credentials].
	TypeCredentials Type = 0x1B
	// TypeBootstrapRequest asks for DHT seeds. Payload: [BootstrapRequest].
	TypeBootstrapRequest Type = 0x1C
	// TypeBootstrap carries DHT seeds. Payload: [Bootstrap].
	TypeBootstrap Type = 0x1D
	// TypeDHT carries one DHT request or answer. Payload: [DHT].
	TypeDHT Type = 0x1E
)

var signalNames = [...]string{
	TypeChallenge - TypeSignalingFirst:          "CHALLENGE",
	TypeLogin - TypeSignalingFirst:              "LOGIN",
	TypeLoggedIn - TypeSignalingFirst:           "LOGGED_IN",
	TypeOffer - TypeSignalingFirst:              "OFFER",
	TypeAnswer - TypeSignalingFirst:             "ANSWER",
	TypeCandidate - TypeSignalingFirst:          "CANDIDATE",
	TypeEndOfCandidates - TypeSignalingFirst:    "END_OF_CANDIDATES",
	TypeBye - TypeSignalingFirst:                "BYE",
	TypeReceipt - TypeSignalingFirst:            "RECEIPT",
	TypeSignalError - TypeSignalingFirst:        "SIGNAL_ERROR",
	TypeCredentialsRequest - TypeSignalingFirst: "CREDENTIALS_REQUEST",
	TypeCredentials - TypeSignalingFirst:        "CREDENTIALS",
	TypeBootstrapRequest - TypeSignalingFirst:   "BOOTSTRAP_REQUEST",
	TypeBootstrap - TypeSignalingFirst:          "BOOTSTRAP",
	TypeDHT - TypeSignalingFirst:                "DHT",
}

// Signaling reports whether t is one of the signaling types defined in this
// package (0x10-0x1E).
func (t Type) Signaling() bool {
	return t >= TypeChallenge && t <= TypeDHT
}

// Routed reports whether t is a message the rendezvous server routes from
// one peer to another: OFFER, ANSWER, CANDIDATE, END_OF_CANDIDATES or BYE.
func (t Type) Routed() bool {
	return t >= TypeOffer && t <= TypeBye
}

// Signaling protocol constants and the bounds its decoders enforce.
const (
	// SignalVersion is the signaling protocol version this package speaks.
	SignalVersion = 1
	// PeerIDLen is the length of a PeerID (SHA-256 of an Ed25519 key).
	PeerIDLen = 32
	// NonceLen is the length of a login nonce.
	NonceLen = 32
	// PublicKeyLen is the length of an Ed25519 public key.
	PublicKeyLen = 32
	// SignatureLen is the length of an Ed25519 signature.
	SignatureLen = 64
	// MaxServerNameLen bounds Login.ServerName, in bytes.
	MaxServerNameLen = 255
	// MaxSessionIDLen bounds the session ID of routed messages, in bytes.
	MaxSessionIDLen = 32
	// MaxICECredentialLen bounds ICE ufrag and pwd strings, in bytes
	// (RFC 8445 allows 256 characters).
	MaxICECredentialLen = 256
	// MaxCandidateLen bounds one ICE candidate string, in bytes.
	MaxCandidateLen = 512
	// MaxCandidates bounds the candidates carried in one OFFER or ANSWER.
	MaxCandidates = 32
	// MaxMetadataLen bounds Offer.Metadata and Answer.Metadata, in bytes.
	MaxMetadataLen = 4096
	// MaxCapabilitiesLogin bounds Login.Capabilities; each entry is at most
	// [MaxCapabilityLen] bytes.
	MaxCapabilitiesLogin = 16
	// MaxServerIDLen bounds LoggedIn.ServerID, in bytes.
	MaxServerIDLen = 128
	// MaxCredentialLen bounds Credentials.Username and Password, in bytes.
	MaxCredentialLen = 512
	// MaxURLs bounds each URL list (relay, STUN, seeds), and MaxURLLen each
	// URL, in bytes.
	MaxURLs   = 32
	MaxURLLen = 512
	// MaxBootstrapPeers bounds Bootstrap.Peers.
	MaxBootstrapPeers = 64
)

// loginContext starts the bytes a LOGIN signature covers; the NUL ends it,
// so no other Ferry signature over the same key can be mistaken for a login.
// loginContextTLS starts those of a LOGIN bound to its TLS connection.
const (
	loginContext    = "ferry-rendezvous-login-v1\x00"
	loginContextTLS = "ferry-rendezvous-login-v2\x00"
)

// Channel bindings of a login (Challenge.ChannelBinding,
// Login.ChannelBinding; SPEC.md section 7.4).
const (
	// ChannelBindingNone: the login signature covers no property of the
	// connection (a server without TLS of its own, behind a proxy that
	// terminates TLS, or a lab).
	ChannelBindingNone uint32 = 0
	// ChannelBindingTLSExporter: the signature also covers
	// [LoginExporterLen] bytes of keying material exported from the TLS
	// connection (RFC 5705, RFC 8446 section 7.5) with label
	// [LoginExporterLabel] and no context, so a login cannot be relayed
	// over another TLS connection.
	ChannelBindingTLSExporter uint32 = 1
)

// LoginExporterLabel and LoginExporterLen name the TLS keying material a
// bound LOGIN signs.
const (
	LoginExporterLabel = "EXPORTER-ferry-rendezvous-login"
	LoginExporterLen   = 32
)

// AppendLoginSignedData appends to b the bytes that a LOGIN's signature
// covers:
//
//	"ferry-rendezvous-login-v1" 0x00 | nonce (32) | len(serverName) (1) | serverName | timeUnixMillis (8, big-endian, two's complement)
//
// serverName must be at most [MaxServerNameLen] bytes; a longer one is
// truncated, which makes the signature fail to verify rather than collide.
func AppendLoginSignedData(b []byte, nonce [NonceLen]byte, serverName string, timeUnixMillis int64) []byte {
	if len(serverName) > MaxServerNameLen {
		serverName = serverName[:MaxServerNameLen]
	}
	b = append(b, loginContext...)
	return appendLoginFields(b, nonce, serverName, timeUnixMillis)
}

// AppendLoginSignedDataTLS appends to b the bytes that the signature of a
// LOGIN bound to its TLS connection ([ChannelBindingTLSExporter]) covers:
//
//	"ferry-rendezvous-login-v2" 0x00 | nonce (32) | len(serverName) (1) | serverName | timeUnixMillis (8) | exporter (32)
//
// exporter is the connection's keying material ([LoginExporterLabel],
// [LoginExporterLen] bytes); one of another length is cut or zero-padded to
// it, which makes the signature fail to verify.
func AppendLoginSignedDataTLS(b []byte, nonce [NonceLen]byte, serverName string, timeUnixMillis int64, exporter []byte) []byte {
	if len(serverName) > MaxServerNameLen {
		serverName = serverName[:MaxServerNameLen]
	}
	b = append(b, loginContextTLS...)
	b = appendLoginFields(b, nonce, serverName, timeUnixMillis)
	var ekm [LoginExporterLen]byte
	copy(ekm[:], exporter)
	return append(b, ekm[:]...)
}

func appendLoginFields(b []byte, nonce [NonceLen]byte, serverName string, timeUnixMillis int64) []byte {
	b = append(b, nonce[:]...)
	b = append(b, byte(len(serverName)))
	b = append(b, serverName...)
	return binary.BigEndian.AppendUint64(b, uint64(timeUnixMillis))
}

// Helpers shared by the signaling messages.

// sizeFixedField is the size of a fixed-length bytes field that is omitted
// when all zero.
func sizeFixedField(num protowire.Number, v []byte) int {
	if isZero(v) {
		return 0
	}
	return protowire.SizeTag(num) + protowire.SizeBytes(len(v))
}

func appendFixedField(b []byte, num protowire.Number, v []byte) []byte {
	if isZero(v) {
		return b
	}
	return appendBytesField(b, num, v)
}

func isZero(v []byte) bool {
	for _, c := range v {
		if c != 0 {
			return false
		}
	}
	return true
}

// consumeFixed reads a bytes field that must be empty or exactly len(dst)
// bytes long, into dst (zeroed when empty).
func consumeFixed(msg string, num protowire.Number, typ protowire.Type, b []byte, dst []byte) (int, error) {
	v, n, err := consumeBytes(msg, num, typ, b, len(dst))
	if err != nil {
		return 0, err
	}
	if len(v) != 0 && len(v) != len(dst) {
		return 0, malformedError(msg, "field %d is %d bytes, want 0 or %d", num, len(v), len(dst))
	}
	clear(dst)
	copy(dst, v)
	return n, nil
}

// sizeStrings is the size of a repeated string field.
func sizeStrings(num protowire.Number, vs []string) int {
	n := 0
	for _, v := range vs {
		n += protowire.SizeTag(num) + protowire.SizeBytes(len(v))
	}
	return n
}

func appendStrings(b []byte, num protowire.Number, vs []string) []byte {
	for _, v := range vs {
		b = protowire.AppendTag(b, num, protowire.BytesType)
		b = protowire.AppendString(b, v)
	}
	return b
}

// checkStrings validates a repeated string field for an encoder.
func checkStrings(msg, field string, vs []string, maxN, maxLen int) error {
	if len(vs) > maxN {
		return malformedError(msg, "%d %s, maximum %d", len(vs), field, maxN)
	}
	for _, v := range vs {
		if err := checkString(msg, field, v, maxLen); err != nil {
			return err
		}
	}
	return nil
}

// consumeAppendString reads one entry of a repeated string field into *dst.
func consumeAppendString(msg string, num protowire.Number, typ protowire.Type, b []byte, dst *[]string, maxN, maxLen int) (int, error) {
	v, n, err := consumeString(msg, num, typ, b, maxLen)
	if err != nil {
		return 0, err
	}
	if len(*dst) == maxN {
		return 0, malformedError(msg, "field %d: more than %d entries", num, maxN)
	}
	*dst = append(*dst, v)
	return n, nil
}

// checkBytes validates a bytes field for an encoder.
func checkBytes(msg, field string, v []byte, maxLen int) error {
	if len(v) > maxLen {
		return malformedError(msg, "%s is %d bytes, maximum %d", field, len(v), maxLen)
	}
	return nil
}

// cloneBytes copies v, keeping nil for empty input.
func cloneBytes(v []byte) []byte {
	if len(v) == 0 {
		return nil
	}
	return append([]byte(nil), v...)
}
