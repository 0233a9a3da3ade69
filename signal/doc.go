// Package signal is the peers' side of Ferry's rendezvous signaling
// protocol (wire/SPEC.md, section 7): the SDK uses it to reach other peers
// by PeerID before any direct path exists.
//
// Dial connects to a rendezvous server over a WebSocket (wss://, trusting
// the system roots plus an optional CA file), logs in by signing the
// server's nonce and name with the node's Ed25519 identity (over TLS, also
// keying material exported from the TLS connection, so the server cannot
// relay the login elsewhere), and keeps that login: when the connection
// drops or the server restarts it reconnects with backoff and logs in
// again.
//
//	c, err := signal.Dial(ctx, "wss://rendezvous.example.com", id)
//	err = c.Offer(ctx, peer, &wire.Offer{RouteHeader: wire.RouteHeader{SessionID: sid}, Ufrag: u, Pwd: p})
//	for m := range c.Messages() { ... m.Msg.(*wire.Answer) ... }
//
// Send (and Offer, Answer, Bye) waits for the server's receipt, so an
// offline peer is reported at once as ErrPeerNotFound; Post (and Candidate,
// EndOfCandidates) does not wait, for trickling. Credentials returns
// short-lived TURN credentials with the relay and STUN URLs for ICE, and
// Bootstrap the DHT seeds.
package signal
