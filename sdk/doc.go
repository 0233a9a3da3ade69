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
// A [Node] is what most applications want: logged in to a rendezvous server
// under its identity, it dials peers by PeerID ([Node.Dial]) and accepts
// theirs ([Node.Accept]), finding a path with ICE (directly when the NATs
// allow it, through a TURN relay otherwise) and reconnecting over a new path
// when one fails. [Conn.Path] says which path a connection runs on.
//
// An [Endpoint] speaks the protocol over one net.PacketConn that the caller
// provides, to peers at known addresses; how a replacement session is
// obtained there is a hook ([WithRedial]).
//
// The byte-level protocol is specified in the wire package's SPEC.md.
package sdk
