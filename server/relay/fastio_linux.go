//go:build linux

package relay

// Batched, scheduler-light datagram I/O for the relaying fast path.
//
// Profiling ferry-relay under load (see docs/BENCHMARKS-relay.md) showed the
// relaying itself costing almost nothing in user space; the overhead over
// coturn was Go's scheduler: every read and write through net.UDPConn enters
// and leaves a syscall state that sysmon watches (it then polls every 20 µs),
// and every empty read parks a goroutine. Here reads and writes go through
// syscall.RawConn callbacks that issue raw recvmmsg/sendmmsg/sendto system
// calls: the socket's poll descriptor still guards against Close and still
// parks the goroutine when a socket is empty, but a batch of datagrams costs
// one system call and no scheduler transition.

import (
	"encoding/binary"
	"net"
	"net/netip"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// sockaddr is a raw sockaddr_in or sockaddr_in6.
type sockaddr [unix.SizeofSockaddrInet6]byte

// sockIO is a UDP socket's raw handle.
type sockIO struct {
	rc     syscall.RawConn
	family int // unix.AF_INET or unix.AF_INET6
}

func newSockIO(c *net.UDPConn) *sockIO {
	if c == nil {
		return nil
	}
	rc, err := c.SyscallConn()
	if err != nil {
		return nil
	}
	fam := -1
	cerr := rc.Control(func(fd uintptr) {
		if v, err := unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_DOMAIN); err == nil { //nolint:gosec // fd fits int
			fam = v
		}
	})
	if cerr != nil || (fam != unix.AF_INET && fam != unix.AF_INET6) {
		return nil
	}
	return &sockIO{rc: rc, family: fam}
}

// put encodes ap as a sockaddr for the socket's family and returns its
// length, or 0 if the family cannot carry it.
func (s *sockIO) put(sa *sockaddr, ap netip.AddrPort) uint32 {
	*sa = sockaddr{}
	ip := ap.Addr()
	if s.family == unix.AF_INET {
		if !ip.Unmap().Is4() {
			return 0
		}
		binary.NativeEndian.PutUint16(sa[0:2], unix.AF_INET)
		binary.BigEndian.PutUint16(sa[2:4], ap.Port())
		a := ip.Unmap().As4()
		copy(sa[4:8], a[:])
		return unix.SizeofSockaddrInet4
	}
	binary.NativeEndian.PutUint16(sa[0:2], unix.AF_INET6)
	binary.BigEndian.PutUint16(sa[2:4], ap.Port())
	a := ip.As16() // IPv4 becomes IPv4-mapped, as a dual-stack socket wants
	copy(sa[8:24], a[:])
	return unix.SizeofSockaddrInet6
}

// get decodes a received sockaddr, unmapping IPv4-mapped addresses.
func get(sa *sockaddr) netip.AddrPort {
	port := binary.BigEndian.Uint16(sa[2:4])
	switch binary.NativeEndian.Uint16(sa[0:2]) {
	case unix.AF_INET:
		return netip.AddrPortFrom(netip.AddrFrom4([4]byte(sa[4:8])), port)
	case unix.AF_INET6:
		return netip.AddrPortFrom(netip.AddrFrom16([16]byte(sa[8:24])).Unmap(), port)
	}
	return netip.AddrPort{}
}

// rxBatch receives up to len(bufs) datagrams per system call. Each buffer
// has headroom bytes in front of the data (room for a ChannelData header).
// A rxBatch belongs to one goroutine.
type rxBatch struct {
	io       *sockIO
	headroom int
	hdrs     []unix.Mmsghdr
	iovs     []unix.Iovec
	names    []sockaddr
	bufs     [][]byte
	count    int
	pos      int
	errno    syscall.Errno
	fn       func(fd uintptr) bool
}

func newRxBatch(io *sockIO, n, size, headroom int) *rxBatch {
	b := &rxBatch{
		io: io, headroom: headroom,
		hdrs: make([]unix.Mmsghdr, n), iovs: make([]unix.Iovec, n), names: make([]sockaddr, n), bufs: make([][]byte, n),
	}
	mem := make([]byte, n*(headroom+size))
	for i := range n {
		b.bufs[i] = mem[i*(headroom+size) : (i+1)*(headroom+size) : (i+1)*(headroom+size)]
		b.iovs[i].Base = &b.bufs[i][headroom]
		b.iovs[i].SetLen(size)
		b.hdrs[i].Hdr.Name = &b.names[i][0]
		b.hdrs[i].Hdr.Iov = &b.iovs[i]
		b.hdrs[i].Hdr.SetIovlen(1)
	}
	b.fn = func(fd uintptr) bool {
		n, _, e := unix.RawSyscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&b.hdrs[0])), uintptr(len(b.hdrs)), unix.MSG_DONTWAIT, 0, 0)
		if e == unix.EAGAIN || e == unix.EINTR {
			return false // wait for the socket to be readable
		}
		b.errno, b.count = e, int(n)
		return true
	}
	return b
}

// len is the number of queued datagrams.
func (t *txBatch) len() int { return t.count }

// next returns the next datagram: its buffer (headroom included, data from
// headroom to headroom+n), length, source, and whether it was truncated.
// It blocks (parking the goroutine) until one arrives.
func (b *rxBatch) next() (buf []byte, n int, from netip.AddrPort, trunc bool, err error) {
	for b.pos >= b.count {
		for i := range b.hdrs {
			b.hdrs[i].Hdr.Namelen = uint32(len(sockaddr{}))
			b.hdrs[i].Hdr.Flags = 0
			b.hdrs[i].Len = 0
		}
		b.count, b.pos, b.errno = 0, 0, 0
		if err := b.io.rc.Read(b.fn); err != nil {
			return nil, 0, netip.AddrPort{}, false, err
		}
		if b.errno != 0 {
			return nil, 0, netip.AddrPort{}, false, b.errno
		}
	}
	i := b.pos
	b.pos++
	h := &b.hdrs[i]
	return b.bufs[i], int(h.Len), get(&b.names[i]), h.Hdr.Flags&unix.MSG_TRUNC != 0, nil
}

// pending reports whether datagrams from the last system call are unread.
func (b *rxBatch) pending() bool { return b.pos < b.count }

// txBatch sends datagrams with sendmmsg, each to its own address. A txBatch
// belongs to one goroutine.
type txBatch struct {
	hdrs   []unix.Mmsghdr
	iovs   []unix.Iovec
	names  []sockaddr
	count  int
	sent   int
	failed int
	fn     func(fd uintptr) bool
}

func newTxBatch(n int) *txBatch {
	t := &txBatch{hdrs: make([]unix.Mmsghdr, n), iovs: make([]unix.Iovec, n), names: make([]sockaddr, n)}
	for i := range n {
		t.hdrs[i].Hdr.Name = &t.names[i][0]
		t.hdrs[i].Hdr.Iov = &t.iovs[i]
		t.hdrs[i].Hdr.SetIovlen(1)
	}
	t.fn = func(fd uintptr) bool {
		for t.sent < t.count {
			n, _, e := unix.RawSyscall6(unix.SYS_SENDMMSG, fd, uintptr(unsafe.Pointer(&t.hdrs[t.sent])), uintptr(t.count-t.sent), unix.MSG_DONTWAIT, 0, 0)
			switch {
			case e == unix.EAGAIN:
				return false // wait for room in the socket buffer
			case e == unix.EINTR:
				continue
			case e != 0:
				// Skip the datagram the kernel refused (an unreachable
				// peer, say) and go on with the rest.
				t.failed++
				t.sent++
				continue
			}
			t.sent += int(n)
		}
		return true
	}
	return t
}

// add queues p for ap on a socket of io's family; it reports false when the
// batch is full or the family cannot carry ap.
func (t *txBatch) add(io *sockIO, p []byte, ap netip.AddrPort) bool {
	if t.count == len(t.hdrs) || len(p) == 0 {
		return false
	}
	i := t.count
	l := io.put(&t.names[i], ap)
	if l == 0 {
		return false
	}
	t.hdrs[i].Hdr.Namelen = l
	t.iovs[i].Base = &p[0]
	t.iovs[i].SetLen(len(p))
	t.count++
	return true
}

// flush sends the queued datagrams on io. It returns how many the kernel
// refused.
func (t *txBatch) flush(io *sockIO) (failed int, err error) {
	if t.count == 0 {
		return 0, nil
	}
	t.sent, t.failed = 0, 0
	err = io.rc.Write(t.fn)
	failed = t.failed
	if err != nil {
		failed = t.count - t.sent
	}
	for i := range t.count {
		t.iovs[i].Base = nil // do not keep the buffers reachable
	}
	t.count = 0
	return failed, err
}
