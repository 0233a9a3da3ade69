// Package rendezvous is Ferry's rendezvous server: the meeting point every
// connection between two peers starts from.
//
//   - STUN (RFC 8489) Binding over UDP (and TCP, for networks that block
//     UDP) tells a peer its public address; with
//     two IPs and two ports it adds RFC 5780 behaviour discovery
//     (OTHER-ADDRESS, RESPONSE-ORIGIN, CHANGE-REQUEST, PADDING), which lets
//     a client classify its NAT.
//   - Signaling: a WebSocket at /v1/signal carrying wire frames (SPEC.md
//     section 7 in package wire). Peers log in with their Ed25519 key, and
//     the server routes ICE offers, answers and candidates by PeerID, with
//     bounded queues and rate limits.
//   - TURN credentials in the coturn REST format, and DHT bootstrap seeds.
//   - State in memory, or in Redis for several replicas (a registry with
//     TTLs and pub/sub between replicas).
//
// The network is passed in (Config.STUNConns, Config.Listener; ListenSTUN
// and Listen open the usual ones). The peers' side of the protocol is
// package signal (the top-level signal/). README.md in this directory is the design
// note; cmd/ferry-rendezvous is the binary.
package rendezvous
