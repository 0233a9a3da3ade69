package rendezvous

import (
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/ferrynet/ferry/internal/iplimit"
	"github.com/ferrynet/ferry/internal/netaddr"
)

// STUN over TCP (RFC 8489 section 6.2.2): Binding requests back to back on
// a stream, each framed by its own header's length. It is what a client
// behind a network that blocks UDP (natprobe, a browser's ICE agent) uses
// to learn its public address and to tell "UDP blocked" from "server down".
// No behaviour discovery: CHANGE-REQUEST and RESPONSE-PORT get a 420, as
// they mean nothing on a connection.

const (
	// DefaultSTUNTCPConns caps the open STUN-over-TCP connections.
	DefaultSTUNTCPConns = 4096
	// DefaultSTUNTCPConnsPerIP caps them per source IP (one /64 for IPv6).
	DefaultSTUNTCPConnsPerIP = 8
	// STUNTCPIdleTimeout closes a connection that sends no complete
	// request for this long. RFC 8489 section 6.2.2 asks servers to keep
	// a connection open at least 10 s after the last request.
	STUNTCPIdleTimeout = 15 * time.Second
	// maxSTUNTCPMessage bounds one request on a stream. A Binding request
	// is a few dozen bytes; a longer one is closed as malformed rather
	// than buffered.
	maxSTUNTCPMessage = 2048
	// stunTCPWriteTimeout bounds writing one answer to a peer that does
	// not read.
	stunTCPWriteTimeout = 5 * time.Second
)

// stunTCP serves STUN on one TCP listener, answering through the UDP
// server's handler (same rate limit per source, same metrics).
type stunTCP struct {
	ln       net.Listener
	s        *stunServer
	maxConns int // negative: no cap
	maxPerIP int // negative: no cap
	idle     time.Duration

	mu     sync.Mutex
	closed bool
	conns  map[net.Conn]struct{}
	perIP  map[netip.Addr]int
	wg     sync.WaitGroup
}

func newSTUNTCP(ln net.Listener, s *stunServer, maxConns, maxPerIP int, idle time.Duration) *stunTCP {
	return &stunTCP{
		ln: ln, s: s, maxConns: maxConns, maxPerIP: maxPerIP, idle: idle,
		conns: map[net.Conn]struct{}{}, perIP: map[netip.Addr]int{},
	}
}

func (t *stunTCP) start() {
	t.wg.Add(1)
	go t.accept()
}

func (t *stunTCP) accept() {
	defer t.wg.Done()
	var backoff time.Duration
	for {
		c, err := t.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of file descriptors and the like: wait and retry,
			// as net/http does, instead of spinning or giving up.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			t.s.log.Warn("stun tcp: accept failed; retrying", "err", err, "in", backoff)
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		key, ok := t.admit(c)
		if !ok {
			t.s.count(STUNTCPRefused)
			c.Close()
			continue
		}
		t.wg.Add(1)
		go func() {
			defer t.wg.Done()
			defer t.release(c, key)
			t.serve(c)
		}()
	}
}

// admit registers c under its source's key, or refuses it over a cap or
// after close.
func (t *stunTCP) admit(c net.Conn) (netip.Addr, bool) {
	from := netaddr.AddrPort(c.RemoteAddr())
	if !from.IsValid() {
		return netip.Addr{}, false
	}
	key := iplimit.Key(from.Addr())
	t.mu.Lock()
	defer t.mu.Unlock()
	switch {
	case t.closed:
		return key, false
	case t.maxConns >= 0 && len(t.conns) >= t.maxConns:
		return key, false
	case t.maxPerIP >= 0 && t.perIP[key] >= t.maxPerIP:
		return key, false
	}
	t.conns[c] = struct{}{}
	t.perIP[key]++
	return key, true
}

func (t *stunTCP) release(c net.Conn, key netip.Addr) {
	c.Close()
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.conns, c)
	if t.perIP[key]--; t.perIP[key] <= 0 {
		delete(t.perIP, key)
	}
}

// serve reads framed requests from c until EOF, an idle timeout, or a
// message that is not STUN (a stream cannot resynchronise after garbage).
func (t *stunTCP) serve(c net.Conn) {
	from := netaddr.AddrPort(c.RemoteAddr())
	w := &stunWorker{buf: make([]byte, maxSTUNTCPMessage), tcp: c}
	for {
		_ = c.SetReadDeadline(time.Now().Add(t.idle))
		if _, err := io.ReadFull(c, w.buf[:20]); err != nil {
			if errors.Is(err, io.ErrUnexpectedEOF) {
				t.s.count(STUNMalformed)
			}
			return
		}
		h := w.buf[:20]
		if h[0]&0xc0 != 0 || binary.BigEndian.Uint32(h[4:8]) != magicCookie {
			t.s.count(STUNNotSTUN)
			return
		}
		n := 20 + int(binary.BigEndian.Uint16(h[2:4]))
		if n%4 != 0 || n > len(w.buf) {
			t.s.count(STUNMalformed)
			return
		}
		if _, err := io.ReadFull(c, w.buf[20:n]); err != nil {
			t.s.count(STUNMalformed)
			return
		}
		t.s.handle(w, 0, w.buf[:n], from)
	}
}

// close stops accepting, closes every connection and waits for them.
func (t *stunTCP) close() error {
	err := t.ln.Close()
	if errors.Is(err, net.ErrClosed) {
		err = nil
	}
	t.mu.Lock()
	t.closed = true
	for c := range t.conns {
		c.Close()
	}
	t.mu.Unlock()
	t.wg.Wait()
	return err
}
