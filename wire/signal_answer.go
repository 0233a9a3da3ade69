package wire

// Answer accepts an [Offer] (type [TypeAnswer]): the answering peer's ICE
// credentials and optionally its first candidates, with the offer's
// SessionID. The answering peer is the controlled ICE agent. A peer that
// refuses an offer sends [Bye] instead.
//
// Payload (protobuf message ferry.signal.v1.Answer): the same layout as
// OFFER, the [RouteHeader] (fields 1-3), then
//
//	field 4  ufrag       string            wire type 2: tag 0x22, length, UTF-8, at most 256 bytes
//	field 5  pwd         string            wire type 2: tag 0x2a, length, UTF-8, at most 256 bytes
//	field 6  candidates  repeated string   wire type 2: tag 0x32, length, UTF-8, at most 32 of 512 bytes
//	field 7  metadata    bytes             wire type 2: tag 0x3a, length, at most 4096 bytes
type Answer struct {
	RouteHeader
	// Ufrag and Pwd are the sender's ICE username fragment and password.
	Ufrag, Pwd string
	// Candidates are ICE candidates, as in [Offer].
	Candidates []string
	// Metadata is opaque to the server, as in [Offer].
	Metadata []byte
}

var _ RoutedMessage = (*Answer)(nil)

// Type returns [TypeAnswer].
func (*Answer) Type() Type { return TypeAnswer }

// Len returns the size of the encoded message.
func (m *Answer) Len() int {
	return m.len() + iceLen(m.Ufrag, m.Pwd, m.Candidates, m.Metadata)
}

// Append appends the encoded message to b.
func (m *Answer) Append(b []byte) ([]byte, error) {
	return appendICE("answer", b, &m.RouteHeader, m.Ufrag, m.Pwd, m.Candidates, m.Metadata)
}

// Unmarshal resets m and decodes b into it. It copies what it keeps.
func (m *Answer) Unmarshal(b []byte) error {
	*m = Answer{}
	return unmarshalICE("answer", b, &m.RouteHeader, &m.Ufrag, &m.Pwd, &m.Candidates, &m.Metadata)
}
