// Package gossip broadcasts signed messages to the peers of a topic with
// de-duplication and bounded fan-out: a PlumTree broadcast (eager push of
// whole messages along a spanning tree, lazy push of message IDs to the
// other neighbours, GRAFT to repair the tree) over a bounded, symmetric
// mesh per topic that is repaired when neighbours leave.
//
// Every message is signed by its origin (Ed25519, the origin's Ferry
// identity), carries a per-origin sequence number and a bounded size, and is
// checked before it is delivered or forwarded. A forged, stale (replayed) or
// oversized message, a malformed frame or a flood from one neighbour is
// dropped, counted in [Metrics], and scores its sender down; a sender whose
// score falls under the threshold is pruned from the mesh and ignored for a
// while.
//
// The package does not open connections: a [Router] sends frames through a
// [Transport] and is told of incoming frames ([Router.HandleFrame]) and of
// lost peers ([Router.PeerDown]), so the same code runs over Ferry streams
// and in the simulator (gossip/sim). See README.md for the design and
// SPEC.md for the wire format.
package gossip
