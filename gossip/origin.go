package gossip

import (
	"slices"
	"time"

	"github.com/ferrynet/ferry/identity"
)

const seenWords = DefaultSeenWindow / 64

// origin is what a topic remembers of one origin: which of its last
// [DefaultSeenWindow] sequence numbers it has seen (the seen-cache, exact
// and bounded), and the delivery state that keeps its messages in order.
type origin struct {
	max      uint64 // highest sequence number seen; 0 before any
	bits     [seenWords]uint64
	first    uint64 // First of the run being delivered
	next     uint64 // next sequence number to deliver; 0: none yet
	held     map[uint64]Message
	gapArmed bool
	last     time.Time
}

type seenState int

const (
	seenNew seenState = iota
	seenDup
	seenStale
)

func (o *origin) check(seq uint64) seenState {
	switch {
	case o.max == 0 || seq > o.max:
		return seenNew
	case o.max-seq >= DefaultSeenWindow:
		return seenStale
	case o.bits[(seq/64)%seenWords]&(1<<(seq%64)) != 0:
		return seenDup
	}
	return seenNew
}

func (o *origin) mark(seq uint64) {
	if seq > o.max {
		if o.max == 0 || seq-o.max >= DefaultSeenWindow {
			o.bits = [seenWords]uint64{}
		} else {
			for s := o.max + 1; s <= seq; s++ {
				o.bits[(s/64)%seenWords] &^= 1 << (s % 64)
			}
		}
		o.max = seq
	}
	o.bits[(seq/64)%seenWords] |= 1 << (seq % 64)
}

// accept files an accepted message for delivery and returns the messages
// now deliverable, in order. late reports a message that came after a
// later one of its origin had been delivered (it is not delivered).
func (o *origin) accept(m Message, first uint64, maxHeld int) (out []Message, late bool) {
	if o.next == 0 || first > o.first {
		// A new stream, or the origin restarted (a new run's First is
		// higher): start at its First.
		out = o.flushAll()
		o.first, o.next = first, first
	}
	switch {
	case m.Seq < o.next:
		return out, true
	case m.Seq == o.next:
		out = append(out, m)
		o.next++
		return o.flushFrom(out), false
	}
	if o.held == nil {
		o.held = make(map[uint64]Message)
	}
	o.held[m.Seq] = m
	if len(o.held) > maxHeld {
		out = append(out, o.skip()...)
	}
	return out, false
}

// flushFrom appends the held messages that follow next without a gap.
func (o *origin) flushFrom(out []Message) []Message {
	for {
		m, ok := o.held[o.next]
		if !ok {
			return out
		}
		delete(o.held, o.next)
		out = append(out, m)
		o.next++
	}
}

// skip gives up on the gap before the lowest held message.
func (o *origin) skip() []Message {
	if len(o.held) == 0 {
		return nil
	}
	low := uint64(0)
	for s := range o.held {
		if low == 0 || s < low {
			low = s
		}
	}
	o.next = low
	return o.flushFrom(nil)
}

func (o *origin) flushAll() []Message {
	if len(o.held) == 0 {
		return nil
	}
	seqs := make([]uint64, 0, len(o.held))
	for s := range o.held {
		seqs = append(seqs, s)
	}
	slices.Sort(seqs)
	out := make([]Message, 0, len(seqs))
	for _, s := range seqs {
		out = append(out, o.held[s])
	}
	clear(o.held)
	o.next = seqs[len(seqs)-1] + 1
	return out
}

// Message is a message delivered to the app.
type Message struct {
	Topic  string
	Origin identity.PeerID
	Seq    uint64
	Data   []byte
	// Hops is how many forwards the copy delivered took (1: straight
	// from the origin).
	Hops int
	// From is the neighbour that sent the copy.
	From identity.PeerID
}
