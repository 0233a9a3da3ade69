// Package wire is Ferry's peer-protocol codec: the frame layout, a streaming
// frame [Reader] and [Writer], and the control messages that travel in frame
// payloads.
//
// A frame is
//
//	magic 0x5A5A (2) | length (4) | type (1) | seq (8) | payload (length) | CRC-32C (4)
//
// with every integer big-endian and the CRC-32C (Castagnoli) computed over the
// header and the payload. [AppendFrame] and [ParseFrame] encode and decode one
// frame in a byte slice; [Reader] decodes a stream of frames from an
// [io.Reader] and [Writer] batches frames into an [io.Writer]. All of them
// reject a length over the negotiated maximum before allocating anything and
// allocate nothing per frame in steady state.
//
// Control payloads (HELLO, PING, PONG, ACK, RESUME, GOAWAY and the stream
// header) are protobuf messages (schema in proto/ferry.proto, package
// ferry.wire.v1), hand-encoded with protowire so that the hot path needs no
// reflection. Each implements [Message] and has an Unmarshal method that skips
// unknown fields and bounds every string and list, so a decoder never
// allocates much beyond the size of its input. DATA payloads are raw
// application bytes.
//
// The signaling messages a peer exchanges with a rendezvous server (types
// 0x10-0x1E: CHALLENGE, LOGIN, OFFER, ANSWER, CANDIDATE, ...) live here too,
// in the same style (schema in proto/signal.proto, package ferry.signal.v1);
// they travel in WebSocket messages, never on a session. The routed ones
// implement [RoutedMessage].
//
// SPEC.md in this directory describes every byte, precisely enough for
// another implementation, and testdata/vectors.json holds test vectors.
package wire

//go:generate protoc --proto_path=proto --descriptor_set_out=testdata/ferry.protoset proto/ferry.proto proto/signal.proto
//go:generate go test -run=^TestVectors$ -update .
