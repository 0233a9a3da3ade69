// Package rvbench measures Ferry's rendezvous server for `make
// bench-rendezvous` (cmd/ferry-rendezvous-bench) and the Go benchmarks in
// this package:
//
//   - STUN: Binding requests in a closed loop, and the server process's CPU
//     time per answer from /proc/<pid>/stat, against coturn in the same run;
//   - signaling capacity: many peers logged in from a separate load
//     generator process over several 127.0.0.x source addresses, and the
//     server's resident memory per peer;
//   - routing latency: offers and answers between pairs of peers at a
//     fixed rate, on one server or across two replicas through Redis.
//
// Everything runs on loopback.
package rvbench
