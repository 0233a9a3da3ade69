// Package relay is Ferry's TURN relay server, built on pion/turn v5.
//
// See README.md in this folder for the design, and cmd/ferry-relay for the
// operator's binary.
package relay
