package backoff

import (
	"math/rand/v2"
	"testing"
	"time"
)

// TestSteps draws with a Rand that records its argument and returns a
// chosen point of the span: the spans must double from Base to Cap, and
// every wait must be Floor plus what Rand returned.
func TestSteps(t *testing.T) {
	const ms = time.Millisecond
	for _, pick := range []struct {
		name string
		f    func(n int64) int64
	}{
		{"lowest", func(int64) int64 { return 0 }},
		{"highest", func(n int64) int64 { return n - 1 }},
		{"middle", func(n int64) int64 { return n / 2 }},
	} {
		t.Run(pick.name, func(t *testing.T) {
			var spans []int64
			b := Backoff{Base: 20 * ms, Cap: 100 * ms, Floor: 5 * ms, Rand: func(n int64) int64 {
				spans = append(spans, n)
				return pick.f(n)
			}}
			steps := []time.Duration{20 * ms, 40 * ms, 80 * ms, 100 * ms, 100 * ms, 100 * ms}
			for i, step := range steps {
				got := b.Next()
				span := int64(step - 5*ms)
				if len(spans) != i+1 || spans[i] != span {
					t.Fatalf("wait %d: Rand called with %v, want span %d", i, spans, span)
				}
				if want := 5*ms + time.Duration(pick.f(span)); got != want {
					t.Fatalf("wait %d: got %v, want %v", i, got, want)
				}
				if got < 5*ms || got >= step {
					t.Fatalf("wait %d: %v outside [5ms, %v)", i, got, step)
				}
			}
			b.Reset()
			if b.Next(); spans[len(spans)-1] != int64(15*ms) {
				t.Fatalf("after Reset: span %d, want the first step's", spans[len(spans)-1])
			}
		})
	}
}

// TestFullRange checks, with a seeded source, that waits cover the whole
// range [Floor, step) rather than a band inside it: the lowest wait seen
// falls in the step's bottom tenth, the highest in its top tenth.
func TestFullRange(t *testing.T) {
	src := rand.New(rand.NewPCG(1, 2))
	const step = time.Second
	lo, hi := step, time.Duration(0)
	for range 1000 {
		b := Backoff{Base: step, Cap: step, Floor: time.Millisecond, Rand: src.Int64N}
		w := b.Next()
		if w < time.Millisecond || w >= step {
			t.Fatalf("wait %v outside [1ms, 1s)", w)
		}
		lo, hi = min(lo, w), max(hi, w)
	}
	if lo > step/10 || hi < step*9/10 {
		t.Fatalf("waits span [%v, %v]: not full jitter over [1ms, 1s)", lo, hi)
	}
}

// TestDegenerate covers settings outside the documented ranges: they must
// still give sane, non-negative waits.
func TestDegenerate(t *testing.T) {
	cases := []struct {
		name string
		b    Backoff
		max  time.Duration // waits stay below this (or equal Floor)
	}{
		{"zero value", Backoff{}, 1},
		{"cap below base", Backoff{Base: 10 * time.Millisecond, Cap: time.Millisecond}, 10 * time.Millisecond},
		{"floor above base", Backoff{Base: time.Millisecond, Cap: 8 * time.Millisecond, Floor: 5 * time.Millisecond}, 8 * time.Millisecond},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			c.b.Rand = func(n int64) int64 {
				if n <= 0 {
					t.Fatalf("Rand called with %d", n)
				}
				return n - 1
			}
			for i := range 70 { // past any doubling overflow
				w := c.b.Next()
				if w < c.b.Floor || (w >= c.max && w != c.b.Floor) {
					t.Fatalf("wait %d: %v, want [%v, %v)", i, w, c.b.Floor, c.max)
				}
			}
		})
	}
}
