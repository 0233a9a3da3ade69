// Package relay is Ferry's TURN relay server (RFC 8656, RFC 6062 TCP
// relaying, RFC 6156 IPv6), built on pion/turn v5.
//
// It adds what an operator needs on the public internet: a deny-by-default
// peer ACL (ACL) applied to CreatePermission, ChannelBind, Send and Connect;
// coturn-compatible TURN REST credentials with several secrets for rotation,
// and static users; quotas on allocations and bandwidth; a per-source cap on
// 401 replies; lifetime bounds; Prometheus metrics under ferry_relay_; and a
// drain. A ChannelData fast path relays between clients and peers without
// entering pion/turn, with batched system calls on Linux.
//
// Configure a Server with a Config (every zero field has a documented
// default) and New; sockets may be passed in (Config.PacketConns,
// TCPListeners, TLSListeners, RelayNet) or opened from addresses with
// ListenUDP and ListenTCP. Close stops it and waits for its goroutines.
//
// See README.md in this folder for the design, and cmd/ferry-relay for the
// operator's binary.
package relay
