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
// Reconnecting, Closed) and each failed reconnect attempt as [Event] values,
// and heartbeats its peer, keeping a smoothed RTT. Any traffic from the peer
// (messages, stream data, PONGs) proves it alive; a peer silent for 3
// heartbeat intervals (5 s each by default, see [WithHeartbeat]) is declared
// lost and the connection reconnects. A dialer that the rendezvous keeps
// telling the peer is gone ([ErrPeerNotFound], for about 2 s) gives up with
// that error rather than redialing until the reconnect timeout, and so does
// an acceptor waiting for a dialer that the rendezvous reports gone.
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
// # Options
//
// Options say where they apply by their type, so that an option given where
// it has no meaning is a compile error rather than silently ignored:
//
//   - a [NodeOption] configures a Node ([New]);
//   - an [EndpointOption] configures an Endpoint ([NewEndpoint]);
//   - a [DialOption] configures one connection, at [Node.Dial] or
//     [Endpoint.Dial];
//   - an [EndpointDialOption] configures one connection at [Endpoint.Dial]
//     ([WithRedial] is the only option of that scope alone).
//
// Options that make sense in several places implement several of these
// interfaces: a [ConnOption] (heartbeat, buffers, timeouts, logger) applies
// everywhere, as the default for every connection of a Node or an Endpoint,
// or for one Dial; a [LocalOption] (peer filter, event hook, accept
// backlog) applies to a Node or an Endpoint as a whole. A nil option is
// skipped; a value out of range is an error from the function it is given
// to.
//
// # Errors
//
// Errors are the SDK's own, to be tested with errors.Is and errors.As
// (errors.go lists them): [ErrClosed] (also net.ErrClosed) after a local
// Close, [ErrPeerClosed] when the peer closed normally, [ErrSessionLost]
// when the session under a connection died (the connection reconnects;
// streams fail with it), [ErrStreamReset] with the peer's code in a
// [StreamResetError], [ErrProtocolNotSupported], [ErrPeerNotFound], and
// [ErrNoPath], whose [NoPathError] holds what ICE tried. Deadlines fail with
// a net.Error whose Timeout is true. No quic-go or wire type is needed to
// handle any of them.
//
// The byte-level protocol is specified in the wire package's SPEC.md.
package sdk
