// Package dht is Ferry's Kademlia distributed hash table: how a peer that
// knows only a PeerID finds where that peer can be reached, and how peers
// that join a topic find each other.
//
// Keys are 256 bits: PeerIDs for nodes and peer records, SHA-256 of the name
// for topics ([TopicKey]). Nodes keep a routing table of k = 20 contacts per
// bucket ([kbucket]) and look keys up iteratively with α = 3 requests in
// flight, ending by kad-dht's β rule ([Lookup]). What they store are
// [Record]s signed by the key they speak for, with a sequence number and an
// expiry, at most 1000 bytes, checked before storing ([Store]) and
// republished by their publisher before they expire.
//
// The package is transport-agnostic: a [Node] sends requests through a
// [Transport] and answers the requests its transport receives with
// [Node.Handle]. Over Ferry connections the transport authenticates the
// sender's PeerID; in the simulator (dht/sim, dht/cmd/dhtsim) it is an
// in-memory network in virtual time that drives the same [Lookup] state
// machine and [Responder].
//
// A node that is not reachable from outside runs in client mode
// ([WithClientMode]): it looks keys up and publishes, but tells others not
// to add it to their tables and stores nothing for others.
//
// SPEC.md specifies the messages and records; README.md is the design note
// with the simulator's measurements.
package dht

//go:generate protoc --proto_path=proto --descriptor_set_out=testdata/dht.protoset proto/dht.proto
