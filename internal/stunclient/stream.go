package stunclient

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/pion/stun/v4"
)

// headerSize is the length of the STUN header (RFC 8489 section 5).
const headerSize = 20

// ErrNotSTUN means a stream carried something that is not STUN framing.
var ErrNotSTUN = errors.New("stunclient: not a STUN stream")

// DoStream runs one transaction over a stream connection (TCP or TLS):
// one transmission (the transport retransmits, RFC 8489 section 6.2.2)
// and one deadline, timeout from now. Messages are framed by the STUN
// header's length; other transactions' messages on the stream are
// skipped. It fails with ErrTimeout, ctx's error, ErrNotSTUN, or the
// connection's error; it uses c's deadline.
func DoStream(ctx context.Context, c net.Conn, req *stun.Message, timeout time.Duration) (*stun.Message, error) {
	stop := context.AfterFunc(ctx, func() { _ = c.SetDeadline(time.Now()) })
	defer stop()
	_ = c.SetDeadline(time.Now().Add(timeout))
	if _, err := c.Write(req.Raw); err != nil {
		return nil, fmt.Errorf("stunclient: send: %w", err)
	}
	for {
		var hdr [headerSize]byte
		if _, err := io.ReadFull(c, hdr[:]); err != nil {
			return nil, streamErr(ctx, err)
		}
		l := int(binary.BigEndian.Uint16(hdr[2:4]))
		if hdr[0]&0xc0 != 0 || l%4 != 0 || len(hdr)+l > MaxMessage {
			return nil, fmt.Errorf("%w (header %x)", ErrNotSTUN, hdr[:4])
		}
		msg := make([]byte, len(hdr)+l)
		copy(msg, hdr[:])
		if _, err := io.ReadFull(c, msg[len(hdr):]); err != nil {
			return nil, streamErr(ctx, err)
		}
		if m, kind := Classify(msg, req.TransactionID, req.Type.Method); kind == Answer {
			return m, nil
		}
	}
}

func streamErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if isTimeout(err) {
		return ErrTimeout
	}
	return fmt.Errorf("stunclient: receive: %w", err)
}
