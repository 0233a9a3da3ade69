package sdk

import (
	"math/bits"
	"sync"
)

// Encoded DATA frames are recycled once the peer acknowledges them: a busy
// connection would otherwise allocate, and make the garbage collector
// reclaim, every message it sends. Buffers come in power-of-two classes from
// 256 B to 2 MiB; larger frames are allocated and dropped as usual.
//
// A frame returns to its pool only from ackThroughLocked. By then no writer
// holds it: the peer can acknowledge a message only after receiving it
// whole, which is after the Write that carried it returned, and a session's
// writer never resends what the peer reported received (RESUME).

const (
	minFrameShift = 8
	maxFrameShift = 21
)

// A frameBuf holds one encoded frame.
type frameBuf struct{ b []byte }

var framePools [maxFrameShift - minFrameShift + 1]sync.Pool

// frameClass returns the pool index for a buffer of capacity at least n, or
// -1 when n is too large to pool.
func frameClass(n int) int {
	if n <= 1<<minFrameShift {
		return 0
	}
	shift := bits.Len(uint(n - 1))
	if shift > maxFrameShift {
		return -1
	}
	return shift - minFrameShift
}

// getFrame returns an empty buffer with room for n bytes.
func getFrame(n int) *frameBuf {
	c := frameClass(n)
	if c < 0 {
		return &frameBuf{b: make([]byte, 0, n)}
	}
	if f, ok := framePools[c].Get().(*frameBuf); ok {
		f.b = f.b[:0]
		return f
	}
	return &frameBuf{b: make([]byte, 0, 1<<(c+minFrameShift))}
}

// putFrame recycles f, which nobody may use afterwards.
func putFrame(f *frameBuf) {
	c := frameClass(cap(f.b))
	if c < 0 || cap(f.b) != 1<<(c+minFrameShift) {
		return
	}
	framePools[c].Put(f)
}
