package wire

import "google.golang.org/protobuf/encoding/protowire"

// Ping is a heartbeat probe (type [TypePing]). The receiver answers with a
// [Pong] carrying the same two values, so the sender can match the answer
// and measure the round-trip time with its own clock.
//
// Payload (protobuf message ferry.wire.v1.Ping):
//
//	field 1  id              uint64   wire type 0: tag 0x08, varint
//	field 2  sent_unix_nano  int64    wire type 0: tag 0x10, varint (two's complement, 10 bytes if negative)
type Ping struct {
	// ID identifies the probe; senders count up from 1.
	ID uint64
	// SentUnixNano is the sender's clock when it sent the probe, in
	// nanoseconds since the Unix epoch. Only the sender interprets it.
	SentUnixNano int64
}

const (
	pingID   protowire.Number = 1
	pingSent protowire.Number = 2
)

var _ Message = (*Ping)(nil)

// Type returns [TypePing].
func (*Ping) Type() Type { return TypePing }

// Len returns the size of the encoded message.
func (m *Ping) Len() int { return pingLen(m.ID, m.SentUnixNano) }

// Append appends the encoded message to b. It cannot fail.
func (m *Ping) Append(b []byte) ([]byte, error) {
	return appendPing(b, m.ID, m.SentUnixNano), nil
}

// Unmarshal resets m and decodes b into it.
func (m *Ping) Unmarshal(b []byte) error {
	var err error
	m.ID, m.SentUnixNano, err = unmarshalPing("ping", b)
	return err
}

// The PING and PONG payloads share one layout.

func pingLen(id uint64, sent int64) int {
	return sizeVarintField(pingID, id) + sizeVarintField(pingSent, uint64(sent))
}

func appendPing(b []byte, id uint64, sent int64) []byte {
	b = appendVarintField(b, pingID, id)
	return appendVarintField(b, pingSent, uint64(sent))
}

func unmarshalPing(msg string, b []byte) (id uint64, sent int64, err error) {
	for len(b) > 0 {
		num, typ, n, err := consumeTag(msg, b)
		if err != nil {
			return 0, 0, err
		}
		b = b[n:]
		var v uint64
		switch num {
		case pingID:
			v, n, err = consumeVarint(msg, num, typ, b)
			id = v
		case pingSent:
			v, n, err = consumeVarint(msg, num, typ, b)
			sent = int64(v)
		default:
			n, err = skipField(msg, num, typ, b)
		}
		if err != nil {
			return 0, 0, err
		}
		b = b[n:]
	}
	return id, sent, nil
}
