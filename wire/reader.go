package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
)

const (
	// minReadBuf is the Reader's initial buffer size. The buffer grows (by
	// doubling) only when a frame does not fit, and never beyond the maximum
	// payload plus [Overhead].
	minReadBuf = 4 << 10
	// maxEmptyReads is how many (0, nil) reads in a row the Reader tolerates
	// before reporting io.ErrNoProgress.
	maxEmptyReads = 100
)

// Reader decodes a stream of frames from an io.Reader. It copes with short
// reads, many frames in one read and frames split across reads. It checks a
// frame's magic and length as soon as they arrive, so an oversized length is
// refused before any buffer grows or any payload byte is read. Its buffer
// starts at 4 KiB and grows only up to maxPayload+[Overhead]; after that,
// reading a frame allocates nothing.
//
// A Reader is not safe for concurrent use. Decode errors and the end of the
// stream are sticky: once ReadFrame reports one, it keeps returning it, since
// the stream has lost its framing.
type Reader struct {
	rd         io.Reader
	buf        []byte // buf[start:end] holds bytes read but not yet decoded
	start, end int
	max        int
	err        error // sticky decode or end-of-stream error
	readErr    error // error from rd, reported once the buffered bytes are used up
}

// NewReader returns a Reader that decodes frames from r, refusing payloads
// over maxPayload bytes (maxPayload <= 0 means [DefaultMaxPayload]).
func NewReader(r io.Reader, maxPayload int) *Reader {
	return &Reader{rd: r, max: clampMax(maxPayload)}
}

// SetMaxPayload changes the maximum payload size, typically to the value
// negotiated in HELLO. n <= 0 means [DefaultMaxPayload]. It applies from the
// next ReadFrame on, including to a frame already partly buffered.
func (r *Reader) SetMaxPayload(n int) { r.max = clampMax(n) }

// MaxPayload returns the maximum payload size in force.
func (r *Reader) MaxPayload() int { return r.max }

// Buffered returns the number of bytes read from the underlying reader but
// not yet returned as frames.
func (r *Reader) Buffered() int { return r.end - r.start }

// ReadFrame returns the next frame. Frame.Payload aliases the Reader's buffer
// and is valid only until the next call to ReadFrame; copy it to keep it.
//
// It returns io.EOF only when the stream ends on a frame boundary. A stream
// that ends inside a frame gives an error matching both [ErrTruncated] and
// io.ErrUnexpectedEOF. Protocol errors wrap [ErrBadMagic], [ErrFrameTooLarge]
// or [ErrBadChecksum]; an error from the underlying reader other than io.EOF is returned
// as it is, once the frames read before it have been returned, and is not
// sticky: the bytes buffered so far are kept and the next call reads again.
func (r *Reader) ReadFrame() (Frame, error) {
	return r.readFrame(false)
}

// directRead is the number of payload bytes still to come from which
// ReadFrameOwned reads a payload straight into the caller's slice.
const directRead = 16 << 10

// ReadFrameOwned is ReadFrame for callers that keep payloads: Frame.Payload
// is a new slice that the caller owns. A large payload that has not arrived
// yet is read straight into that slice rather than through the Reader's
// buffer, which saves a copy and keeps the buffer small. An error from the
// underlying reader in the middle of such a payload is sticky.
func (r *Reader) ReadFrameOwned() (Frame, error) {
	return r.readFrame(true)
}

func (r *Reader) readFrame(owned bool) (Frame, error) {
	if r.err != nil {
		return Frame{}, r.err
	}
	empty := 0
	for {
		avail := r.buf[r.start:r.end]
		size, err := checkPrefix(avail, r.max)
		if err != nil {
			return r.fail(err)
		}
		if size > 0 && len(avail) >= size {
			f, n, derr := decodeWhole(avail[:size])
			if derr != nil {
				return r.fail(derr)
			}
			r.start += n
			if r.start == r.end {
				r.start, r.end = 0, 0
			}
			if owned {
				f.Payload = append(make([]byte, 0, len(f.Payload)), f.Payload...)
			}
			return f, nil
		}
		if r.readErr != nil {
			rerr := r.readErr
			if errors.Is(rerr, io.EOF) {
				return r.fail(r.endError(avail, size))
			}
			// Like bufio: report a read error once and keep the buffered
			// bytes, so a caller may retry after, say, a deadline.
			r.readErr = nil
			return Frame{}, rerr
		}
		if owned && len(avail) >= HeaderLen && size-len(avail) >= directRead {
			return r.readDirect(size)
		}
		if size == 0 {
			size = HeaderLen // read at least the header before sizing the buffer
		}
		r.makeRoom(size)
		n, err := r.rd.Read(r.buf[r.end:])
		if n < 0 || n > len(r.buf)-r.end {
			return r.fail(fmt.Errorf("wire: reader returned invalid count %d", n))
		}
		r.end += n
		if err != nil {
			r.readErr = err
			continue
		}
		if n == 0 {
			if empty++; empty >= maxEmptyReads {
				return r.fail(io.ErrNoProgress)
			}
		} else {
			empty = 0
		}
	}
}

// readDirect reads a frame of size bytes, of which the buffer holds the
// header and possibly some payload, with the rest of the payload going
// straight into a new slice.
func (r *Reader) readDirect(size int) (Frame, error) {
	avail := r.buf[r.start:r.end]
	var hdr [HeaderLen]byte
	copy(hdr[:], avail)
	payload := make([]byte, size-Overhead)
	have := copy(payload, avail[HeaderLen:])
	r.start, r.end = 0, 0
	var trailer [TrailerLen]byte
	_, err := io.ReadFull(r.rd, payload[have:])
	if err == nil {
		have = len(payload)
		_, err = io.ReadFull(r.rd, trailer[:])
	}
	if err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			part := "payload"
			if have == len(payload) {
				part = "trailer"
			}
			return r.fail(fmt.Errorf("wire: stream ended in the %s, %d bytes into a %d-byte frame: %w (%w)",
				part, HeaderLen+have, size, ErrTruncated, io.ErrUnexpectedEOF))
		}
		return r.fail(err)
	}
	want := binary.BigEndian.Uint32(trailer[:])
	if got := crc32.Update(crc32.Checksum(hdr[:], castagnoli), castagnoli, payload); got != want {
		return r.fail(fmt.Errorf("wire: %s frame checksum 0x%08x, computed 0x%08x: %w",
			Type(hdr[offType]), want, got, ErrBadChecksum))
	}
	return Frame{
		Type:    Type(hdr[offType]),
		Seq:     binary.BigEndian.Uint64(hdr[offSeq:]),
		Payload: payload,
	}, nil
}

// endError builds the error for a stream that ended (or failed) with avail
// holding less than a whole frame of size bytes (0: size not known yet).
func (r *Reader) endError(avail []byte, size int) error {
	if len(avail) == 0 {
		return io.EOF
	}
	part := "header"
	switch {
	case size == 0 || len(avail) < HeaderLen:
	case len(avail) < size-TrailerLen:
		part = "payload"
	default:
		part = "trailer"
	}
	if size == 0 {
		return fmt.Errorf("wire: stream ended %d bytes into a frame header: %w (%w)",
			len(avail), ErrTruncated, io.ErrUnexpectedEOF)
	}
	return fmt.Errorf("wire: stream ended in the %s, %d bytes into a %d-byte frame: %w (%w)",
		part, len(avail), size, ErrTruncated, io.ErrUnexpectedEOF)
}

// makeRoom makes buf[start:] at least size bytes long, with the pending
// bytes moved to the front (so that a read can fill the rest), growing the
// buffer if it is shorter than size. size never exceeds the maximum payload
// plus Overhead, so neither does the buffer.
func (r *Reader) makeRoom(size int) {
	if r.start > 0 {
		n := copy(r.buf, r.buf[r.start:r.end])
		r.start, r.end = 0, n
	}
	if len(r.buf) >= size {
		return
	}
	newLen := max(len(r.buf), minReadBuf)
	for newLen < size {
		newLen *= 2
	}
	nb := make([]byte, min(newLen, max(r.max+Overhead, size)))
	r.end = copy(nb, r.buf[:r.end])
	r.buf = nb
}

func (r *Reader) fail(err error) (Frame, error) {
	r.err = err
	return Frame{}, err
}
