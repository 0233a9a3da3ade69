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
	"sync/atomic"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// gsoDisabled turns UDP segmentation offload off (tests use it to cover the
// plain path).
var gsoDisabled atomic.Bool

// sockaddr is a raw sockaddr_in or sockaddr_in6.
type sockaddr [unix.SizeofSockaddrInet6]byte

// sockIO is a UDP socket's raw handle.
type sockIO struct {
	rc     syscall.RawConn
	family int // unix.AF_INET or unix.AF_INET6
	// gsoMax is the largest datagram UDP_SEGMENT may coalesce on this
	// socket: 0 when unsupported, lowered when the kernel refuses a size
	// (a segment must fit the route's MTU).
	gsoMax atomic.Int32
}

// gsoDefaultMax fits a 1500-byte MTU with IPv6 and UDP headers.
const gsoDefaultMax = 1452

func newSockIO(c *net.UDPConn) *sockIO {
	if c == nil {
		return nil
	}
	rc, err := c.SyscallConn()
	if err != nil {
		return nil
	}
	fam := -1
	gso := false
	cerr := rc.Control(func(fd uintptr) {
		if v, err := unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_DOMAIN); err == nil { //nolint:gosec // fd fits int
			fam = v
		}
		_, err := unix.GetsockoptInt(int(fd), unix.SOL_UDP, unix.UDP_SEGMENT) //nolint:gosec // fd fits int
		gso = err == nil
	})
	if cerr != nil || (fam != unix.AF_INET && fam != unix.AF_INET6) {
		return nil
	}
	s := &sockIO{rc: rc, family: fam}
	if gso && !gsoDisabled.Load() {
		s.gsoMax.Store(gsoDefaultMax)
	}
	return s
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

// txBatch sends datagrams with sendmmsg, each to its own address. On
// sockets that support it, consecutive datagrams of equal size to the same
// address are coalesced into one message with UDP generic segmentation
// offload (UDP_SEGMENT): the kernel builds one buffer and runs the IP output
// path once for the run, then cuts it into the datagrams. A txBatch belongs
// to one goroutine and flushes to one socket at a time.
type txBatch struct {
	hdrs   []unix.Mmsghdr // messages
	iovs   []unix.Iovec   // datagrams, in order; a message covers a range
	names  []sockaddr     // per message
	ctrl   []byte         // per message, one UDP_SEGMENT control message
	segs   []int          // per message: datagrams in it
	size   []int          // per message: datagram size (the last may be shorter)
	short  []bool         // per message: its last datagram was shorter
	msgs   int
	nseg   int
	sent   int
	fail   int
	gsoMax int // coalescing limit of the socket being filled
	io     *sockIO
	one    unix.Msghdr // for resending a refused coalesced message datagram by datagram
	fn     func(fd uintptr) bool
}

const (
	gsoMaxSegments = 64     // the kernel's UDP_MAX_SEGMENTS
	gsoMaxBytes    = 60_000 // stay under the 64 KiB datagram limit
)

var cmsgSpace = unix.CmsgSpace(2)

func newTxBatch(n int) *txBatch {
	t := &txBatch{
		hdrs: make([]unix.Mmsghdr, n), iovs: make([]unix.Iovec, n), names: make([]sockaddr, n),
		ctrl: make([]byte, n*cmsgSpace), segs: make([]int, n), size: make([]int, n), short: make([]bool, n),
	}
	for i := range n {
		t.hdrs[i].Hdr.Name = &t.names[i][0]
		h := (*unix.Cmsghdr)(unsafe.Pointer(&t.ctrl[i*cmsgSpace]))
		h.Level = unix.SOL_UDP
		h.Type = unix.UDP_SEGMENT
		h.SetLen(unix.CmsgLen(2))
	}
	t.fn = func(fd uintptr) bool {
		for t.sent < t.msgs {
			n, _, e := unix.RawSyscall6(unix.SYS_SENDMMSG, fd, uintptr(unsafe.Pointer(&t.hdrs[t.sent])), uintptr(t.msgs-t.sent), unix.MSG_DONTWAIT, 0, 0)
			switch {
			case e == unix.EAGAIN:
				return false // wait for room in the socket buffer
			case e == unix.EINTR:
				continue
			case e != 0:
				// The kernel refused the first remaining message: an
				// unreachable peer, or segmentation the path cannot do
				// (a segment over the route's MTU, a device without
				// offload). Coalesced datagrams are sent one by one,
				// and this size is not coalesced again on this socket.
				m := t.sent
				if t.segs[m] > 1 {
					lower := int32(t.size[m] - 1) //nolint:gosec // <= maxDatagram
					if e == unix.EIO || e == unix.EOPNOTSUPP {
						lower = 0
					}
					if lower < t.io.gsoMax.Load() {
						t.io.gsoMax.Store(lower)
					}
					t.resend(fd, m)
				} else {
					t.fail++
				}
				t.sent++
				continue
			}
			t.sent += int(n)
		}
		return true
	}
	return t
}

// resend sends coalesced message m one datagram per system call.
func (t *txBatch) resend(fd uintptr, m int) {
	h := &t.hdrs[m].Hdr
	first := int((uintptr(unsafe.Pointer(h.Iov)) - uintptr(unsafe.Pointer(&t.iovs[0]))) / unsafe.Sizeof(t.iovs[0]))
	for i := first; i < first+t.segs[m]; i++ {
		t.one = unix.Msghdr{Name: h.Name, Namelen: h.Namelen, Iov: &t.iovs[i]}
		t.one.SetIovlen(1)
		for {
			_, _, e := unix.RawSyscall(unix.SYS_SENDMSG, fd, uintptr(unsafe.Pointer(&t.one)), unix.MSG_DONTWAIT)
			if e == unix.EINTR {
				continue
			}
			if e != 0 {
				t.fail++ // EAGAIN included: the socket buffer is full, drop as UDP would
			}
			break
		}
	}
}

// add queues p for ap; the whole batch goes out on io. It reports false
// when the batch is full or the family cannot carry ap.
func (t *txBatch) add(io *sockIO, p []byte, ap netip.AddrPort) bool {
	if t.nseg == len(t.iovs) || len(p) == 0 {
		return false
	}
	var sa sockaddr
	l := io.put(&sa, ap)
	if l == 0 {
		return false
	}
	if t.msgs == 0 {
		t.io = io
		t.gsoMax = int(io.gsoMax.Load())
	}
	k := t.nseg
	t.iovs[k].Base = &p[0]
	t.iovs[k].SetLen(len(p))
	t.nseg++
	if m := t.msgs - 1; m >= 0 && t.size[m] <= t.gsoMax && t.names[m] == sa && !t.short[m] && len(p) <= t.size[m] &&
		t.segs[m] < gsoMaxSegments && (t.segs[m]+1)*t.size[m] <= gsoMaxBytes {
		t.segs[m]++
		t.short[m] = len(p) < t.size[m]
		h := &t.hdrs[m].Hdr
		h.SetIovlen(t.segs[m])
		if t.segs[m] == 2 {
			binary.NativeEndian.PutUint16(t.ctrl[m*cmsgSpace+unix.CmsgLen(0):], uint16(t.size[m])) //nolint:gosec // <= maxDatagram
			h.Control = &t.ctrl[m*cmsgSpace]
			h.SetControllen(cmsgSpace)
		}
		return true
	}
	m := t.msgs
	t.msgs++
	t.names[m] = sa
	t.segs[m], t.size[m], t.short[m] = 1, len(p), false
	h := &t.hdrs[m].Hdr
	h.Namelen = l
	h.Iov = &t.iovs[k]
	h.SetIovlen(1)
	h.Control = nil
	h.SetControllen(0)
	return true
}

// len is the number of queued datagrams.
func (t *txBatch) len() int { return t.nseg }

// flush sends the queued datagrams on io. It returns how many the kernel
// refused.
func (t *txBatch) flush(io *sockIO) (failed int, err error) {
	if t.msgs == 0 {
		return 0, nil
	}
	t.sent, t.fail, t.io = 0, 0, io
	err = io.rc.Write(t.fn)
	failed = t.fail
	if err != nil {
		for m := t.sent; m < t.msgs; m++ {
			failed += t.segs[m]
		}
	}
	for i := range t.nseg {
		t.iovs[i].Base = nil // do not keep the buffers reachable
	}
	t.msgs, t.nseg = 0, 0
	return failed, err
}
