// Package e2e runs Ferry end to end in the NAT lab: a rendezvous server and
// a TURN relay on the lab's public server host (package labworld), and SDK
// nodes behind real kernel NATs. It holds the NAT matrix (every ordered
// pair of NAT types), the connect-time benchmark and the failure tests of
// the connectivity issue. It has tests only.
package e2e
