package dht

import (
	"fmt"
	"math"
	"net/netip"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/ferrynet/ferry/dht/kbucket"
	"github.com/ferrynet/ferry/identity"
)

// Bounds of the codec; SPEC.md, "Bounds", gives the reasons.
const (
	// MaxMessageSize is the largest encoded message, type byte included:
	// room for [MaxValues] records and [MaxContacts] contacts.
	MaxMessageSize = 24 << 10
	// MaxContacts is the most contacts one response carries.
	MaxContacts = 32
	// MaxValues is the most records one VALUES response carries; also the
	// per-topic cap of a store.
	MaxValues = 20
	// MaxReasonLen bounds the text of a PUT_RESULT.
	MaxReasonLen = 256
)

// Type is the first byte of an encoded message.
type Type byte

// Message types.
const (
	TypePing      Type = 0x01
	TypePong      Type = 0x02
	TypeFindNode  Type = 0x03
	TypeNodes     Type = 0x04
	TypeGet       Type = 0x05
	TypeValues    Type = 0x06
	TypePut       Type = 0x07
	TypePutResult Type = 0x08
)

func (t Type) String() string {
	switch t {
	case TypePing:
		return "PING"
	case TypePong:
		return "PONG"
	case TypeFindNode:
		return "FIND_NODE"
	case TypeNodes:
		return "NODES"
	case TypeGet:
		return "GET"
	case TypeValues:
		return "VALUES"
	case TypePut:
		return "PUT"
	case TypePutResult:
		return "PUT_RESULT"
	default:
		return fmt.Sprintf("Type(0x%02x)", byte(t))
	}
}

// Message is one DHT request or response. Append appends the protobuf
// payload (without the type byte), Len gives its size, Unmarshal resets the
// message and decodes a payload.
type Message interface {
	Type() Type
	Len() int
	Append(b []byte) ([]byte, error)
	Unmarshal(b []byte) error
}

// Request is a message a node sends to ask something: [Ping], [FindNode],
// [Get], [Put].
type Request interface {
	Message
	// FromServer reports whether the sender serves the DHT, so the
	// receiver may add it to its table once it answers a ping.
	FromServer() bool
}

func newMessage(t Type) Message {
	switch t {
	case TypePing:
		return new(Ping)
	case TypePong:
		return new(Pong)
	case TypeFindNode:
		return new(FindNode)
	case TypeNodes:
		return new(Nodes)
	case TypeGet:
		return new(Get)
	case TypeValues:
		return new(Values)
	case TypePut:
		return new(Put)
	case TypePutResult:
		return new(PutResult)
	default:
		return nil
	}
}

// AppendMessage appends m with its type byte.
func AppendMessage(b []byte, m Message) ([]byte, error) {
	start := len(b)
	b = append(b, byte(m.Type()))
	b, err := m.Append(b)
	if err != nil {
		return b[:start], err
	}
	if n := len(b) - start; n > MaxMessageSize {
		return b[:start], fmt.Errorf("dht: %v is %d bytes, maximum %d: %w", m.Type(), n, MaxMessageSize, ErrMessageTooLarge)
	}
	return b, nil
}

// ParseMessage decodes one message (type byte and payload) that fills b. It
// copies what it keeps, so b may be reused.
func ParseMessage(b []byte) (Message, error) {
	if len(b) > MaxMessageSize {
		return nil, fmt.Errorf("dht: message is %d bytes, maximum %d: %w", len(b), MaxMessageSize, ErrMessageTooLarge)
	}
	if len(b) == 0 {
		return nil, fmt.Errorf("dht: empty message: %w", ErrMalformed)
	}
	m := newMessage(Type(b[0]))
	if m == nil {
		return nil, fmt.Errorf("dht: type 0x%02x: %w", b[0], ErrUnknownType)
	}
	if err := m.Unmarshal(b[1:]); err != nil {
		return nil, err
	}
	return m, nil
}

// malformedError builds an error for message msg wrapping ErrMalformed.
func malformedError(msg string, format string, args ...any) error {
	return fmt.Errorf("dht: %s: %s: %w", msg, fmt.Sprintf(format, args...), ErrMalformed)
}

// Encoding helpers; each appends one field, omitting zero values as proto3
// does. They mirror wire/'s, which are unexported there.

func sizeVarintField(num protowire.Number, v uint64) int {
	if v == 0 {
		return 0
	}
	return protowire.SizeTag(num) + protowire.SizeVarint(v)
}

func appendVarintField(b []byte, num protowire.Number, v uint64) []byte {
	if v == 0 {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.VarintType)
	return protowire.AppendVarint(b, v)
}

func sizeBytesField(num protowire.Number, n int) int {
	if n == 0 {
		return 0
	}
	return protowire.SizeTag(num) + protowire.SizeBytes(n)
}

// sizeMessageField is the size of an embedded message field, which is
// written even when empty (a repeated entry).
func sizeMessageField(num protowire.Number, n int) int {
	return protowire.SizeTag(num) + protowire.SizeBytes(n)
}

func appendBytesField(b []byte, num protowire.Number, v []byte) []byte {
	if len(v) == 0 {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendBytes(b, v)
}

func appendStringField(b []byte, num protowire.Number, v string) []byte {
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendString(b, v)
}

func boolVarint(v bool) uint64 {
	if v {
		return 1
	}
	return 0
}

func consumeTag(msg string, b []byte) (protowire.Number, protowire.Type, int, error) {
	num, typ, n := protowire.ConsumeTag(b)
	if n < 0 {
		return 0, 0, 0, malformedError(msg, "field tag: %v", protowire.ParseError(n))
	}
	return num, typ, n, nil
}

func wrongType(msg string, num protowire.Number, typ, want protowire.Type) error {
	return malformedError(msg, "field %d has wire type %d, want %d", num, typ, want)
}

func consumeVarint(msg string, num protowire.Number, typ protowire.Type, b []byte) (uint64, int, error) {
	if typ != protowire.VarintType {
		return 0, 0, wrongType(msg, num, typ, protowire.VarintType)
	}
	v, n := protowire.ConsumeVarint(b)
	if n < 0 {
		return 0, 0, malformedError(msg, "field %d: %v", num, protowire.ParseError(n))
	}
	return v, n, nil
}

func consumeUint32(msg string, num protowire.Number, typ protowire.Type, b []byte) (uint32, int, error) {
	v, n, err := consumeVarint(msg, num, typ, b)
	if err != nil {
		return 0, 0, err
	}
	if v > math.MaxUint32 {
		return 0, 0, malformedError(msg, "field %d: value %d overflows uint32", num, v)
	}
	return uint32(v), n, nil
}

func consumeBool(msg string, num protowire.Number, typ protowire.Type, b []byte) (bool, int, error) {
	v, n, err := consumeVarint(msg, num, typ, b)
	return v != 0, n, err
}

// consumeBytes reads a length-delimited field of at most maxLen bytes. The
// result aliases b.
func consumeBytes(msg string, num protowire.Number, typ protowire.Type, b []byte, maxLen int) ([]byte, int, error) {
	if typ != protowire.BytesType {
		return nil, 0, wrongType(msg, num, typ, protowire.BytesType)
	}
	v, n := protowire.ConsumeBytes(b)
	if n < 0 {
		return nil, 0, malformedError(msg, "field %d: %v", num, protowire.ParseError(n))
	}
	if len(v) > maxLen {
		return nil, 0, malformedError(msg, "field %d: %d bytes exceeds maximum %d", num, len(v), maxLen)
	}
	return v, n, nil
}

func consumeString(msg string, num protowire.Number, typ protowire.Type, b []byte, maxLen int) (string, int, error) {
	v, n, err := consumeBytes(msg, num, typ, b, maxLen)
	if err != nil {
		return "", 0, err
	}
	if !utf8.Valid(v) {
		return "", 0, malformedError(msg, "field %d: invalid UTF-8", num)
	}
	return string(v), n, nil
}

// consumeID reads a 32-byte ID field; an empty field is the zero ID.
func consumeID(msg string, num protowire.Number, typ protowire.Type, b []byte) (identity.PeerID, int, error) {
	v, n, err := consumeBytes(msg, num, typ, b, identity.IDLen)
	if err != nil {
		return identity.PeerID{}, 0, err
	}
	var id identity.PeerID
	if len(v) != 0 && len(v) != identity.IDLen {
		return id, 0, malformedError(msg, "field %d: ID is %d bytes, want %d", num, len(v), identity.IDLen)
	}
	copy(id[:], v)
	return id, n, nil
}

func skipField(msg string, num protowire.Number, typ protowire.Type, b []byte) (int, error) {
	n := protowire.ConsumeFieldValue(num, typ, b)
	if n < 0 {
		return 0, malformedError(msg, "unknown field %d: %v", num, protowire.ParseError(n))
	}
	return n, nil
}

func checkString(msg, field, v string, maxLen int) error {
	if len(v) > maxLen {
		return malformedError(msg, "%s is %d bytes, maximum %d", field, len(v), maxLen)
	}
	if !utf8.ValidString(v) {
		return malformedError(msg, "%s is not valid UTF-8", field)
	}
	return nil
}

func idBytes(id identity.PeerID) []byte {
	if id.IsZero() {
		return nil
	}
	return id[:]
}

// Addresses are 4 or 16 bytes of IP followed by the port, big-endian.

func addrLen(a netip.AddrPort) int {
	if !a.IsValid() {
		return 0
	}
	return a.Addr().BitLen()/8 + 2
}

func appendAddr(b []byte, a netip.AddrPort) []byte {
	ip := a.Addr().AsSlice()
	b = append(b, ip...)
	return append(b, byte(a.Port()>>8), byte(a.Port()))
}

func parseAddr(msg string, v []byte) (netip.AddrPort, error) {
	switch len(v) {
	case 0:
		return netip.AddrPort{}, nil
	case 6, 18:
		ip, _ := netip.AddrFromSlice(v[:len(v)-2])
		return netip.AddrPortFrom(ip, uint16(v[len(v)-2])<<8|uint16(v[len(v)-1])), nil
	default:
		return netip.AddrPort{}, malformedError(msg, "address is %d bytes, want 6 or 18", len(v))
	}
}

func checkAddr(msg string, a netip.AddrPort) error {
	if a.IsValid() && a.Addr().Zone() != "" {
		return malformedError(msg, "address %v has a zone", a)
	}
	return nil
}

// Contact (an embedded message, SPEC.md §3.2):
//
//	field 1  id    bytes (32)       tag 0x0a
//	field 2  addr  bytes (0, 6, 18) tag 0x12
const (
	contactID   protowire.Number = 1
	contactAddr protowire.Number = 2
)

func contactLen(c kbucket.Contact) int {
	return sizeBytesField(contactID, len(idBytes(c.ID))) + sizeBytesField(contactAddr, addrLen(c.Addr))
}

func appendContact(b []byte, c kbucket.Contact) []byte {
	b = appendBytesField(b, contactID, idBytes(c.ID))
	if c.Addr.IsValid() {
		b = protowire.AppendTag(b, contactAddr, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(addrLen(c.Addr)))
		b = appendAddr(b, c.Addr)
	}
	return b
}

func parseContact(msg string, b []byte) (kbucket.Contact, error) {
	var c kbucket.Contact
	for len(b) > 0 {
		num, typ, n, err := consumeTag(msg, b)
		if err != nil {
			return c, err
		}
		b = b[n:]
		switch num {
		case contactID:
			c.ID, n, err = consumeID(msg, num, typ, b)
		case contactAddr:
			var v []byte
			if v, n, err = consumeBytes(msg, num, typ, b, 18); err == nil {
				c.Addr, err = parseAddr(msg, v)
			}
		default:
			n, err = skipField(msg, num, typ, b)
		}
		if err != nil {
			return c, err
		}
		b = b[n:]
	}
	if c.ID.IsZero() {
		return c, malformedError(msg, "contact without an ID")
	}
	return c, nil
}

// maxContactLen bounds an encoded contact, unknown fields included.
const maxContactLen = 256

func contactsLen(num protowire.Number, cs []kbucket.Contact) int {
	n := 0
	for _, c := range cs {
		n += sizeMessageField(num, contactLen(c))
	}
	return n
}

func checkContacts(msg string, cs []kbucket.Contact) error {
	if len(cs) > MaxContacts {
		return malformedError(msg, "%d contacts, maximum %d", len(cs), MaxContacts)
	}
	for _, c := range cs {
		if c.ID.IsZero() {
			return malformedError(msg, "contact without an ID")
		}
		if err := checkAddr(msg, c.Addr); err != nil {
			return err
		}
	}
	return nil
}

func appendContacts(b []byte, num protowire.Number, cs []kbucket.Contact) []byte {
	for _, c := range cs {
		b = protowire.AppendTag(b, num, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(contactLen(c)))
		b = appendContact(b, c)
	}
	return b
}

func consumeContact(msg string, num protowire.Number, typ protowire.Type, b []byte, cs *[]kbucket.Contact) (int, error) {
	v, n, err := consumeBytes(msg, num, typ, b, maxContactLen)
	if err != nil {
		return 0, err
	}
	if len(*cs) == MaxContacts {
		return 0, malformedError(msg, "more than %d contacts", MaxContacts)
	}
	c, err := parseContact(msg, v)
	if err != nil {
		return 0, err
	}
	*cs = append(*cs, c)
	return n, nil
}
