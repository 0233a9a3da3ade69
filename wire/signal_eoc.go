package wire

import "google.golang.org/protobuf/encoding/protowire"

// EndOfCandidates says that the sender has gathered all its candidates for
// the ICE generation named by Ufrag (type [TypeEndOfCandidates]).
//
// Payload (protobuf message ferry.signal.v1.EndOfCandidates): the
// [RouteHeader] (fields 1-3), then
//
//	field 4  ufrag  string   wire type 2: tag 0x22, length, UTF-8, at most 256 bytes
type EndOfCandidates struct {
	RouteHeader
	// Ufrag is the sender's current ICE username fragment.
	Ufrag string
}

var _ RoutedMessage = (*EndOfCandidates)(nil)

// Type returns [TypeEndOfCandidates].
func (*EndOfCandidates) Type() Type { return TypeEndOfCandidates }

// Len returns the size of the encoded message.
func (m *EndOfCandidates) Len() int {
	return m.len() + sizeBytesField(iceUfrag, len(m.Ufrag))
}

// Append appends the encoded message to b.
func (m *EndOfCandidates) Append(b []byte) ([]byte, error) {
	const msg = "end of candidates"
	if err := checkString(msg, "ufrag", m.Ufrag, MaxICECredentialLen); err != nil {
		return b, err
	}
	b, err := m.append(msg, b)
	if err != nil {
		return b, err
	}
	return appendStringField(b, iceUfrag, m.Ufrag), nil
}

// Unmarshal resets m and decodes b into it. It copies what it keeps.
func (m *EndOfCandidates) Unmarshal(b []byte) error {
	const msg = "end of candidates"
	*m = EndOfCandidates{}
	return unmarshalRouted(msg, b, &m.RouteHeader, func(num protowire.Number, typ protowire.Type, b []byte) (n int, ok bool, err error) {
		if num != iceUfrag {
			return 0, false, nil
		}
		m.Ufrag, n, err = consumeString(msg, num, typ, b, MaxICECredentialLen)
		return n, true, err
	})
}
