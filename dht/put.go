package dht

import (
	"google.golang.org/protobuf/encoding/protowire"
)

// Put asks a node to store a record under its key (type [TypePut]); the
// answer is [PutResult]. The receiver checks the record before storing it
// (SPEC.md §4.3).
//
//	field 1  record  Record  tag 0x0a
//	field 2  server  bool    tag 0x10
type Put struct {
	Record *Record
	// Server is set by a sender that serves the DHT.
	Server bool
}

const (
	putRecord protowire.Number = 1
	putServer protowire.Number = 2
)

// Type returns [TypePut].
func (*Put) Type() Type { return TypePut }

// FromServer reports m.Server.
func (m *Put) FromServer() bool { return m.Server }

// Len returns the size of the encoded message.
func (m *Put) Len() int {
	n := sizeVarintField(putServer, boolVarint(m.Server))
	if m.Record != nil {
		n += sizeMessageField(putRecord, m.Record.Len())
	}
	return n
}

// Append appends the encoded message to b.
func (m *Put) Append(b []byte) ([]byte, error) {
	if m.Record == nil {
		return b, malformedError("put", "no record")
	}
	start := len(b)
	b = protowire.AppendTag(b, putRecord, protowire.BytesType)
	b = protowire.AppendVarint(b, uint64(m.Record.Len()))
	b, err := m.Record.Append(b)
	if err != nil {
		return b[:start], err
	}
	return appendVarintField(b, putServer, boolVarint(m.Server)), nil
}

// Unmarshal resets m and decodes b into it. The record is decoded, not
// verified.
func (m *Put) Unmarshal(b []byte) error {
	*m = Put{}
	for len(b) > 0 {
		num, typ, n, err := consumeTag("put", b)
		if err != nil {
			return err
		}
		b = b[n:]
		switch num {
		case putRecord:
			var v []byte
			if v, n, err = consumeBytes("put", num, typ, b, MaxRecordSize); err == nil {
				r := new(Record)
				if err = r.Unmarshal(v); err == nil {
					m.Record = r
				}
			}
		case putServer:
			m.Server, n, err = consumeBool("put", num, typ, b)
		default:
			n, err = skipField("put", num, typ, b)
		}
		if err != nil {
			return err
		}
		b = b[n:]
	}
	if m.Record == nil {
		return malformedError("put", "no record")
	}
	return nil
}
