package sdk

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/ferrynet/ferry/wire"
)

// Stream error codes, sent when a stream is refused or reset. Codes from
// streamErrorApp up carry an application's code (ResetWithCode).
type streamCode = quic.StreamErrorCode

const (
	streamErrorRefused     quic.StreamErrorCode = 1 // bad or missing stream header
	streamErrorBusy        quic.StreamErrorCode = 2 // the accept backlog is full
	streamErrorReset       quic.StreamErrorCode = 3 // reset by the application, no code
	streamErrorUnsupported quic.StreamErrorCode = 4 // nothing listens on the protocol
	streamErrorApp         quic.StreamErrorCode = 0x100
)

// streamError maps a QUIC stream's error to the SDK's (see errors.go).
// Deadline errors pass unchanged: they are net.Errors whose Timeout is true.
func (s *Stream) streamError(err error) error {
	if err == nil || errors.Is(err, io.EOF) {
		return err
	}
	var se *quic.StreamError
	if errors.As(err, &se) {
		if !se.Remote {
			return ErrClosed
		}
		switch code := se.ErrorCode; {
		case code == streamErrorClosed:
			return fmt.Errorf("%w: it closed the stream", ErrPeerClosed)
		case code == streamErrorUnsupported:
			return fmt.Errorf("%w: %q", ErrProtocolNotSupported, s.proto)
		case code == streamErrorRefused:
			return fmt.Errorf("%w: bad stream header", ErrStreamRefused)
		case code == streamErrorBusy:
			return fmt.Errorf("%w: accept backlog full", ErrStreamRefused)
		case code >= streamErrorApp && code-streamErrorApp <= math.MaxUint32:
			return &StreamResetError{Code: uint32(code - streamErrorApp)}
		default:
			return &StreamResetError{}
		}
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() && !isSessionTimeout(err) {
		return err
	}
	// The session under the stream ended: say why in the session's terms
	// (this side's Close, the peer's GOAWAY, a lost path) rather than in
	// the QUIC close code that followed.
	if cause := s.sess.cause(); cause != nil {
		var ga *GoAwayError
		var lost *SessionLostError
		switch {
		case errors.Is(cause, ErrClosed):
			return ErrClosed
		case errors.As(cause, &ga):
			return ga
		case errors.As(cause, &lost):
			return lost
		}
		return &SessionLostError{Cause: cause}
	}
	var ae *quic.ApplicationError
	if errors.As(err, &ae) && !ae.Remote {
		return ErrClosed
	}
	return sessionError(err)
}

// isSessionTimeout reports a timeout of the whole QUIC connection, as
// opposed to a deadline on the stream.
func isSessionTimeout(err error) bool {
	var idle *quic.IdleTimeoutError
	var hs *quic.HandshakeTimeoutError
	return errors.As(err, &idle) || errors.As(err, &hs)
}

// maxProtocolLen bounds the protocol name in a stream header.
const maxProtocolLen = 256

// maxStreamHeader bounds a stream header frame's payload.
const maxStreamHeader = maxProtocolLen + 16

// A Stream is an application stream: a reliable, ordered byte stream on its
// own QUIC stream, for bulk data. It belongs to the session it was opened on
// and fails when that session dies; unlike messages, streams are not resumed.
type Stream struct {
	st    *quic.Stream
	proto string
	conn  *Conn
	sess  *session
}

// Protocol returns the protocol name the opener gave.
func (s *Stream) Protocol() string { return s.proto }

// Conn returns the connection the stream belongs to.
func (s *Stream) Conn() *Conn { return s.conn }

// Read reads from the stream. It returns io.EOF once the peer closed its
// direction and everything was read; see errors.go for its other errors.
func (s *Stream) Read(p []byte) (int, error) {
	n, err := s.st.Read(p)
	if n > 0 && s.sess != nil {
		s.sess.heard() // stream data is proof of life, as PONGs are
	}
	return n, s.streamError(err)
}

// Write writes to the stream.
func (s *Stream) Write(p []byte) (int, error) {
	n, err := s.st.Write(p)
	return n, s.streamError(err)
}

// Close closes the write direction: the peer reads io.EOF once it has read
// everything. Reading continues until the peer closes its direction.
func (s *Stream) Close() error { return s.st.Close() }

// Reset abandons the stream in both directions; data not yet delivered is
// discarded. The peer's reads and writes fail with a *StreamResetError of
// code 0.
func (s *Stream) Reset() {
	s.st.CancelRead(streamErrorReset)
	s.st.CancelWrite(streamErrorReset)
}

// ResetWithCode is Reset with an application's code, which the peer finds
// in the *StreamResetError its reads and writes fail with.
func (s *Stream) ResetWithCode(code uint32) {
	c := streamErrorApp + quic.StreamErrorCode(code)
	s.st.CancelRead(c)
	s.st.CancelWrite(c)
}

// SetDeadline sets the read and write deadlines.
func (s *Stream) SetDeadline(t time.Time) error { return s.st.SetDeadline(t) }

// SetReadDeadline sets the read deadline.
func (s *Stream) SetReadDeadline(t time.Time) error { return s.st.SetReadDeadline(t) }

// SetWriteDeadline sets the write deadline.
func (s *Stream) SetWriteDeadline(t time.Time) error { return s.st.SetWriteDeadline(t) }

// OpenStream opens an application stream named by protocol (1 to 256
// bytes), waiting for a session if the connection is reconnecting.
func (c *Conn) OpenStream(ctx context.Context, protocol string) (*Stream, error) {
	if len(protocol) == 0 || len(protocol) > maxProtocolLen {
		return nil, fmt.Errorf("sdk: stream protocol name must be 1 to %d bytes, got %d", maxProtocolLen, len(protocol))
	}
	s, err := c.waitSession(ctx)
	if err != nil {
		return nil, err
	}
	st, err := s.qc.OpenStreamSync(ctx)
	if err != nil {
		return nil, fmt.Errorf("sdk: open stream: %w", (&Stream{sess: s}).streamError(err))
	}
	hdr, err := (&wire.StreamHeader{Protocol: protocol}).Append(nil)
	if err != nil {
		st.CancelWrite(streamErrorRefused)
		return nil, err
	}
	if _, err := st.Write(wire.AppendFrame(nil, wire.TypeStream, 0, hdr)); err != nil {
		st.CancelWrite(streamErrorRefused)
		st.CancelRead(streamErrorRefused)
		return nil, fmt.Errorf("sdk: open stream: %w", (&Stream{sess: s}).streamError(err))
	}
	return &Stream{st: st, proto: protocol, conn: c, sess: s}, nil
}

// AcceptStream returns the next application stream the peer opened.
func (c *Conn) AcceptStream(ctx context.Context) (*Stream, error) {
	select {
	case s := <-c.streams:
		return s, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-c.done:
		return nil, c.Err()
	}
}

// readStreamHeader reads exactly one TypeStream frame, and nothing after it.
func readStreamHeader(r io.Reader) (string, error) {
	var buf [wire.HeaderLen + maxStreamHeader + wire.TrailerLen]byte
	if _, err := io.ReadFull(r, buf[:wire.HeaderLen]); err != nil {
		return "", fmt.Errorf("stream header: %w", err)
	}
	// magic(2) length(4) type(1) seq(8): check the length before reading
	// the rest; ParseFrame checks everything else, CRC included.
	n := binary.BigEndian.Uint32(buf[2:6])
	if n > maxStreamHeader {
		return "", fmt.Errorf("stream header: %w: %d bytes", wire.ErrFrameTooLarge, n)
	}
	total := wire.HeaderLen + int(n) + wire.TrailerLen
	if _, err := io.ReadFull(r, buf[wire.HeaderLen:total]); err != nil {
		return "", fmt.Errorf("stream header: %w", err)
	}
	f, _, err := wire.ParseFrame(buf[:total], maxStreamHeader)
	if err != nil {
		return "", fmt.Errorf("stream header: %w", err)
	}
	if f.Type != wire.TypeStream {
		return "", fmt.Errorf("stream header: got %v, want %v", f.Type, wire.TypeStream)
	}
	var h wire.StreamHeader
	if err := h.Unmarshal(f.Payload); err != nil {
		return "", fmt.Errorf("stream header: %w", err)
	}
	if h.Protocol == "" {
		return "", errors.New("stream header: empty protocol name")
	}
	return h.Protocol, nil
}
