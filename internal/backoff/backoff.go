// Package backoff spaces out retries with exponential backoff and full
// jitter, the one schedule for every reconnect loop in Ferry (the SDK's
// redial and the signaling client's).
//
// Full jitter is the scheme of the AWS Architecture Blog's "Exponential
// Backoff And Jitter": the n-th wait (n from 0) is drawn uniformly from
//
//	[Floor, min(Cap, Base·2^n))
//
// so retries from many clients that failed together spread over the whole
// step instead of bunching at its middle, as "step/2 + rand(step)" does.
// The floor keeps a wait from being zero, so a retry loop cannot spin.
package backoff

import (
	"math/rand/v2"
	"time"
)

// A Backoff yields the waits of one retry sequence. Set the exported
// fields before the first Next; the zero value waits nothing. A Backoff is
// not safe for concurrent use.
type Backoff struct {
	// Base is the first step: the first wait is below it. Values below
	// Floor (or not positive) count as Floor, or as 1 ns when Floor is 0.
	Base time.Duration
	// Cap bounds the step; below Base, it counts as Base.
	Cap time.Duration
	// Floor is the smallest wait (0: a wait may be zero). A step at or
	// below Floor waits exactly Floor.
	Floor time.Duration
	// Rand returns a uniform integer in [0, n) for n > 0. Nil means
	// math/rand/v2's Int64N; tests set it to make the waits deterministic.
	Rand func(n int64) int64

	step time.Duration // the current step; 0 before the first Next
}

// Next returns the wait before the next retry and doubles the step, up to
// Cap.
func (b *Backoff) Next() time.Duration {
	base := max(b.Base, b.Floor, 1)
	limit := max(b.Cap, base)
	if b.step == 0 {
		b.step = base
	}
	step := b.step
	if b.step <= limit/2 {
		b.step *= 2
	} else {
		b.step = limit
	}
	span := int64(step - b.Floor)
	if span <= 0 {
		return b.Floor
	}
	r := b.Rand
	if r == nil {
		r = rand.Int64N
	}
	return b.Floor + time.Duration(r(span))
}

// Reset starts the sequence again from Base, for after a success.
func (b *Backoff) Reset() { b.step = 0 }
