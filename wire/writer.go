package wire

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
)

const (
	// writeBufSize is the Writer's buffer size: frames are batched up to
	// this many bytes before the Writer flushes on its own.
	writeBufSize = 64 << 10
	// writeThrough is the payload size from which the Writer does not copy
	// the payload into its buffer but writes it straight through.
	writeThrough = 32 << 10
)

// Writer encodes frames into an internal buffer and writes the buffer to an
// io.Writer on Flush, or when the next frame would not fit (64 KiB). Payloads
// of 32 KiB or more are not copied: the buffered bytes and the frame header
// go out in one Write, the payload in a second, and the trailer is buffered
// for the next Flush. Either way, writing a frame allocates nothing once the
// buffer exists.
//
// A Writer is not safe for concurrent use. After a write error, every later
// call returns that error.
type Writer struct {
	wr  io.Writer
	buf []byte
	max int
	err error // sticky write error
}

// NewWriter returns a Writer that writes frames to w, refusing payloads over
// maxPayload bytes (maxPayload <= 0 means [DefaultMaxPayload]). The limit
// should be the peer's: the value negotiated in HELLO.
func NewWriter(w io.Writer, maxPayload int) *Writer {
	return &Writer{wr: w, max: clampMax(maxPayload)}
}

// SetMaxPayload changes the maximum payload size (n <= 0 means
// [DefaultMaxPayload]).
func (w *Writer) SetMaxPayload(n int) { w.max = clampMax(n) }

// MaxPayload returns the maximum payload size in force.
func (w *Writer) MaxPayload() int { return w.max }

// Buffered returns the number of bytes written into the buffer but not yet
// flushed.
func (w *Writer) Buffered() int { return len(w.buf) }

// WriteFrame encodes a frame into the buffer (flushing first if it would not
// fit) or, for large payloads, writes it through. The frame is not
// necessarily on the wire until Flush. A payload over the maximum gives an
// error wrapping [ErrFrameTooLarge] and writes nothing.
func (w *Writer) WriteFrame(t Type, seq uint64, payload []byte) error {
	if w.err != nil {
		return w.err
	}
	if len(payload) > w.max {
		return fmt.Errorf("wire: %s payload of %d bytes exceeds maximum %d: %w", t, len(payload), w.max, ErrFrameTooLarge)
	}
	if len(payload) >= writeThrough {
		return w.writeThrough(t, seq, payload)
	}
	if err := w.reserve(Overhead + len(payload)); err != nil {
		return err
	}
	w.buf = AppendFrame(w.buf, t, seq, payload)
	return nil
}

// WriteMessage encodes m as the payload of a frame of type m.Type() with seq
// 0, directly into the buffer. Encoding errors wrap [ErrMalformed].
func (w *Writer) WriteMessage(m Message) error {
	if w.err != nil {
		return w.err
	}
	n := m.Len()
	if n > w.max {
		return fmt.Errorf("wire: %s payload of %d bytes exceeds maximum %d: %w", m.Type(), n, w.max, ErrFrameTooLarge)
	}
	if err := w.reserve(Overhead + n); err != nil {
		return err
	}
	b, err := AppendMessage(w.buf, m)
	if err != nil {
		return err
	}
	w.buf = b
	return nil
}

// Flush writes the buffered bytes to the underlying writer in one Write.
func (w *Writer) Flush() error {
	if w.err != nil {
		return w.err
	}
	if len(w.buf) == 0 {
		return nil
	}
	err := w.write(w.buf)
	w.buf = w.buf[:0]
	return err
}

// reserve makes room in the buffer for n more bytes, flushing if needed.
func (w *Writer) reserve(n int) error {
	if w.buf == nil {
		w.buf = make([]byte, 0, max(writeBufSize, n))
	}
	if len(w.buf)+n <= cap(w.buf) {
		return nil
	}
	if err := w.Flush(); err != nil {
		return err
	}
	if n > cap(w.buf) {
		w.buf = make([]byte, 0, n)
	}
	return nil
}

// writeThrough writes what is buffered plus the frame header, then the
// payload, and leaves the trailer in the buffer.
func (w *Writer) writeThrough(t Type, seq uint64, payload []byte) error {
	if err := w.reserve(HeaderLen); err != nil {
		return err
	}
	hdr := len(w.buf)
	w.buf = appendHeader(w.buf, t, seq, len(payload))
	crc := crc32.Update(crc32.Checksum(w.buf[hdr:], castagnoli), castagnoli, payload)
	if err := w.write(w.buf); err != nil {
		return err
	}
	w.buf = w.buf[:0]
	if err := w.write(payload); err != nil {
		return err
	}
	w.buf = binary.BigEndian.AppendUint32(w.buf, crc)
	return nil
}

func (w *Writer) write(b []byte) error {
	n, err := w.wr.Write(b)
	if err == nil && n != len(b) {
		err = io.ErrShortWrite
	}
	if err != nil {
		w.err = fmt.Errorf("wire: write: %w", err)
	}
	return w.err
}
