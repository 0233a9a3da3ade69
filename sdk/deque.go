package sdk

// deque is a FIFO queue backed by one slice. Popped slots are cleared so the
// garbage collector can reclaim what they held; the backing array is
// compacted when more than half of it is dead.
type deque[T any] struct {
	buf  []T
	head int
}

func (d *deque[T]) len() int { return len(d.buf) - d.head }

func (d *deque[T]) push(v T) { d.buf = append(d.buf, v) }

// at returns the i-th element from the front.
func (d *deque[T]) at(i int) T { return d.buf[d.head+i] }

func (d *deque[T]) pop() T {
	var zero T
	v := d.buf[d.head]
	d.buf[d.head] = zero
	d.head++
	switch {
	case d.head == len(d.buf):
		d.buf = d.buf[:0]
		d.head = 0
	case d.head > 64 && d.head > len(d.buf)/2:
		n := copy(d.buf, d.buf[d.head:])
		clear(d.buf[n:])
		d.buf = d.buf[:n]
		d.head = 0
	}
	return v
}

func (d *deque[T]) clear() {
	clear(d.buf)
	d.buf = d.buf[:0]
	d.head = 0
}
