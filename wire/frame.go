package wire

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
)

// Frame layout. All integers are big-endian.
//
//	 0               1               2               3
//	 0 1 2 3 4 5 6 7 0 1 2 3 4 5 6 7 0 1 2 3 4 5 6 7 0 1 2 3 4 5 6 7
//	+-------------------------------+-------------------------------+
//	|         Magic (0x5A5A)        |        Length (32) ...        |
//	+-------------------------------+---------------+---------------+
//	|      ... Length (cont.)       |     Type      |  Seq (64) ... |
//	+-------------------------------+---------------+---------------+
//	|                        ... Seq (cont.) ...                    |
//	+---------------------------------------------------------------+
//	|         ... Seq (cont.)                       |  Payload ...  |
//	+-----------------------------------------------+---------------+
//	|                   Payload (Length bytes) ...                  |
//	+---------------------------------------------------------------+
//	|            CRC-32C over Magic..Payload (32)                   |
//	+---------------------------------------------------------------+
const (
	// Magic starts every frame.
	Magic = 0x5A5A
	// HeaderLen is the size of the fixed header: magic(2) length(4) type(1) seq(8).
	HeaderLen = 15
	// TrailerLen is the size of the CRC-32C trailer.
	TrailerLen = 4
	// Overhead is the number of bytes a frame adds to its payload.
	Overhead = HeaderLen + TrailerLen
	// DefaultMaxPayload is the maximum payload size when none was negotiated.
	DefaultMaxPayload = 1 << 20
	// PayloadLimit is the largest maximum payload this package accepts; larger
	// settings are lowered to it. It keeps frame sizes within an int on every
	// platform.
	PayloadLimit = 1 << 30
	// MinMaxPayload is the smallest maximum payload [NegotiateMaxPayload]
	// agrees to: every control message fits in it.
	MinMaxPayload = 4096
)

// Offsets of the header fields.
const (
	offMagic   = 0
	offLength  = 2
	offType    = 6
	offSeq     = 7
	offPayload = HeaderLen
)

// castagnoli is the CRC-32C table. crc32.Checksum with it uses the CPU's
// CRC32 instruction where there is one.
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Frame is one decoded frame.
type Frame struct {
	Type Type
	// Seq is the DATA message sequence number; 0 for other types.
	Seq uint64
	// Payload aliases the decoder's input or buffer; see [ParseFrame] and
	// [Reader.ReadFrame] for how long it stays valid.
	Payload []byte
}

// Len returns the encoded size of f.
func (f Frame) Len() int { return Overhead + len(f.Payload) }

// Append appends the encoding of f to b. See [AppendFrame].
func (f Frame) Append(b []byte) []byte { return AppendFrame(b, f.Type, f.Seq, f.Payload) }

// AppendFrame appends a frame with the given type, seq and payload to b and
// returns the extended slice. It allocates nothing if cap(b) has room for
// [Overhead]+len(payload) more bytes. It does not check a maximum payload size:
// callers that can receive oversized payloads check len(payload) themselves,
// as [Writer] does.
func AppendFrame(b []byte, t Type, seq uint64, payload []byte) []byte {
	start := len(b)
	b = appendHeader(b, t, seq, len(payload))
	b = append(b, payload...)
	return appendCRC(b, start)
}

// appendCRC appends the CRC-32C of b[start:].
func appendCRC(b []byte, start int) []byte {
	return binary.BigEndian.AppendUint32(b, crc32.Checksum(b[start:], castagnoli))
}

// appendHeader appends a frame header for a payload of n bytes.
func appendHeader(b []byte, t Type, seq uint64, n int) []byte {
	b = binary.BigEndian.AppendUint16(b, Magic)
	b = binary.BigEndian.AppendUint32(b, uint32(n))
	b = append(b, byte(t))
	return binary.BigEndian.AppendUint64(b, seq)
}

// ParseFrame decodes the frame at the start of b and returns it with its
// encoded length n; b[n:] is whatever follows. The payload aliases b.
//
// maxPayload bounds the length field (maxPayload <= 0 means
// [DefaultMaxPayload]; values over [PayloadLimit] are lowered to it). Errors wrap, in the order checked: [ErrBadMagic] once
// b holds 2 bytes, [ErrFrameTooLarge] once it holds the length field,
// [ErrTruncated] while b holds less than a whole frame (read more and retry),
// and [ErrBadChecksum].
func ParseFrame(b []byte, maxPayload int) (f Frame, n int, err error) {
	size, err := checkPrefix(b, clampMax(maxPayload))
	if err != nil {
		return Frame{}, 0, err
	}
	if len(b) < HeaderLen || len(b) < size {
		want := size
		if want == 0 {
			want = HeaderLen
		}
		return Frame{}, 0, fmt.Errorf("wire: have %d of at least %d bytes: %w", len(b), want, ErrTruncated)
	}
	return decodeWhole(b[:size])
}

// checkPrefix validates what of the header b holds: the magic once 2 bytes
// are present and the length once 6 are. It returns the whole frame's size,
// or 0 when the length field is not yet present.
func checkPrefix(b []byte, maxPayload int) (int, error) {
	if len(b) >= offLength {
		if m := binary.BigEndian.Uint16(b[offMagic:]); m != Magic {
			return 0, fmt.Errorf("wire: magic 0x%04x, want 0x%04x: %w", m, Magic, ErrBadMagic)
		}
	}
	if len(b) < offType {
		return 0, nil
	}
	length := binary.BigEndian.Uint32(b[offLength:])
	if uint64(length) > uint64(maxPayload) {
		return 0, fmt.Errorf("wire: frame length %d exceeds maximum %d: %w", length, maxPayload, ErrFrameTooLarge)
	}
	return Overhead + int(length), nil
}

// decodeWhole decodes a frame that fills b exactly and whose prefix has been
// checked.
func decodeWhole(b []byte) (Frame, int, error) {
	end := len(b) - TrailerLen
	want := binary.BigEndian.Uint32(b[end:])
	if got := crc32.Checksum(b[:end], castagnoli); got != want {
		return Frame{}, 0, fmt.Errorf("wire: %s frame checksum 0x%08x, computed 0x%08x: %w",
			Type(b[offType]), want, got, ErrBadChecksum)
	}
	return Frame{
		Type:    Type(b[offType]),
		Seq:     binary.BigEndian.Uint64(b[offSeq:]),
		Payload: b[offPayload:end:end],
	}, len(b), nil
}

// clampMax maps a configured maximum payload to the one in force.
func clampMax(n int) int {
	switch {
	case n <= 0:
		return DefaultMaxPayload
	case n > PayloadLimit:
		return PayloadLimit
	}
	return n
}

// NegotiateMaxPayload returns the maximum payload a session uses given the
// values both sides announced in HELLO (see [Hello.MaxPayload]): 0 stands
// for [DefaultMaxPayload], the smaller of the two wins, and the result is
// kept within [MinMaxPayload] and [PayloadLimit].
func NegotiateMaxPayload(local, remote uint32) int {
	eff := func(v uint32) uint64 {
		if v == 0 {
			return DefaultMaxPayload
		}
		return uint64(v)
	}
	m := min(eff(local), eff(remote))
	return int(max(min(m, PayloadLimit), MinMaxPayload))
}
