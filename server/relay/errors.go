package relay

import "errors"

var (
	// ErrInvalidConfig wraps every error Validate returns.
	ErrInvalidConfig = errors.New("relay: invalid config")

	// ErrNoRelayIP means no relay address could be chosen for a family the
	// server must relay in; set Config.RelayIPs (--relay-ip).
	ErrNoRelayIP = errors.New("relay: no relay IP")

	// ErrQuota is returned to pion/turn when an allocation would exceed a
	// quota that the earlier, cheaper check did not catch (a race between two
	// Allocates); the client gets 508.
	ErrQuota = errors.New("relay: allocation quota reached")

	// ErrDraining refuses allocations while the server drains.
	ErrDraining = errors.New("relay: draining")

	// ErrFamily means the server has no relay address of the requested family.
	ErrFamily = errors.New("relay: address family not served")

	// ErrPortsExhausted means no free port was found in the relay port range.
	ErrPortsExhausted = errors.New("relay: no free relay port")

	// ErrTCPOverUDP refuses an RFC 6062 TCP allocation requested over UDP.
	ErrTCPOverUDP = errors.New("relay: TCP allocations need a TCP or TLS control connection")

	// ErrPeerDenied is returned when the peer ACL refuses a Connect.
	ErrPeerDenied = errors.New("relay: peer address denied by ACL")

	// ErrBadFrame ends a TCP connection that sent bytes that are neither STUN
	// nor ChannelData.
	ErrBadFrame = errors.New("relay: not a STUN or ChannelData frame")

	// ErrCloseTimeout means Close gave up waiting for pion/turn's goroutines.
	ErrCloseTimeout = errors.New("relay: timed out waiting for goroutines to stop")
)
