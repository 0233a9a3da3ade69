package sdk

import (
	"fmt"
	"time"
)

// State is a connection's place in its life cycle:
//
//	Idle -> Connecting -> Connected -> Disconnected -> Reconnecting -> Connected | Closed
//
// Any state may also go straight to Closed.
type State int32

// The connection states.
const (
	StateIdle State = iota
	StateConnecting
	StateConnected
	StateDisconnected
	StateReconnecting
	StateClosed
)

var stateNames = [...]string{"idle", "connecting", "connected", "disconnected", "reconnecting", "closed"}

func (s State) String() string {
	if s >= 0 && int(s) < len(stateNames) {
		return stateNames[s]
	}
	return fmt.Sprintf("state(%d)", int32(s))
}

// An Event reports a change of a connection's state, of the path under it
// (then Path is set and From == State), or a failed reconnect attempt (then
// Attempt is set and From == State == StateReconnecting).
type Event struct {
	Time  time.Time
	From  State
	State State
	// Err says why, for Disconnected, Reconnecting and Closed; nil after a
	// clean local Close.
	Err error
	// Path is the new path, for a path change (relay to direct, say).
	Path *Path
	// Attempt numbers a failed reconnect attempt from 1, with its error in
	// Err; 0 for other events. Only the dialing side redials, so only it
	// reports attempts.
	Attempt int
	// NextAttempt is how long the dialer waits before its next attempt; 0
	// when it gives up (the Closed event follows).
	NextAttempt time.Duration
}

func (e Event) String() string {
	if e.Path != nil {
		return fmt.Sprintf("path -> %s (%s %s -> %s %s)", e.Path.Kind(), e.Path.LocalCandidate, e.Path.LocalAddr, e.Path.RemoteCandidate, e.Path.RemoteAddr)
	}
	if e.Attempt > 0 {
		if e.NextAttempt > 0 {
			return fmt.Sprintf("reconnect attempt %d failed, next in %v: %v", e.Attempt, e.NextAttempt, e.Err)
		}
		return fmt.Sprintf("reconnect attempt %d failed, giving up: %v", e.Attempt, e.Err)
	}
	if e.Err != nil {
		return fmt.Sprintf("%s -> %s: %v", e.From, e.State, e.Err)
	}
	return fmt.Sprintf("%s -> %s", e.From, e.State)
}
