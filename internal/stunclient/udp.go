package stunclient

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/pion/stun/v4"

	"github.com/ferrynet/ferry/internal/netaddr"
)

// Do runs one transaction over pc: it sends req (built, with its header
// written) to to on schedule s, and returns the first answer whose source
// accept allows (nil accepts any). An error response is an answer too: the
// caller reads its ERROR-CODE.
//
// Do fails with ErrTimeout when the schedule ends, ctx's error when ctx
// ends, a *SendError when not one transmission left the socket (a failed
// send otherwise counts as a lost one), or the socket's read error. It
// uses pc's read deadline, and clears it on return; nothing else may read
// pc meanwhile.
func Do(ctx context.Context, pc net.PacketConn, to netip.AddrPort, req *stun.Message, s Schedule,
	accept func(netip.AddrPort) bool,
) (Response, Stats, error) {
	var st Stats
	dst := net.UDPAddrFromAddrPort(to)
	stop := context.AfterFunc(ctx, func() { _ = pc.SetReadDeadline(time.Now()) })
	defer stop()
	defer func() { _ = pc.SetReadDeadline(time.Time{}) }()

	tl := s.withDefaults().timeline(time.Now())
	buf := make([]byte, MaxMessage)
	var sendErr error
	for {
		if err := ctx.Err(); err != nil {
			return Response{}, st, err
		}
		now := time.Now()
		if !now.Before(tl.end) {
			if st.Sent == 0 && sendErr != nil {
				return Response{}, st, &SendError{To: to, Err: sendErr}
			}
			return Response{}, st, ErrTimeout
		}
		if tl.next != nil && !now.Before(*tl.next) {
			if _, err := pc.WriteTo(req.Raw, dst); err != nil {
				sendErr = err
			} else {
				st.Sent++
			}
			tl.sent(now)
		}
		_ = pc.SetReadDeadline(tl.wake())
		if ctx.Err() != nil {
			continue // the AfterFunc may have fired before the line above
		}
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			if isTimeout(err) {
				continue
			}
			return Response{}, st, fmt.Errorf("stunclient: receive: %w", err)
		}
		m, kind := Classify(buf[:n], req.TransactionID, req.Type.Method)
		switch kind {
		case Garbage:
			st.Garbage++
			continue
		case OtherTransaction, Echo:
			st.OtherTransaction++
			continue
		}
		src := netaddr.AddrPort(from)
		if accept != nil && !accept(src) {
			st.WrongSource++
			continue
		}
		return Response{Msg: m, From: src}, st, nil
	}
}

// Await reads pc until a message of kind want (Echo or Answer) for req
// arrives, and returns it. It fails with ErrTimeout at until, with ctx's
// error when ctx ends, or with the socket's read error. It sends nothing:
// the request goes out of another socket (see Resend).
func Await(ctx context.Context, pc net.PacketConn, req *stun.Message, want Kind, until time.Time) (Response, error) {
	stop := context.AfterFunc(ctx, func() { _ = pc.SetReadDeadline(time.Now()) })
	defer stop()
	defer func() { _ = pc.SetReadDeadline(time.Time{}) }()
	buf := make([]byte, MaxMessage)
	for {
		if err := ctx.Err(); err != nil {
			return Response{}, err
		}
		if !time.Now().Before(until) {
			return Response{}, ErrTimeout
		}
		_ = pc.SetReadDeadline(until)
		if ctx.Err() != nil {
			continue
		}
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			if isTimeout(err) {
				continue
			}
			return Response{}, fmt.Errorf("stunclient: receive: %w", err)
		}
		if m, kind := Classify(buf[:n], req.TransactionID, req.Type.Method); kind == want {
			return Response{Msg: m, From: netaddr.AddrPort(from)}, nil
		}
	}
}

// Resend sends req to to over pc on schedule s, for a transaction whose
// answer arrives on another socket: until done is closed, ctx ends or the
// schedule has no transmission left. It returns how many sends the socket
// accepted and the last send error (a failed send counts as lost).
func Resend(ctx context.Context, pc net.PacketConn, to netip.AddrPort, req *stun.Message, s Schedule,
	done <-chan struct{},
) (sent int, err error) {
	dst := net.UDPAddrFromAddrPort(to)
	tl := s.withDefaults().timeline(time.Now())
	timer := time.NewTimer(0)
	defer timer.Stop()
	for tl.next != nil {
		select {
		case <-done:
			return sent, err
		case <-ctx.Done():
			return sent, err
		case <-timer.C:
		}
		now := time.Now()
		if _, werr := pc.WriteTo(req.Raw, dst); werr != nil {
			err = werr
		} else {
			sent++
		}
		tl.sent(now)
		if tl.next != nil {
			timer.Reset(time.Until(*tl.next))
		}
	}
	return sent, err
}

// Poll waits for a STUN server that is starting: it sends a fresh Binding
// request over pc to to every interval, each its own transaction on the
// schedule {RTO: interval, Rc: 1, Rm: 1}, until one is answered (nil) or
// ctx ends (its error). Retransmitting one transaction with doubling waits
// would only delay noticing a server that has come up.
func Poll(ctx context.Context, pc net.PacketConn, to netip.AddrPort, interval time.Duration) error {
	s := Schedule{RTO: interval, Rc: 1, Rm: 1}
	for {
		req, err := stun.Build(stun.TransactionID, stun.BindingRequest)
		if err != nil {
			return err
		}
		_, _, err = Do(ctx, pc, to, req, s, nil)
		var se *SendError
		switch {
		case err == nil:
			return nil
		case errors.Is(err, ErrTimeout):
		case errors.As(err, &se):
			// Not up yet (no route, refused): wait out the interval.
			t := time.NewTimer(interval)
			select {
			case <-ctx.Done():
				t.Stop()
				return ctx.Err()
			case <-t.C:
			}
		default:
			return err
		}
	}
}
