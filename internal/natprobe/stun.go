package natprobe

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"time"

	"github.com/pion/stun/v4"
)

// maxMessage is the largest datagram or TCP-framed message read. STUN
// responses are small; anything larger is garbage to us.
const maxMessage = 4096

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

func addrPortOf(a net.Addr) netip.AddrPort {
	switch v := a.(type) {
	case *net.UDPAddr:
		return toAddrPort(v.IP, v.Port)
	case *net.TCPAddr:
		return toAddrPort(v.IP, v.Port)
	}
	if ap, err := netip.ParseAddrPort(a.String()); err == nil {
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	}
	return netip.AddrPort{}
}

// outcome classifies a received message for one transaction.
type outcome int

const (
	outGarbage outcome = iota
	outOtherTx
	outRequest // a request with our transaction ID (hairpinning)
	outResponse
)

// decode parses raw as a STUN message and, for our transaction, as a
// Binding response. An error response to our transaction returns
// ErrBadResponse with the code; so does a success without a mapped
// address. It never panics on any input (see FuzzDecode).
func decode(raw []byte, txid [stun.TransactionIDSize]byte) (response, outcome, error) {
	return decodeMethod(raw, txid, stun.MethodBinding)
}

// decodeMethod is decode for a transaction of any method.
func decodeMethod(raw []byte, txid [stun.TransactionIDSize]byte, method stun.Method) (response, outcome, error) {
	if !stun.IsMessage(raw) {
		return response{}, outGarbage, nil
	}
	m := &stun.Message{Raw: append([]byte(nil), raw...)}
	if m.Decode() != nil {
		return response{}, outGarbage, nil //nolint:nilerr // garbage is counted, not fatal: wait for a good answer
	}
	if m.TransactionID != txid {
		return response{}, outOtherTx, nil
	}
	if m.Type.Method != method {
		return response{}, outGarbage, nil
	}
	switch m.Type.Class {
	case stun.ClassRequest:
		return response{}, outRequest, nil
	case stun.ClassErrorResponse:
		var ec stun.ErrorCodeAttribute
		if err := ec.GetFrom(m); err != nil {
			return response{}, outResponse, fmt.Errorf("%w: error response without a valid ERROR-CODE", ErrBadResponse)
		}
		return response{}, outResponse, &ResponseError{Code: int(ec.Code), Reason: string(ec.Reason)}
	case stun.ClassSuccessResponse:
	default:
		return response{}, outGarbage, nil
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
			return r, outResponse, fmt.Errorf("%w: success response without a mapped address", ErrBadResponse)
		}
		r.xorMapped = r.mapped // an RFC 3489 server
	}
	return r, outResponse, nil
}

// transact runs one Binding transaction over UDP with RFC 8489
// retransmissions: the request goes out at 0, RTO, 3*RTO, 7*RTO... until
// an acceptable response arrives or timeout passes. accept filters
// responses by source address (nil accepts any). A failed send counts as a
// lost transmission; only if every send failed is the send error returned.
func transact(ctx context.Context, pc net.PacketConn, to netip.AddrPort, req request,
	accept func(netip.AddrPort) bool, rto, timeout time.Duration,
) (response, ignored, error) {
	var ig ignored
	m, err := req.build()
	if err != nil {
		return response{}, ig, err
	}
	dst := net.UDPAddrFromAddrPort(to)
	stop := context.AfterFunc(ctx, func() { _ = pc.SetReadDeadline(time.Now()) })
	defer stop()
	defer func() { _ = pc.SetReadDeadline(time.Time{}) }()

	start := time.Now()
	deadline := start.Add(timeout)
	next, interval := start, rto
	buf := make([]byte, maxMessage)
	sent := 0
	var sendErr error
	for {
		if err := ctx.Err(); err != nil {
			return response{}, ig, err
		}
		now := time.Now()
		if !now.Before(deadline) {
			if sent == 0 && sendErr != nil {
				return response{}, ig, fmt.Errorf("natprobe: send to %s: %w", to, sendErr)
			}
			return response{}, ig, ErrNoResponse
		}
		if !now.Before(next) {
			if _, err := pc.WriteTo(m.Raw, dst); err != nil {
				sendErr = err
			} else {
				sent++
			}
			next, interval = now.Add(interval), 2*interval
		}
		_ = pc.SetReadDeadline(minTime(next, deadline))
		if ctx.Err() != nil {
			continue // the AfterFunc may have fired before the line above
		}
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return response{}, ig, fmt.Errorf("natprobe: receive: %w", err)
		}
		r, kind, err := decode(buf[:n], m.TransactionID)
		switch kind {
		case outGarbage:
			ig.garbage++
			continue
		case outOtherTx, outRequest:
			ig.wrongTxID++
			continue
		}
		r.from = addrPortOf(from)
		if accept != nil && !accept(r.from) {
			ig.wrongSource++
			continue
		}
		return r, ig, err
	}
}

// waitRequest reads pc until a Binding request with txid arrives (true),
// the deadline passes or ctx ends (false).
func waitRequest(ctx context.Context, pc net.PacketConn, txid [stun.TransactionIDSize]byte, deadline time.Time) bool {
	stop := context.AfterFunc(ctx, func() { _ = pc.SetReadDeadline(time.Now()) })
	defer stop()
	defer func() { _ = pc.SetReadDeadline(time.Time{}) }()
	buf := make([]byte, maxMessage)
	for ctx.Err() == nil && time.Now().Before(deadline) {
		_ = pc.SetReadDeadline(deadline)
		n, _, err := pc.ReadFrom(buf)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return false
		}
		if _, kind, _ := decode(buf[:n], txid); kind == outRequest {
			return true
		}
	}
	return false
}

// transactStream runs one transaction over a stream connection (TCP or
// TLS): no retransmissions (the transport retransmits), one deadline.
// Messages are framed by the STUN header's length (RFC 8489 section 6.2.2).
func transactStream(ctx context.Context, c net.Conn, m *stun.Message, timeout time.Duration) (response, error) {
	stop := context.AfterFunc(ctx, func() { _ = c.SetDeadline(time.Now()) })
	defer stop()
	_ = c.SetDeadline(time.Now().Add(timeout))
	if _, err := c.Write(m.Raw); err != nil {
		return response{}, fmt.Errorf("natprobe: send: %w", err)
	}
	for {
		var hdr [20]byte
		if _, err := io.ReadFull(c, hdr[:]); err != nil {
			return response{}, streamErr(ctx, err)
		}
		l := int(binary.BigEndian.Uint16(hdr[2:4]))
		if hdr[0]&0xc0 != 0 || l%4 != 0 || 20+l > maxMessage {
			return response{}, fmt.Errorf("%w: not a STUN stream (header %x)", ErrBadResponse, hdr[:4])
		}
		msg := make([]byte, 20+l)
		copy(msg, hdr[:])
		if _, err := io.ReadFull(c, msg[20:]); err != nil {
			return response{}, streamErr(ctx, err)
		}
		r, kind, err := decodeMethod(msg, m.TransactionID, m.Type.Method)
		if kind == outResponse {
			r.from = addrPortOf(c.RemoteAddr())
			return r, err
		}
		// Anything else on the stream is skipped.
	}
}

func streamErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return ErrNoResponse
	}
	return fmt.Errorf("natprobe: receive: %w", err)
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}
