package wire

import "google.golang.org/protobuf/encoding/protowire"

// Candidate trickles one ICE candidate (type [TypeCandidate]).
//
// Payload (protobuf message ferry.signal.v1.Candidate): the [RouteHeader]
// (fields 1-3), then
//
//	field 4  ufrag      string   wire type 2: tag 0x22, length, UTF-8, at most 256 bytes
//	field 5  candidate  string   wire type 2: tag 0x2a, length, UTF-8, at most 512 bytes
type Candidate struct {
	RouteHeader
	// Ufrag is the sender's current ICE username fragment: it tells which
	// ICE generation the candidate belongs to, so that a candidate that
	// arrives after an ICE restart is not mixed into the new one.
	Ufrag string
	// Candidate is the candidate in the SDP attribute form of RFC 8839
	// ("candidate:..." without "a="). At most [MaxCandidateLen] bytes.
	Candidate string
}

const candidateValue protowire.Number = 5

var _ RoutedMessage = (*Candidate)(nil)

// Type returns [TypeCandidate].
func (*Candidate) Type() Type { return TypeCandidate }

// Len returns the size of the encoded message.
func (m *Candidate) Len() int {
	return m.len() + sizeBytesField(iceUfrag, len(m.Ufrag)) + sizeBytesField(candidateValue, len(m.Candidate))
}

// Append appends the encoded message to b.
func (m *Candidate) Append(b []byte) ([]byte, error) {
	const msg = "candidate"
	if err := checkString(msg, "ufrag", m.Ufrag, MaxICECredentialLen); err != nil {
		return b, err
	}
	if err := checkString(msg, "candidate", m.Candidate, MaxCandidateLen); err != nil {
		return b, err
	}
	b, err := m.append(msg, b)
	if err != nil {
		return b, err
	}
	b = appendStringField(b, iceUfrag, m.Ufrag)
	return appendStringField(b, candidateValue, m.Candidate), nil
}

// Unmarshal resets m and decodes b into it. It copies what it keeps.
func (m *Candidate) Unmarshal(b []byte) error {
	const msg = "candidate"
	*m = Candidate{}
	return unmarshalRouted(msg, b, &m.RouteHeader, func(num protowire.Number, typ protowire.Type, b []byte) (n int, ok bool, err error) {
		switch num {
		case iceUfrag:
			m.Ufrag, n, err = consumeString(msg, num, typ, b, MaxICECredentialLen)
		case candidateValue:
			m.Candidate, n, err = consumeString(msg, num, typ, b, MaxCandidateLen)
		default:
			return 0, false, nil
		}
		return n, true, err
	})
}
