package dht

import (
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/ferrynet/ferry/dht/kbucket"
)

// Values answers [Get] (type [TypeValues]) with the records the responder
// stores under the key, if any, and the contacts it knows closest to the
// key, so a lookup can go on.
//
//	field 1  records  repeated Record   tag 0x0a (one field per record)
//	field 2  closer   repeated Contact  tag 0x12 (one field per contact)
//
// The receiver verifies every record before using it: a responder may lie.
type Values struct {
	// Records holds at most [MaxValues] records.
	Records []*Record
	// Closer holds at most [MaxContacts] contacts.
	Closer []kbucket.Contact
}

const (
	valuesRecords protowire.Number = 1
	valuesCloser  protowire.Number = 2
)

// Type returns [TypeValues].
func (*Values) Type() Type { return TypeValues }

// Len returns the size of the encoded message.
func (m *Values) Len() int {
	n := contactsLen(valuesCloser, m.Closer)
	for _, r := range m.Records {
		n += sizeMessageField(valuesRecords, r.Len())
	}
	return n
}

// Append appends the encoded message to b.
func (m *Values) Append(b []byte) ([]byte, error) {
	if len(m.Records) > MaxValues {
		return b, malformedError("values", "%d records, maximum %d", len(m.Records), MaxValues)
	}
	if err := checkContacts("values", m.Closer); err != nil {
		return b, err
	}
	start := len(b)
	for _, r := range m.Records {
		b = protowire.AppendTag(b, valuesRecords, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(r.Len()))
		var err error
		if b, err = r.Append(b); err != nil {
			return b[:start], err
		}
	}
	return appendContacts(b, valuesCloser, m.Closer), nil
}

// Unmarshal resets m and decodes b into it. Records are decoded, not
// verified.
func (m *Values) Unmarshal(b []byte) error {
	*m = Values{}
	for len(b) > 0 {
		num, typ, n, err := consumeTag("values", b)
		if err != nil {
			return err
		}
		b = b[n:]
		switch num {
		case valuesRecords:
			var v []byte
			if v, n, err = consumeBytes("values", num, typ, b, MaxRecordSize); err == nil {
				if len(m.Records) == MaxValues {
					return malformedError("values", "more than %d records", MaxValues)
				}
				r := new(Record)
				if err = r.Unmarshal(v); err == nil {
					m.Records = append(m.Records, r)
				}
			}
		case valuesCloser:
			n, err = consumeContact("values", num, typ, b, &m.Closer)
		default:
			n, err = skipField("values", num, typ, b)
		}
		if err != nil {
			return err
		}
		b = b[n:]
	}
	return nil
}
