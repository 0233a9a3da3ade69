package wire

import "errors"

// Sentinel errors. The codec never returns them bare: it wraps them with %w
// and adds what it saw, so test with [errors.Is].
var (
	// ErrBadMagic means a frame did not start with [Magic]. The stream is not
	// speaking this protocol (or lost its framing) and must be closed.
	ErrBadMagic = errors.New("bad magic")

	// ErrBadChecksum means a frame's CRC-32C trailer did not match its header
	// and payload: the frame was corrupted or forged. The stream must be
	// closed; a frame is never silently skipped.
	ErrBadChecksum = errors.New("bad checksum")

	// ErrFrameTooLarge means a frame's length field (on decode) or a payload
	// (on encode) exceeds the maximum payload size in force. Decoders report
	// it as soon as the length field is visible, before allocating or reading
	// the payload.
	ErrFrameTooLarge = errors.New("frame too large")

	// ErrTruncated means the input ended before a whole frame (or a whole
	// protobuf field, see [ErrMalformed]) was present. [ParseFrame] returns
	// it when it needs more bytes; [Reader.ReadFrame] returns it (also
	// matching [io.ErrUnexpectedEOF]) when the stream ends mid-frame.
	ErrTruncated = errors.New("truncated frame")

	// ErrUnknownType is for callers: the codec carries every frame type, and
	// a session that receives a [Type] it does not handle reports this error.
	ErrUnknownType = errors.New("unknown frame type")

	// ErrMalformed means a message payload could not be decoded: a truncated
	// or overlong varint, a length past the end, a field with the wrong wire
	// type, a value out of range, invalid UTF-8, or a string or list over its
	// bound. Message encoders return it too, for messages that would not
	// decode.
	ErrMalformed = errors.New("malformed message")
)
