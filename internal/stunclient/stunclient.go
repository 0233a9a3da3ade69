// Package stunclient runs STUN client transactions (RFC 8489 section 6.2)
// on sockets it is given: a request over UDP retransmitted on one schedule
// until an acceptable answer comes, a request over a stream (TCP or TLS)
// sent once, and the waits for a message of a transaction on another
// socket that hairpinning and RESPONSE-PORT tests need.
//
// # The schedule
//
// Every UDP transaction in Ferry retransmits the way RFC 8489 section
// 6.2.1 says: the request goes out at 0, then after RTO, 2*RTO, 4*RTO...
// (at 0, RTO, 3*RTO, 7*RTO...), Rc times in all, and the transaction
// fails Rm*RTO after the last transmission. The defaults are the RFC's:
// RTO 500 ms, Rc 7, Rm 16 (39.5 s in all). A Schedule changes the three
// numbers, and can cap the whole transaction with a Timeout; with Rc
// negative the request is resent until Timeout (or the context) ends it.
// The users pick:
//
//   - natprobe: RTO and Timeout from its Config (500 ms, 5 s), Rc
//     unbounded: four transmissions by default;
//   - the SDK's UDP check: RTO 200 ms, Rc 3, Rm 4 (1.4 s);
//   - readiness waits of the lab and the benchmarks: Rc 1, Rm 1 (one
//     request per RTO, each its own transaction).
//
// Received datagrams are classified by Classify: not STUN or undecodable
// (counted and skipped), another transaction, our own request come back
// (hairpinning), or an answer (a success or error response of the
// request's method and transaction ID). A transaction never fails on what
// it receives: it waits for a good answer until the schedule ends.
package stunclient

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/pion/stun/v4"
)

// The RFC 8489 defaults (section 6.2.1).
const (
	DefaultRTO = 500 * time.Millisecond
	DefaultRc  = 7
	DefaultRm  = 16
)

// MaxMessage is the largest message read. STUN answers are small; larger
// datagrams are read truncated and do not decode.
const MaxMessage = 4096

// Schedule is when a UDP transaction sends its request and when it gives
// up. The zero value is RFC 8489's default schedule.
type Schedule struct {
	// RTO is the first retransmission timeout; the next waits double it.
	// 0 means DefaultRTO.
	RTO time.Duration
	// Rc is how many times the request is sent. 0 means DefaultRc;
	// negative means no limit (Timeout or the context must end it).
	Rc int
	// Rm is how many RTOs the transaction waits after the last
	// transmission. 0 means DefaultRm.
	Rm int
	// Timeout, when positive, ends the transaction this long after it
	// started even if transmissions remain.
	Timeout time.Duration
}

func (s Schedule) withDefaults() Schedule {
	if s.RTO <= 0 {
		s.RTO = DefaultRTO
	}
	if s.Rc == 0 {
		s.Rc = DefaultRc
	}
	if s.Rm <= 0 {
		s.Rm = DefaultRm
	}
	return s
}

// Plan returns the offsets from the start at which the request is sent,
// and when the transaction gives up, had every send happened on time. A
// schedule with no bound (Rc negative, no Timeout) is cut at 64 sends.
func (s Schedule) Plan() (sends []time.Duration, end time.Duration) {
	t := s.withDefaults().timeline(time.Time{})
	for t.next != nil && len(sends) < 64 {
		at := *t.next
		sends = append(sends, at.Sub(time.Time{}))
		t.sent(at)
	}
	return sends, t.end.Sub(time.Time{})
}

// timeline tracks a transaction's next transmission and its end.
type timeline struct {
	s        Schedule
	start    time.Time
	next     *time.Time // nil: no more transmissions
	interval time.Duration
	n        int // transmissions so far
	end      time.Time
}

// farFuture stands for "no end" in a schedule bound only by its context.
const farFuture = 100 * 365 * 24 * time.Hour

func (s Schedule) timeline(start time.Time) *timeline {
	t := &timeline{s: s, start: start, interval: s.RTO}
	first := start
	t.next = &first
	t.end = start.Add(farFuture)
	if s.Timeout > 0 {
		t.end = start.Add(s.Timeout)
	}
	return t
}

// sent records a transmission at now and schedules the next one.
func (t *timeline) sent(now time.Time) {
	t.n++
	if t.s.Rc > 0 && t.n >= t.s.Rc {
		t.next = nil
		if last := now.Add(time.Duration(t.s.Rm) * t.s.RTO); last.Before(t.end) {
			t.end = last
		}
		return
	}
	next := now.Add(t.interval)
	if t.interval < farFuture/2 {
		t.interval *= 2
	}
	if !next.Before(t.end) {
		t.next = nil
		return
	}
	t.next = &next
}

// wake is when a waiting transaction must look up: its next transmission
// or its end.
func (t *timeline) wake() time.Time {
	if t.next != nil && t.next.Before(t.end) {
		return *t.next
	}
	return t.end
}

// Kind is what a received message is to a transaction.
type Kind int

const (
	// Garbage is not STUN, does not decode, or carries the transaction's
	// ID with another method or as an indication.
	Garbage Kind = iota
	// OtherTransaction is a STUN message of another transaction.
	OtherTransaction
	// Echo is a request with the transaction's ID: the request itself,
	// come back (as through a hairpinning NAT).
	Echo
	// Answer is a success or error response of the transaction's method.
	Answer
)

func (k Kind) String() string {
	switch k {
	case OtherTransaction:
		return "other transaction"
	case Echo:
		return "echo"
	case Answer:
		return "answer"
	}
	return "garbage"
}

// Classify decodes raw and says what it is to the transaction with ID
// txid and the given method. The message is returned (decoded, with its
// own copy of raw) for every kind but Garbage. It never panics.
func Classify(raw []byte, txid [stun.TransactionIDSize]byte, method stun.Method) (*stun.Message, Kind) {
	if !stun.IsMessage(raw) {
		return nil, Garbage
	}
	m := &stun.Message{Raw: append([]byte(nil), raw...)}
	if m.Decode() != nil {
		return nil, Garbage
	}
	if m.TransactionID != txid {
		return m, OtherTransaction
	}
	if m.Type.Method != method {
		return nil, Garbage
	}
	switch m.Type.Class {
	case stun.ClassRequest:
		return m, Echo
	case stun.ClassSuccessResponse, stun.ClassErrorResponse:
		return m, Answer
	}
	return nil, Garbage
}

// Response is a transaction's answer.
type Response struct {
	Msg  *stun.Message  // decoded; a success or an error response
	From netip.AddrPort // where it came from (unmapped)
}

// Stats counts what a transaction sent and what it threw away; they
// explain a timeout.
type Stats struct {
	Sent             int // transmissions that the socket accepted
	Garbage          int // datagrams that were not STUN or did not decode
	OtherTransaction int // STUN messages of another transaction, or our request come back
	WrongSource      int // answers from an address the caller did not accept
}

// ErrTimeout means a transaction got no acceptable answer before its
// schedule ended. It is a net.Error whose Timeout() is true.
var ErrTimeout error = timeoutError{}

type timeoutError struct{}

func (timeoutError) Error() string   { return "stunclient: no STUN response" }
func (timeoutError) Timeout() bool   { return true }
func (timeoutError) Temporary() bool { return true }

// SendError means no transmission of a transaction left the socket.
type SendError struct {
	To  netip.AddrPort
	Err error
}

func (e *SendError) Error() string { return fmt.Sprintf("send to %s: %v", e.To, e.Err) }

// Unwrap returns the socket's error.
func (e *SendError) Unwrap() error { return e.Err }

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
