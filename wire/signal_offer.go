package wire

import "google.golang.org/protobuf/encoding/protowire"

// Offer asks a peer to connect (type [TypeOffer]): it carries the sender's
// ICE credentials, and optionally its first candidates; the rest trickle in
// [Candidate] messages. The sender is the controlling ICE agent. A new
// offer with the same SessionID and new credentials restarts ICE.
//
// Payload (protobuf message ferry.signal.v1.Offer): the [RouteHeader]
// (fields 1-3), then
//
//	field 4  ufrag       string            wire type 2: tag 0x22, length, UTF-8, at most 256 bytes
//	field 5  pwd         string            wire type 2: tag 0x2a, length, UTF-8, at most 256 bytes
//	field 6  candidates  repeated string   wire type 2: tag 0x32, length, UTF-8, at most 32 of 512 bytes
//	field 7  metadata    bytes             wire type 2: tag 0x3a, length, at most 4096 bytes
type Offer struct {
	RouteHeader
	// Ufrag and Pwd are the sender's ICE username fragment and password.
	Ufrag, Pwd string
	// Candidates are ICE candidates in the SDP attribute form of RFC 8839
	// ("candidate:..." without "a="). At most [MaxCandidates].
	Candidates []string
	// Metadata is opaque to the server: what the two SDKs agree on
	// (connection ID for resume, protocol versions). At most
	// [MaxMetadataLen] bytes.
	Metadata []byte
}

var _ RoutedMessage = (*Offer)(nil)

// Type returns [TypeOffer].
func (*Offer) Type() Type { return TypeOffer }

// Len returns the size of the encoded message.
func (m *Offer) Len() int {
	return m.len() + iceLen(m.Ufrag, m.Pwd, m.Candidates, m.Metadata)
}

// Append appends the encoded message to b.
func (m *Offer) Append(b []byte) ([]byte, error) {
	return appendICE("offer", b, &m.RouteHeader, m.Ufrag, m.Pwd, m.Candidates, m.Metadata)
}

// Unmarshal resets m and decodes b into it. It copies what it keeps.
func (m *Offer) Unmarshal(b []byte) error {
	*m = Offer{}
	return unmarshalICE("offer", b, &m.RouteHeader, &m.Ufrag, &m.Pwd, &m.Candidates, &m.Metadata)
}

// Fields 4-7 of OFFER and ANSWER.
const (
	iceUfrag      protowire.Number = 4
	icePwd        protowire.Number = 5
	iceCandidates protowire.Number = 6
	iceMetadata   protowire.Number = 7
)

func iceLen(ufrag, pwd string, cands []string, meta []byte) int {
	return sizeBytesField(iceUfrag, len(ufrag)) + sizeBytesField(icePwd, len(pwd)) +
		sizeStrings(iceCandidates, cands) + sizeBytesField(iceMetadata, len(meta))
}

func appendICE(msg string, b []byte, h *RouteHeader, ufrag, pwd string, cands []string, meta []byte) ([]byte, error) {
	if err := checkString(msg, "ufrag", ufrag, MaxICECredentialLen); err != nil {
		return b, err
	}
	if err := checkString(msg, "pwd", pwd, MaxICECredentialLen); err != nil {
		return b, err
	}
	if err := checkStrings(msg, "candidates", cands, MaxCandidates, MaxCandidateLen); err != nil {
		return b, err
	}
	if err := checkBytes(msg, "metadata", meta, MaxMetadataLen); err != nil {
		return b, err
	}
	start := len(b)
	b, err := h.append(msg, b)
	if err != nil {
		return b[:start], err
	}
	b = appendStringField(b, iceUfrag, ufrag)
	b = appendStringField(b, icePwd, pwd)
	b = appendStrings(b, iceCandidates, cands)
	return appendBytesField(b, iceMetadata, meta), nil
}

func unmarshalICE(msg string, b []byte, h *RouteHeader, ufrag, pwd *string, cands *[]string, meta *[]byte) error {
	return unmarshalRouted(msg, b, h, func(num protowire.Number, typ protowire.Type, b []byte) (n int, ok bool, err error) {
		switch num {
		case iceUfrag:
			*ufrag, n, err = consumeString(msg, num, typ, b, MaxICECredentialLen)
		case icePwd:
			*pwd, n, err = consumeString(msg, num, typ, b, MaxICECredentialLen)
		case iceCandidates:
			n, err = consumeAppendString(msg, num, typ, b, cands, MaxCandidates, MaxCandidateLen)
		case iceMetadata:
			var v []byte
			v, n, err = consumeBytes(msg, num, typ, b, MaxMetadataLen)
			*meta = cloneBytes(v)
		default:
			return 0, false, nil
		}
		return n, true, err
	})
}
