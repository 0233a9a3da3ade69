package dht

import (
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/ferrynet/ferry/dht/kbucket"
)

// Nodes answers [FindNode] (type [TypeNodes]) with the contacts the
// responder knows closest to the target, closest first.
//
//	field 1  closer  repeated Contact  tag 0x0a (one field per contact)
type Nodes struct {
	// Closer holds at most [MaxContacts] contacts.
	Closer []kbucket.Contact
}

const nodesCloser protowire.Number = 1

// Type returns [TypeNodes].
func (*Nodes) Type() Type { return TypeNodes }

// Len returns the size of the encoded message.
func (m *Nodes) Len() int { return contactsLen(nodesCloser, m.Closer) }

// Append appends the encoded message to b.
func (m *Nodes) Append(b []byte) ([]byte, error) {
	if err := checkContacts("nodes", m.Closer); err != nil {
		return b, err
	}
	return appendContacts(b, nodesCloser, m.Closer), nil
}

// Unmarshal resets m and decodes b into it.
func (m *Nodes) Unmarshal(b []byte) error {
	*m = Nodes{}
	for len(b) > 0 {
		num, typ, n, err := consumeTag("nodes", b)
		if err != nil {
			return err
		}
		b = b[n:]
		switch num {
		case nodesCloser:
			n, err = consumeContact("nodes", num, typ, b, &m.Closer)
		default:
			n, err = skipField("nodes", num, typ, b)
		}
		if err != nil {
			return err
		}
		b = b[n:]
	}
	return nil
}
