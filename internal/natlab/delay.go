package natlab

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// delayQueueLen bounds the frames held per direction (tail drop beyond).
const delayQueueLen = 8192

// maxFrame is the largest frame the stage reads. Lab veths run with
// segmentation offloads off, so frames stay at the 1500-byte MTU; the
// margin only matters if that ever changes, in which case oversized frames
// are dropped rather than truncated.
const maxFrame = 64 << 10

// delayStage bridges two interfaces of its namespace with AF_PACKET
// sockets and holds every frame for the configured delay.
type delayStage struct {
	ns     string
	link   atomic.Pointer[Link]
	files  [2]*os.File
	wg     sync.WaitGroup
	closed chan struct{}
	once   sync.Once
	drops  atomic.Uint64
}

type heldFrame struct {
	b  []byte
	at time.Time
}

// startDelayStage opens the sockets in ns (interfaces "in" and "out") and
// starts one reader and one writer goroutine per direction.
func startDelayStage(ns string, link Link) (*delayStage, error) {
	d := &delayStage{ns: ns, closed: make(chan struct{})}
	l := link
	d.link.Store(&l)
	err := doInNS(ns, func() error {
		for i, name := range []string{"in", "out"} {
			f, err := openPacketSocket(name)
			if err != nil {
				return err
			}
			d.files[i] = f
		}
		return nil
	})
	if err != nil {
		for _, f := range d.files {
			if f != nil {
				f.Close()
			}
		}
		return nil, err
	}
	d.pipe(d.files[0], d.files[1])
	d.pipe(d.files[1], d.files[0])
	return d, nil
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// openPacketSocket opens a promiscuous AF_PACKET socket on ifname that does
// not see the frames it (or anyone) sends out of that interface.
func openPacketSocket(ifname string) (*os.File, error) {
	ifi, err := net.InterfaceByName(ifname)
	if err != nil {
		return nil, fmt.Errorf("natlab: delay stage: %w", err)
	}
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_ALL)))
	if err != nil {
		return nil, fmt.Errorf("natlab: delay stage: packet socket: %w", err)
	}
	fail := func(what string, err error) (*os.File, error) {
		unix.Close(fd)
		return nil, fmt.Errorf("natlab: delay stage: %s on %s: %w", what, ifname, err)
	}
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifi.Index}); err != nil {
		return fail("bind", err)
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_IGNORE_OUTGOING, 1); err != nil {
		return fail("PACKET_IGNORE_OUTGOING", err)
	}
	mreq := &unix.PacketMreq{Ifindex: int32(ifi.Index), Type: unix.PACKET_MR_PROMISC}
	if err := unix.SetsockoptPacketMreq(fd, unix.SOL_PACKET, unix.PACKET_ADD_MEMBERSHIP, mreq); err != nil {
		return fail("promiscuous mode", err)
	}
	// A non-blocking fd gives a File that uses the runtime poller, so Close
	// unblocks a pending Read.
	return os.NewFile(uintptr(fd), "packet:"+ifname), nil
}

// pipe forwards frames read from src to dst after the delay.
func (d *delayStage) pipe(src, dst *os.File) {
	q := make(chan heldFrame, delayQueueLen)
	d.wg.Add(2)
	go func() {
		defer d.wg.Done()
		defer close(q)
		buf := make([]byte, maxFrame)
		var last time.Time
		for {
			n, err := src.Read(buf)
			if err != nil {
				return // closed
			}
			if n == 0 || n >= maxFrame {
				d.drops.Add(1)
				continue
			}
			l := d.link.Load()
			at := time.Now().Add(l.Delay)
			if l.Jitter > 0 {
				at = at.Add(time.Duration(rand.Int64N(int64(2*l.Jitter)+1)) - l.Jitter)
			}
			if at.Before(last) {
				at = last // keep order
			}
			last = at
			select {
			case q <- heldFrame{b: append([]byte(nil), buf[:n]...), at: at}:
			default:
				d.drops.Add(1) // queue full: tail drop
			}
		}
	}()
	go func() {
		defer d.wg.Done()
		timer := time.NewTimer(time.Hour)
		defer timer.Stop()
		for f := range q {
			if wait := time.Until(f.at); wait > 0 {
				timer.Reset(wait)
				select {
				case <-timer.C:
				case <-d.closed:
					continue // drain without waiting
				}
			}
			if _, err := dst.Write(f.b); err != nil {
				select {
				case <-d.closed:
					continue
				default:
					// The interface may be briefly down; drop like a wire would.
					d.drops.Add(1)
				}
			}
		}
	}()
}

func (d *delayStage) set(l Link) { d.link.Store(&l) }

// close stops the stage and waits for its goroutines. Idempotent.
func (d *delayStage) close() error {
	var errs []error
	d.once.Do(func() {
		close(d.closed)
		for _, f := range d.files {
			if err := f.Close(); err != nil && !errors.Is(err, os.ErrClosed) {
				errs = append(errs, err)
			}
		}
		d.wg.Wait()
	})
	return errors.Join(errs...)
}
