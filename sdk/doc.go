// Package sdk is what applications embed to talk to other Ferry peers.
//
// A peer is named by its [PeerID], the hash of its Ed25519 key ([Identity]).
// Two peers talk over a [Conn]: a connection that runs on an encrypted,
// mutually authenticated QUIC session and carries
//
//   - messages, with [Conn.Send] and [Conn.Recv], delivered exactly once and
//     in order, even across the death and replacement of the session under
//     the connection (lossless resume);
//   - application streams, with [Conn.OpenStream] and [Conn.AcceptStream],
//     for bulk data on their own QUIC streams.
//
// A Conn reports its state (Idle, Connecting, Connected, Disconnected,
// Reconnecting, Closed) as [Event] values and heartbeats its peer, keeping a
// smoothed RTT.
//
// An [Endpoint] speaks the protocol over one net.PacketConn that the caller
// provides: it dials peers at known addresses and accepts connections.
// Path finding across NATs (ICE, hole punching, relays) plugs in through the
// same machinery: how a replacement session is obtained is a hook
// ([WithRedial]).
//
// The byte-level protocol is specified in the wire package's SPEC.md.
package sdk
