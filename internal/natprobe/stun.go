package natprobe

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/pion/stun/v4"

	"github.com/ferrynet/ferry/internal/netaddr"
	"github.com/ferrynet/ferry/internal/stunclient"
)

// request is what a Binding request asks of the server.
type request struct {
	changeIP, changePort bool // CHANGE-REQUEST (RFC 5780 section 7.2)
	responsePort         int  // RESPONSE-PORT (RFC 5780 section 7.5), 0 for none
}

func (r request) build() (*stun.Message, error) {
	setters := []stun.Setter{stun.TransactionID, stun.BindingRequest}
	m, err := stun.Build(setters...)
	if err != nil {
		return nil, err
	}
	if r.changeIP || r.changePort {
		var flags uint32
		if r.changeIP {
			flags |= 0x04
		}
		if r.changePort {
			flags |= 0x02
		}
		m.Add(stun.AttrChangeRequest, binary.BigEndian.AppendUint32(nil, flags))
	}
	if r.responsePort > 0 {
		// A 16-bit port and 16 bits of padding.
		m.Add(stun.AttrResponsePort, []byte{byte(r.responsePort >> 8), byte(r.responsePort), 0, 0})
	}
	m.WriteHeader()
	return m, nil
}

// response is a decoded Binding success response.
type response struct {
	from      netip.AddrPort // where it came from
	xorMapped netip.AddrPort // XOR-MAPPED-ADDRESS (or MAPPED-ADDRESS from an RFC 3489 server)
	mapped    netip.AddrPort // MAPPED-ADDRESS, if present
	other     netip.AddrPort // OTHER-ADDRESS, if present
	origin    netip.AddrPort // RESPONSE-ORIGIN, if present
}

// ignored counts what a transaction threw away; it explains a timeout.
// Datagrams that were our own request come back count as another
// transaction's.
type ignored struct {
	garbage     int // not STUN, or a STUN message that does not decode
	wrongTxID   int // a STUN message for another transaction
	wrongSource int // our transaction, from an address the test excludes
}

func (ig ignored) String() string {
	if ig == (ignored{}) {
		return ""
	}
	return fmt.Sprintf("ignored %d malformed packets, %d with another transaction ID, %d from unexpected addresses",
		ig.garbage, ig.wrongTxID, ig.wrongSource)
}

func toAddrPort(ip net.IP, port int) netip.AddrPort {
	a, ok := netip.AddrFromSlice(ip)
	if !ok || port < 0 || port > 65535 {
		return netip.AddrPort{}
	}
	return netip.AddrPortFrom(a.Unmap(), uint16(port))
}

// decode classifies raw for the Binding transaction txid and, when it is
// an answer, parses it (see parse). It never panics on any input (see
// FuzzDecode).
func decode(raw []byte, txid [stun.TransactionIDSize]byte) (response, stunclient.Kind, error) {
	m, kind := stunclient.Classify(raw, txid, stun.MethodBinding)
	if kind != stunclient.Answer {
		return response{}, kind, nil
	}
	r, err := parse(m)
	return r, kind, err
}

// parse reads an answer to our transaction. An error response returns a
// *ResponseError with the code; a success without a mapped address
// returns ErrBadResponse.
func parse(m *stun.Message) (response, error) {
	if m.Type.Class == stun.ClassErrorResponse {
		var ec stun.ErrorCodeAttribute
		if err := ec.GetFrom(m); err != nil {
			return response{}, fmt.Errorf("%w: error response without a valid ERROR-CODE", ErrBadResponse)
		}
		return response{}, &ResponseError{Code: int(ec.Code), Reason: string(ec.Reason)}
	}
	var r response
	var xa stun.XORMappedAddress
	if err := xa.GetFrom(m); err == nil {
		r.xorMapped = toAddrPort(xa.IP, xa.Port)
	}
	var ma stun.MappedAddress
	if err := ma.GetFrom(m); err == nil {
		r.mapped = toAddrPort(ma.IP, ma.Port)
	}
	var oa stun.OtherAddress
	if err := oa.GetFrom(m); err == nil {
		r.other = toAddrPort(oa.IP, oa.Port)
	}
	var ro stun.ResponseOrigin
	if err := ro.GetFrom(m); err == nil {
		r.origin = toAddrPort(ro.IP, ro.Port)
	}
	if !r.xorMapped.IsValid() {
		if !r.mapped.IsValid() {
			return r, fmt.Errorf("%w: success response without a mapped address", ErrBadResponse)
		}
		r.xorMapped = r.mapped // an RFC 3489 server
	}
	return r, nil
}

// schedule is the probe's retransmission schedule (see package
// stunclient): the first retransmission after RTO, doubling, resent until
// Timeout ends the transaction (four transmissions at the defaults).
func (p *prober) schedule() stunclient.Schedule {
	return stunclient.Schedule{RTO: p.rto, Rc: -1, Timeout: p.timeout}
}

// transact runs one Binding transaction over UDP on the probe's schedule
// until an acceptable response arrives or the timeout passes. accept
// filters responses by source address (nil accepts any). A failed send
// counts as a lost transmission; only if every send failed is the send
// error returned.
func (p *prober) transact(ctx context.Context, pc net.PacketConn, to netip.AddrPort, req request,
	accept func(netip.AddrPort) bool,
) (response, ignored, error) {
	m, err := req.build()
	if err != nil {
		return response{}, ignored{}, err
	}
	ans, st, err := stunclient.Do(ctx, pc, to, m, p.schedule(), accept)
	ig := ignored{garbage: st.Garbage, wrongTxID: st.OtherTransaction, wrongSource: st.WrongSource}
	var se *stunclient.SendError
	switch {
	case errors.Is(err, stunclient.ErrTimeout):
		return response{}, ig, ErrNoResponse
	case errors.As(err, &se):
		return response{}, ig, fmt.Errorf("natprobe: send to %s: %w", to, se.Err)
	case err != nil:
		return response{}, ig, err
	}
	r, err := parse(ans.Msg)
	r.from = ans.From
	return r, ig, err
}

// waitRequest reports whether the request m arrives on pc (hairpinned)
// before the deadline.
func waitRequest(ctx context.Context, pc net.PacketConn, m *stun.Message, deadline time.Time) bool {
	_, err := stunclient.Await(ctx, pc, m, stunclient.Echo, deadline)
	return err == nil
}

// transactStream runs one transaction over a stream connection (TCP or
// TLS): no retransmissions (the transport retransmits), one deadline.
func transactStream(ctx context.Context, c net.Conn, m *stun.Message, timeout time.Duration) (response, error) {
	ans, err := stunclient.DoStream(ctx, c, m, timeout)
	switch {
	case errors.Is(err, stunclient.ErrTimeout):
		return response{}, ErrNoResponse
	case errors.Is(err, stunclient.ErrNotSTUN):
		return response{}, fmt.Errorf("%w: %w", ErrBadResponse, err)
	case err != nil:
		return response{}, err
	}
	r, err := parse(ans)
	r.from = netaddr.AddrPort(c.RemoteAddr())
	return r, err
}
