// Package natlab builds NAT topologies out of Linux network namespaces,
// veth pairs and nftables, for end-to-end tests that need real kernel NATs.
//
// A lab has a public segment (203.0.113.0/24, a bridge in its own
// namespace), a server host with two public addresses for RFC 5780
// servers, and any number of sites. A site is a NAT router of one of six
// types (see package nattype) with a LAN of hosts, or, for NAT None, hosts
// on the public segment. Links to the public segment can have delay,
// jitter and loss. Nothing in a lab has a route out of it.
//
// Tests build a lab with natlabtest.New, then open sockets inside a
// host's namespace with Host.ListenPacket, Host.Listen, Host.DialContext or
// Host.Net (a pion transport.Net for ICE agents), and run programs there
// with Host.Run and Host.Start. Everything is removed when the test ends,
// even on failure or panic; a reaper process removes it if the test binary
// is killed. Package labworld runs Ferry's servers on the lab's server
// host. This package imports no test code, so `ferry demo` can use it.
//
// See README.md for the design and the reasoning behind the rules.
package natlab
