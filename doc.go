// Package ferry is the root of the Ferry module: NAT traversal for Go programs.
//
// Ferry gets two programs behind NATs talking directly, and through a relay
// only when nothing else works. Applications embed [github.com/ferrynet/ferry/sdk];
// operators run the servers under cmd/. This package holds no code of its own,
// only repository-wide tests.
package ferry
