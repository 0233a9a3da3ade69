package sim

import (
	"container/heap"
	"math/rand/v2"
	"time"
)

// Loop is the simulator's in-memory network core on its own: a
// discrete-event queue in virtual time, the per-node latency model and the
// loss draw of [Run], exported so that other simulators (gossip's) run on
// the same network model. A Loop is not safe for concurrent use: events run
// one after the other on the goroutine that calls [Loop.Step].
type Loop struct {
	now  time.Duration
	q    eventQueue
	seq  uint64
	r    *rand.Rand
	loss float64
}

// NewLoop returns a Loop whose draws depend only on seed, losing each
// message with probability loss.
func NewLoop(seed uint64, loss float64) *Loop {
	return &Loop{r: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), loss: loss}
}

// Now is the virtual time since the start of the run.
func (l *Loop) Now() time.Duration { return l.now }

// Rand is the run's random source.
func (l *Loop) Rand() *rand.Rand { return l.r }

// At runs fn d after now (events at the same time run in the order given).
func (l *Loop) At(d time.Duration, fn func()) {
	l.seq++
	heap.Push(&l.q, event{at: l.now + d, seq: l.seq, fn: fn})
}

// Step runs the next event and reports whether there was one.
func (l *Loop) Step() bool {
	if l.q.Len() == 0 {
		return false
	}
	e := heap.Pop(&l.q).(event)
	l.now = e.at
	e.fn()
	return true
}

// Pending is how many events are queued.
func (l *Loop) Pending() int { return l.q.Len() }

// Lost draws whether one message is lost.
func (l *Loop) Lost() bool { return l.loss > 0 && l.r.Float64() < l.loss }

// NodeLatency draws a node's half of every link's latency, as [Run] does
// for its nodes: 5 to 75 ms, so a link takes 10 to 150 ms one way.
func (l *Loop) NodeLatency() time.Duration {
	return time.Duration(5+l.r.IntN(71)) * time.Millisecond
}
