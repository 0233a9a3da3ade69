package gossip

import (
	"crypto/ed25519"
	"encoding/binary"
	"fmt"

	"github.com/ferrynet/ferry/identity"
)

// Version is the wire version this package speaks (SPEC.md).
const Version = 1

// Wire bounds (SPEC.md, "Bounds").
const (
	// MaxTopicLen bounds a topic name in bytes.
	MaxTopicLen = 255
	// MaxWireData bounds a message's data on the wire (the length is 16
	// bits); a router enforces its own, smaller, maximum.
	MaxWireData = 65535
	// MaxIDs bounds the message IDs of one IHAVE or GRAFT.
	MaxIDs = 64
)

// FrameType is a frame's type byte.
type FrameType uint8

// Frame types (SPEC.md, "Frames").
const (
	TypeMsg   FrameType = 1 // a whole message, eager push
	TypeIHave FrameType = 2 // message IDs, lazy push
	TypeGraft FrameType = 3 // "send me these and push to me eagerly"
	TypePrune FrameType = 4 // "push to me lazily"
	TypeJoin  FrameType = 5 // "be my neighbour on this topic"
	TypeLeave FrameType = 6 // "I am not your neighbour on this topic"
)

func (t FrameType) String() string {
	switch t {
	case TypeMsg:
		return "MSG"
	case TypeIHave:
		return "IHAVE"
	case TypeGraft:
		return "GRAFT"
	case TypePrune:
		return "PRUNE"
	case TypeJoin:
		return "JOIN"
	case TypeLeave:
		return "LEAVE"
	}
	return fmt.Sprintf("type(%d)", uint8(t))
}

// MsgID names a message: its origin and its sequence number.
type MsgID struct {
	Origin identity.PeerID
	Seq    uint64
}

// Announce is one entry of an IHAVE: a message ID and the hops the
// announcer's copy had travelled.
type Announce struct {
	ID   MsgID
	Hops uint8
}

// Msg is a signed message as it travels.
//
//	+---------+------+---------+-------+------------------+
//	| ver 1   | type | toplen  | topic (toplen bytes)     |
//	+---------+------+---------+-------+------------------+
//	| origin public key (32)                              |
//	| first seq (8, big endian) | seq (8, big endian)     |
//	| hops (1) | data len (2) | data ...                  |
//	| signature (64)                                      |
//	+-----------------------------------------------------+
type Msg struct {
	PublicKey ed25519.PublicKey
	// First is the first sequence number of the origin's current run: a
	// receiver that sees it knows whether it has missed earlier ones.
	First uint64
	Seq   uint64
	// Hops counts the forwards so far (not signed; 0 from the origin).
	Hops uint8
	Data []byte
	Sig  []byte
}

// Frame is one decoded frame. Which fields are set depends on Type.
type Frame struct {
	Type  FrameType
	Topic string
	Msg   Msg        // TypeMsg
	IHave []Announce // TypeIHave
	Graft []MsgID    // TypeGraft
}

const (
	headerLen  = 3
	msgFixed   = ed25519.PublicKeySize + 8 + 8 + 1 + 2 + ed25519.SignatureSize
	announceSz = identity.IDLen + 8 + 1
	idSz       = identity.IDLen + 8
)

// Len is the encoded length of f.
func (f *Frame) Len() int {
	n := headerLen + len(f.Topic)
	switch f.Type {
	case TypeMsg:
		n += msgFixed + len(f.Msg.Data)
	case TypeIHave:
		n += 1 + announceSz*len(f.IHave)
	case TypeGraft:
		n += 1 + idSz*len(f.Graft)
	}
	return n
}

// Append appends f's encoding to b.
func (f *Frame) Append(b []byte) ([]byte, error) {
	if len(f.Topic) == 0 || len(f.Topic) > MaxTopicLen {
		return b, fmt.Errorf("%w: topic of %d bytes", ErrMalformed, len(f.Topic))
	}
	b = append(b, Version, byte(f.Type), byte(len(f.Topic)))
	b = append(b, f.Topic...)
	switch f.Type {
	case TypeMsg:
		m := &f.Msg
		if len(m.PublicKey) != ed25519.PublicKeySize || len(m.Sig) != ed25519.SignatureSize || len(m.Data) > MaxWireData {
			return b, fmt.Errorf("%w: message with key %d, signature %d, data %d bytes", ErrMalformed, len(m.PublicKey), len(m.Sig), len(m.Data))
		}
		b = append(b, m.PublicKey...)
		b = binary.BigEndian.AppendUint64(b, m.First)
		b = binary.BigEndian.AppendUint64(b, m.Seq)
		b = append(b, m.Hops)
		b = binary.BigEndian.AppendUint16(b, uint16(len(m.Data)))
		b = append(b, m.Data...)
		b = append(b, m.Sig...)
	case TypeIHave:
		if len(f.IHave) == 0 || len(f.IHave) > MaxIDs {
			return b, fmt.Errorf("%w: IHAVE of %d IDs", ErrMalformed, len(f.IHave))
		}
		b = append(b, byte(len(f.IHave)))
		for _, a := range f.IHave {
			b = append(b, a.ID.Origin[:]...)
			b = binary.BigEndian.AppendUint64(b, a.ID.Seq)
			b = append(b, a.Hops)
		}
	case TypeGraft:
		if len(f.Graft) > MaxIDs {
			return b, fmt.Errorf("%w: GRAFT of %d IDs", ErrMalformed, len(f.Graft))
		}
		b = append(b, byte(len(f.Graft)))
		for _, id := range f.Graft {
			b = append(b, id.Origin[:]...)
			b = binary.BigEndian.AppendUint64(b, id.Seq)
		}
	case TypePrune, TypeJoin, TypeLeave:
	default:
		return b, fmt.Errorf("%w: %d", ErrUnknownType, uint8(f.Type))
	}
	return b, nil
}

// ParseFrame decodes one frame, which must fill b exactly. Data and Sig of
// a MSG alias b.
func ParseFrame(b []byte) (Frame, error) {
	var f Frame
	if len(b) < headerLen {
		return f, fmt.Errorf("%w: %d bytes, shorter than the header", ErrMalformed, len(b))
	}
	if b[0] != Version {
		return f, fmt.Errorf("%w: %d", ErrBadVersion, b[0])
	}
	f.Type = FrameType(b[1])
	tl := int(b[2])
	if tl == 0 || len(b) < headerLen+tl {
		return f, fmt.Errorf("%w: topic of %d bytes in a frame of %d", ErrMalformed, tl, len(b))
	}
	f.Topic = string(b[headerLen : headerLen+tl])
	body := b[headerLen+tl:]
	var n int
	var err error
	switch f.Type {
	case TypeMsg:
		f.Msg, n, err = parseMsg(body)
	case TypeIHave:
		f.IHave, n, err = parseIHave(body)
	case TypeGraft:
		f.Graft, n, err = parseGraft(body)
	case TypePrune, TypeJoin, TypeLeave:
	default:
		return f, fmt.Errorf("%w: %d", ErrUnknownType, b[1])
	}
	if err != nil {
		return f, err
	}
	if n != len(body) {
		return f, fmt.Errorf("%w: %d trailing bytes after %v", ErrMalformed, len(body)-n, f.Type)
	}
	return f, nil
}

func parseMsg(b []byte) (Msg, int, error) {
	var m Msg
	if len(b) < msgFixed {
		return m, 0, fmt.Errorf("%w: MSG body of %d bytes", ErrMalformed, len(b))
	}
	m.PublicKey = ed25519.PublicKey(b[:ed25519.PublicKeySize])
	p := ed25519.PublicKeySize
	m.First = binary.BigEndian.Uint64(b[p:])
	m.Seq = binary.BigEndian.Uint64(b[p+8:])
	m.Hops = b[p+16]
	dl := int(binary.BigEndian.Uint16(b[p+17:]))
	p += 19
	if len(b) < p+dl+ed25519.SignatureSize {
		return m, 0, fmt.Errorf("%w: MSG data of %d bytes past the end", ErrMalformed, dl)
	}
	m.Data = b[p : p+dl : p+dl]
	p += dl
	m.Sig = b[p : p+ed25519.SignatureSize]
	return m, p + ed25519.SignatureSize, nil
}

func parseIHave(b []byte) ([]Announce, int, error) {
	if len(b) < 1 || b[0] == 0 || b[0] > MaxIDs {
		return nil, 0, fmt.Errorf("%w: IHAVE count", ErrMalformed)
	}
	c := int(b[0])
	if len(b) < 1+c*announceSz {
		return nil, 0, fmt.Errorf("%w: IHAVE of %d IDs in %d bytes", ErrMalformed, c, len(b))
	}
	out := make([]Announce, c)
	p := 1
	for i := range out {
		copy(out[i].ID.Origin[:], b[p:])
		out[i].ID.Seq = binary.BigEndian.Uint64(b[p+identity.IDLen:])
		out[i].Hops = b[p+identity.IDLen+8]
		p += announceSz
	}
	return out, p, nil
}

func parseGraft(b []byte) ([]MsgID, int, error) {
	if len(b) < 1 || b[0] > MaxIDs {
		return nil, 0, fmt.Errorf("%w: GRAFT count", ErrMalformed)
	}
	c := int(b[0])
	if len(b) < 1+c*idSz {
		return nil, 0, fmt.Errorf("%w: GRAFT of %d IDs in %d bytes", ErrMalformed, c, len(b))
	}
	out := make([]MsgID, c)
	p := 1
	for i := range out {
		copy(out[i].Origin[:], b[p:])
		out[i].Seq = binary.BigEndian.Uint64(b[p+identity.IDLen:])
		p += idSz
	}
	return out, p, nil
}

// signedBytes is what an origin signs: a context string, the topic, the
// first and current sequence numbers and the data (SPEC.md, "Signature").
func signedBytes(topic string, first, seq uint64, data []byte) []byte {
	b := make([]byte, 0, len(sigContext)+1+len(topic)+16+len(data))
	b = append(b, sigContext...)
	b = append(b, byte(len(topic)))
	b = append(b, topic...)
	b = binary.BigEndian.AppendUint64(b, first)
	b = binary.BigEndian.AppendUint64(b, seq)
	return append(b, data...)
}

const sigContext = "ferry-gossip-v1\x00"

// SignedMsg returns a MSG frame of data on topic from self, signed: what
// [Topic.Publish] sends, for tools and tests that speak the wire directly
// (a caller that reuses a sequence number or first sends a replay).
func SignedMsg(self *identity.Identity, topic string, first, seq uint64, data []byte) Frame {
	return Frame{Type: TypeMsg, Topic: topic, Msg: Msg{
		PublicKey: self.PublicKey(), First: first, Seq: seq, Data: data,
		Sig: self.Sign(signedBytes(topic, first, seq, data)),
	}}
}
