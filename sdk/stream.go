package sdk

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/ferrynet/ferry/wire"
)

// Stream error codes, sent when a stream is refused or reset.
const (
	streamErrorRefused quic.StreamErrorCode = 1 // bad or missing stream header
	streamErrorBusy    quic.StreamErrorCode = 2 // the accept backlog is full
	streamErrorReset   quic.StreamErrorCode = 3 // reset by the application
)

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
}

// Protocol returns the protocol name the opener gave.
func (s *Stream) Protocol() string { return s.proto }

// Conn returns the connection the stream belongs to.
func (s *Stream) Conn() *Conn { return s.conn }

// Read reads from the stream.
func (s *Stream) Read(p []byte) (int, error) { return s.st.Read(p) }

// Write writes to the stream.
func (s *Stream) Write(p []byte) (int, error) { return s.st.Write(p) }

// Close closes the write direction: the peer reads io.EOF once it has read
// everything. Reading continues until the peer closes its direction.
func (s *Stream) Close() error { return s.st.Close() }

// Reset abandons the stream in both directions; data not yet delivered is
// discarded.
func (s *Stream) Reset() {
	s.st.CancelRead(streamErrorReset)
	s.st.CancelWrite(streamErrorReset)
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
		return nil, fmt.Errorf("sdk: open stream: %w", err)
	}
	hdr, err := (&wire.StreamHeader{Protocol: protocol}).Append(nil)
	if err != nil {
		st.CancelWrite(streamErrorRefused)
		return nil, err
	}
	if _, err := st.Write(wire.AppendFrame(nil, wire.TypeStream, 0, hdr)); err != nil {
		st.CancelWrite(streamErrorRefused)
		st.CancelRead(streamErrorRefused)
		return nil, fmt.Errorf("sdk: open stream: %w", err)
	}
	return &Stream{st: st, proto: protocol, conn: c}, nil
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
