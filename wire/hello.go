package wire

import (
	"encoding/binary"

	"google.golang.org/protobuf/encoding/protowire"
)

// Hello is the first frame each side sends on the control stream (type
// [TypeHello]). The dialer offers the versions it speaks; the acceptor answers
// with the single version it chose, or with GOAWAY
// ([GoAwayUnsupportedVersion]).
//
// Payload (protobuf message ferry.wire.v1.Hello):
//
//	field 1  versions       repeated uint32, packed   wire type 2: tag 0x0a, length, varints
//	field 2  max_payload    uint32                    wire type 0: tag 0x10, varint
//	field 3  capabilities   repeated string           wire type 2: tag 0x1a, length, UTF-8 (one field per entry)
//	field 4  conn_id        bytes (0 or 16)           wire type 2: tag 0x22, length, bytes
//	field 5  recv_window    uint32                    wire type 0: tag 0x28, varint
//	field 6  resume         bool                      wire type 0: tag 0x30, varint 0 or 1
//
// The decoder also accepts versions unpacked (tag 0x08, one varint each), as
// protobuf requires.
type Hello struct {
	// Versions lists the protocol versions the sender speaks (dialer), or
	// the one it chose (acceptor). At most [MaxVersions].
	Versions []uint32
	// MaxPayload is the largest frame payload the sender accepts; 0 means
	// [DefaultMaxPayload]. See [NegotiateMaxPayload].
	MaxPayload uint32
	// Capabilities names optional features the sender supports. At most
	// [MaxCapabilities] entries of at most [MaxCapabilityLen] bytes.
	Capabilities []string
	// ConnID identifies the logical connection across the sessions that
	// carry it: 16 random bytes chosen by the dialer, or empty.
	ConnID []byte
	// RecvWindow is how many bytes of unconsumed DATA payload the sender
	// will buffer; 0 means it did not say.
	RecvWindow uint32
	// Resume is set by a dialer whose HELLO continues the connection named
	// by ConnID on a new session, after an earlier session died. Without
	// it, the HELLO opens a new connection.
	Resume bool
}

const (
	helloVersions     protowire.Number = 1
	helloMaxPayload   protowire.Number = 2
	helloCapabilities protowire.Number = 3
	helloConnID       protowire.Number = 4
	helloRecvWindow   protowire.Number = 5
	helloResume       protowire.Number = 6
)

var _ Message = (*Hello)(nil)

// Type returns [TypeHello].
func (*Hello) Type() Type { return TypeHello }

// Len returns the size of the encoded message.
func (m *Hello) Len() int {
	n := 0
	if len(m.Versions) > 0 {
		n += sizeBytesField(helloVersions, m.packedLen())
	}
	n += sizeVarintField(helloMaxPayload, uint64(m.MaxPayload))
	for _, c := range m.Capabilities {
		n += protowire.SizeTag(helloCapabilities) + protowire.SizeBytes(len(c))
	}
	n += sizeBytesField(helloConnID, len(m.ConnID))
	n += sizeVarintField(helloRecvWindow, uint64(m.RecvWindow))
	if m.Resume {
		n += sizeVarintField(helloResume, 1)
	}
	return n
}

func (m *Hello) packedLen() int {
	n := 0
	for _, v := range m.Versions {
		n += protowire.SizeVarint(uint64(v))
	}
	return n
}

func (m *Hello) validate() error {
	if len(m.Versions) > MaxVersions {
		return malformedError("hello", "%d versions, maximum %d", len(m.Versions), MaxVersions)
	}
	if len(m.Capabilities) > MaxCapabilities {
		return malformedError("hello", "%d capabilities, maximum %d", len(m.Capabilities), MaxCapabilities)
	}
	for _, c := range m.Capabilities {
		if err := checkString("hello", "capability", c, MaxCapabilityLen); err != nil {
			return err
		}
	}
	if n := len(m.ConnID); n != 0 && n != ConnIDLen {
		return malformedError("hello", "connection ID is %d bytes, want 0 or %d", n, ConnIDLen)
	}
	return nil
}

// Append appends the encoded message to b.
func (m *Hello) Append(b []byte) ([]byte, error) {
	if err := m.validate(); err != nil {
		return b, err
	}
	if len(m.Versions) > 0 {
		b = protowire.AppendTag(b, helloVersions, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(m.packedLen()))
		for _, v := range m.Versions {
			b = protowire.AppendVarint(b, uint64(v))
		}
	}
	b = appendVarintField(b, helloMaxPayload, uint64(m.MaxPayload))
	for _, c := range m.Capabilities {
		b = protowire.AppendTag(b, helloCapabilities, protowire.BytesType)
		b = protowire.AppendString(b, c)
	}
	b = appendBytesField(b, helloConnID, m.ConnID)
	b = appendVarintField(b, helloRecvWindow, uint64(m.RecvWindow))
	if m.Resume {
		b = appendVarintField(b, helloResume, 1)
	}
	return b, nil
}

// Unmarshal resets m and decodes b into it. It copies what it keeps, so b may
// be reused afterwards. Repeated fields accumulate over repeated occurrences
// (up to their bounds); for other fields the last occurrence wins.
func (m *Hello) Unmarshal(b []byte) error {
	*m = Hello{}
	for len(b) > 0 {
		num, typ, n, err := consumeTag("hello", b)
		if err != nil {
			return err
		}
		b = b[n:]
		switch num {
		case helloVersions:
			n, err = m.consumeVersions(typ, b)
		case helloMaxPayload:
			m.MaxPayload, n, err = consumeUint32("hello", num, typ, b)
		case helloCapabilities:
			var c string
			if c, n, err = consumeString("hello", num, typ, b, MaxCapabilityLen); err == nil {
				if len(m.Capabilities) == MaxCapabilities {
					return malformedError("hello", "more than %d capabilities", MaxCapabilities)
				}
				m.Capabilities = append(m.Capabilities, c)
			}
		case helloConnID:
			var id []byte
			if id, n, err = consumeBytes("hello", num, typ, b, ConnIDLen); err == nil {
				if len(id) != 0 && len(id) != ConnIDLen {
					return malformedError("hello", "connection ID is %d bytes, want 0 or %d", len(id), ConnIDLen)
				}
				m.ConnID = append(m.ConnID[:0], id...)
				if len(m.ConnID) == 0 {
					m.ConnID = nil
				}
			}
		case helloRecvWindow:
			m.RecvWindow, n, err = consumeUint32("hello", num, typ, b)
		case helloResume:
			var v uint64
			if v, n, err = consumeVarint("hello", num, typ, b); err == nil {
				m.Resume = v != 0
			}
		default:
			n, err = skipField("hello", num, typ, b)
		}
		if err != nil {
			return err
		}
		b = b[n:]
	}
	return nil
}

// consumeVersions reads field 1, packed (wire type 2) or not (wire type 0).
func (m *Hello) consumeVersions(typ protowire.Type, b []byte) (int, error) {
	add := func(v uint32) error {
		if len(m.Versions) == MaxVersions {
			return malformedError("hello", "more than %d versions", MaxVersions)
		}
		m.Versions = append(m.Versions, v)
		return nil
	}
	if typ == protowire.VarintType {
		v, n, err := consumeUint32("hello", helloVersions, typ, b)
		if err != nil {
			return 0, err
		}
		return n, add(v)
	}
	// MaxVersions varints take at most this many bytes, even overlong ones.
	packed, n, err := consumeBytes("hello", helloVersions, typ, b, binary.MaxVarintLen64*MaxVersions)
	if err != nil {
		return 0, err
	}
	for len(packed) > 0 {
		v, k, err := consumeUint32("hello", helloVersions, protowire.VarintType, packed)
		if err != nil {
			return 0, err
		}
		if err := add(v); err != nil {
			return 0, err
		}
		packed = packed[k:]
	}
	return n, nil
}
