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

// An Event reports a change of a connection's state, or of the path under
// it (then Path is set and From == State).
type Event struct {
	Time  time.Time
	From  State
	State State
	// Err says why, for Disconnected, Reconnecting and Closed; nil after a
	// clean local Close.
	Err error
	// Path is the new path, for a path change (relay to direct, say).
	Path *Path
}

func (e Event) String() string {
	if e.Path != nil {
		return fmt.Sprintf("path -> %s (%s %s -> %s %s)", e.Path.Kind(), e.Path.LocalCandidate, e.Path.LocalAddr, e.Path.RemoteCandidate, e.Path.RemoteAddr)
	}
	if e.Err != nil {
		return fmt.Sprintf("%s -> %s: %v", e.From, e.State, e.Err)
	}
	return fmt.Sprintf("%s -> %s", e.From, e.State)
}
