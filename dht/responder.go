package dht

import (
	"github.com/ferrynet/ferry/dht/kbucket"
	"github.com/ferrynet/ferry/identity"
)

// Responder computes a node's answers from its routing table and store. It
// does no I/O and reads no clock of its own (the store has one), so the
// [Node] and the simulator share it. Its owner serialises access.
type Responder struct {
	// Table is the node's routing table.
	Table *kbucket.Table
	// Store holds records for others; nil for a client, which refuses PUT.
	Store *Store
	// K is how many contacts an answer carries (default kbucket.DefaultK).
	K int
	// Own returns the node's own records under key (its peer record under
	// its PeerID), or nil.
	Own func(key identity.PeerID) []*Record
}

// Respond returns the answer to req from the node from. It returns nil for
// a message that is not a request.
func (r *Responder) Respond(from kbucket.Contact, req Message) Message {
	k := r.K
	if k <= 0 {
		k = kbucket.DefaultK
	}
	k = min(k, MaxContacts)
	switch m := req.(type) {
	case *Ping:
		return &Pong{}
	case *FindNode:
		return &Nodes{Closer: r.Table.AppendClosest(nil, m.Target, k, from.ID, true)}
	case *Get:
		v := &Values{Closer: r.Table.AppendClosest(nil, m.Key, k, from.ID, true)}
		if r.Own != nil {
			v.Records = append(v.Records, r.Own(m.Key)...)
		}
		if r.Store != nil {
			for _, rec := range r.Store.Get(m.Key) {
				if len(v.Records) == MaxValues {
					break
				}
				if !containsSigner(v.Records, rec.PeerID()) {
					v.Records = append(v.Records, rec)
				}
			}
		}
		return v
	case *Put:
		if r.Store == nil {
			return &PutResult{Code: PutNotServer}
		}
		err := r.Store.Put(m.Record.Key(), m.Record)
		res := &PutResult{Code: PutCodeOf(err)}
		if err != nil {
			res.Reason = truncate(err.Error(), MaxReasonLen)
		}
		return res
	default:
		return nil
	}
}

func containsSigner(rs []*Record, id identity.PeerID) bool {
	for _, r := range rs {
		if r.PeerID() == id {
			return true
		}
	}
	return false
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	// Cut at a rune boundary.
	for n > 0 && s[n]&0xc0 == 0x80 {
		n--
	}
	return s[:n]
}
