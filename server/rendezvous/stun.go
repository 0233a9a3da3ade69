package rendezvous

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/pion/stun/v4"

	"github.com/ferrynet/ferry/internal/iplimit"
	"github.com/ferrynet/ferry/internal/netaddr"
)

// The STUN service: Binding over UDP per RFC 8489, and with four sockets
// the behaviour-discovery attributes of RFC 5780. One goroutine reads each
// socket; a request is answered from the socket CHANGE-REQUEST selects.

// Socket indexes in the RFC 5780 layout: ip*2 + port, where ip and port
// are 0 for the primary and 1 for the alternate.
const (
	changeIPFlag   = 0x04
	changePortFlag = 0x02
	magicCookie    = 0x2112A442
)

// layout is the validated arrangement of the STUN sockets.
type layout struct {
	rfc5780 bool
	// addrs are the advertised addresses of the sockets, by index.
	addrs []netip.AddrPort
}

// stunLayout checks the sockets against the layouts Config documents and
// returns the addresses to advertise for each.
func stunLayout(conns []net.PacketConn, external []netip.Addr) (layout, error) {
	var l layout
	switch len(conns) {
	case 0:
		if len(external) > 0 {
			return l, fmt.Errorf("%w: STUN external IPs without STUN sockets", ErrInvalidConfig)
		}
		return l, nil
	case 1, 4:
	default:
		return l, fmt.Errorf("%w: %d STUN sockets: want 1, or 4 for RFC 5780", ErrInvalidConfig, len(conns))
	}
	l.rfc5780 = len(conns) == 4
	l.addrs = make([]netip.AddrPort, len(conns))
	for i, c := range conns {
		if c == nil {
			return l, fmt.Errorf("%w: STUN socket %d is nil", ErrInvalidConfig, i)
		}
		ap := netaddr.AddrPort(c.LocalAddr())
		if !ap.IsValid() {
			return l, fmt.Errorf("%w: STUN socket %d: local address %v (%T) has no IP and port", ErrInvalidConfig, i, c.LocalAddr(), c.LocalAddr())
		}
		l.addrs[i] = ap
	}
	if l.rfc5780 {
		a := l.addrs
		ip1, ip2, p1, p2 := a[0].Addr(), a[2].Addr(), a[0].Port(), a[1].Port()
		switch {
		case ip1.IsUnspecified() || ip2.IsUnspecified():
			return l, fmt.Errorf("%w: RFC 5780 needs STUN sockets bound to specific IPs, not %v", ErrInvalidConfig, ip1)
		case ip1 == ip2:
			return l, fmt.Errorf("%w: RFC 5780 needs two different IPs, got %v twice", ErrInvalidConfig, ip1)
		case p1 == p2:
			return l, fmt.Errorf("%w: RFC 5780 needs two different ports, got %d twice", ErrInvalidConfig, p1)
		case a[1].Addr() != ip1 || a[3].Addr() != ip2 || a[2].Port() != p1 || a[3].Port() != p2:
			return l, fmt.Errorf("%w: RFC 5780 sockets must be IP1:P1, IP1:P2, IP2:P1, IP2:P2; got %v", ErrInvalidConfig, a)
		case ip1.Is4() != ip2.Is4():
			return l, fmt.Errorf("%w: RFC 5780 needs two IPs of one family, got %v and %v", ErrInvalidConfig, ip1, ip2)
		}
	}
	want := 1
	if l.rfc5780 {
		want = 2
	}
	switch len(external) {
	case 0:
	case want:
		for i, ip := range external {
			if !ip.IsValid() || ip.IsUnspecified() {
				return l, fmt.Errorf("%w: STUN external IP %v", ErrInvalidConfig, ip)
			}
			for j := range l.addrs {
				if j/2 == i {
					l.addrs[j] = netip.AddrPortFrom(ip.Unmap(), l.addrs[j].Port())
				}
			}
		}
	default:
		return l, fmt.Errorf("%w: %d STUN external IPs, want %d", ErrInvalidConfig, len(external), want)
	}
	return l, nil
}

type stunServer struct {
	conns  []net.PacketConn
	udp    []*net.UDPConn // the same sockets when they are *net.UDPConn, else nil
	layout layout
	m      *metrics
	log    *slog.Logger
	limit  *stunLimiter // nil: no rate limit
	tcp    *stunTCP     // nil: no STUN over TCP
	wg     sync.WaitGroup
}

// stunLimiter rate-limits STUN requests per source (an IPv4 address or an
// IPv6 /64), in shards so that the readers of the sockets rarely contend.
type stunLimiter struct {
	rate     float64
	burst    int
	perShard int // tracked sources per shard
	now      func() int64
	shards   [16]stunShard
}

type stunShard struct {
	mu sync.Mutex
	m  map[netip.Addr]bucket
}

func newSTUNLimiter(rate float64, burst, sources int, now func() int64) *stunLimiter {
	if rate < 0 {
		return nil
	}
	l := &stunLimiter{rate: rate, burst: burst, perShard: max(sources/16, 1), now: now}
	for i := range l.shards {
		l.shards[i].m = map[netip.Addr]bucket{}
	}
	return l
}

// allow takes a token for a request from key.
func (l *stunLimiter) allow(key netip.Addr) bool {
	a := key.As16()
	sh := &l.shards[(a[3]^a[7]^a[15])&15]
	now := l.now()
	sh.mu.Lock()
	defer sh.mu.Unlock()
	b, ok := sh.m[key]
	if !ok && len(sh.m) >= l.perShard {
		return true // the table is full (spoofed sources?): untracked
	}
	took, _ := b.take(now, l.rate, l.burst)
	sh.m[key] = b
	return took
}

// sweep forgets sources whose bucket is full again.
func (l *stunLimiter) sweep() {
	now := l.now()
	for i := range l.shards {
		sh := &l.shards[i]
		sh.mu.Lock()
		for k, b := range sh.m {
			if b.full(now, l.rate, l.burst) {
				delete(sh.m, k)
			}
		}
		sh.mu.Unlock()
	}
}

// maxDatagram is the read buffer: the largest UDP payload, so that a padded
// request (RFC 5780 PADDING) is never truncated.
const maxDatagram = 65535

func newSTUNServer(conns []net.PacketConn, l layout, m *metrics, log *slog.Logger, limit *stunLimiter) *stunServer {
	s := &stunServer{conns: conns, udp: make([]*net.UDPConn, len(conns)), layout: l, m: m, log: log, limit: limit}
	for i, c := range conns {
		s.udp[i], _ = c.(*net.UDPConn)
	}
	return s
}

func (s *stunServer) start() {
	for i := range s.conns {
		s.wg.Add(1)
		go s.serve(i)
	}
	if s.tcp != nil {
		s.tcp.start()
	}
}

// close closes the sockets and waits for the readers.
func (s *stunServer) close() error {
	var errs []error
	for _, c := range s.conns {
		if err := c.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
			errs = append(errs, err)
		}
	}
	if s.tcp != nil {
		errs = append(errs, s.tcp.close())
	}
	s.wg.Wait()
	return errors.Join(errs...)
}

// stunWorker holds one reader's reusable state.
type stunWorker struct {
	buf      []byte
	req, res stun.Message
	unknown  []stun.AttrType
	// tcp is the stream connection this worker answers on, nil for the
	// UDP readers. Over TCP there is no behaviour discovery: one socket,
	// and answers go back on the connection.
	tcp net.Conn
}

func (s *stunServer) serve(i int) {
	defer s.wg.Done()
	w := &stunWorker{buf: make([]byte, maxDatagram)}
	for {
		n, from, err := s.read(i, w.buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			s.log.Warn("stun: read failed; socket closed", "addr", s.layout.addrs[i], "err", err)
			return
		}
		s.handle(w, i, w.buf[:n], from)
	}
}

func (s *stunServer) read(i int, buf []byte) (int, netip.AddrPort, error) {
	if u := s.udp[i]; u != nil {
		n, from, err := u.ReadFromUDPAddrPort(buf)
		return n, from, err
	}
	n, a, err := s.conns[i].ReadFrom(buf)
	if err != nil {
		return 0, netip.AddrPort{}, err
	}
	// A source without an IP and port gives an invalid AddrPort,
	// which handle drops.
	return n, netaddr.AddrPort(a), nil
}

func (s *stunServer) write(i int, b []byte, to netip.AddrPort) error {
	if u := s.udp[i]; u != nil {
		_, err := u.WriteToUDPAddrPort(b, to)
		return err
	}
	_, err := s.conns[i].WriteTo(b, net.UDPAddrFromAddrPort(to))
	return err
}

// isSTUN checks the fixed header of RFC 8489 section 5: the top two bits
// zero, the magic cookie, and a length that is a multiple of 4 and matches
// the datagram exactly. It rejects garbage before any parsing.
func isSTUN(b []byte) bool {
	return len(b) >= 20 && b[0]&0xc0 == 0 &&
		binary.BigEndian.Uint32(b[4:8]) == magicCookie &&
		int(binary.BigEndian.Uint16(b[2:4]))+20 == len(b) && len(b)%4 == 0
}

// handle answers one datagram received on socket in, from the given peer.
func (s *stunServer) handle(w *stunWorker, in int, pkt []byte, from netip.AddrPort) {
	if !from.IsValid() || from.Port() == 0 {
		s.count(STUNMalformed)
		return
	}
	if s.limit != nil && !s.limit.allow(iplimit.Key(from.Addr())) {
		s.count(STUNRateLimited)
		return
	}
	if !isSTUN(pkt) {
		if len(pkt) >= 20 && pkt[0]&0xc0 == 0 && binary.BigEndian.Uint32(pkt[4:8]) == magicCookie {
			s.count(STUNMalformed) // STUN header, wrong length
		} else {
			s.count(STUNNotSTUN)
		}
		return
	}
	req := &w.req
	req.Raw = pkt
	if err := req.Decode(); err != nil {
		s.count(STUNMalformed)
		return
	}
	switch {
	case req.Type.Method != stun.MethodBinding || req.Type.Class == stun.ClassSuccessResponse || req.Type.Class == stun.ClassErrorResponse:
		s.count(STUNUnsupported)
		return
	case req.Type.Class == stun.ClassIndication:
		s.count(STUNIndication)
		return
	}
	if req.Contains(stun.AttrFingerprint) {
		if err := stun.Fingerprint.Check(req); err != nil {
			s.count(STUNMalformed)
			return
		}
	}
	var (
		flags    uint32
		padding  int
		respPort uint16 // RESPONSE-PORT, 0 when absent
	)
	w.unknown = w.unknown[:0]
	rfc5780 := s.layout.rfc5780 && w.tcp == nil
	for _, a := range req.Attributes {
		switch a.Type {
		case stun.AttrChangeRequest, stun.AttrResponsePort:
			// RFC 5780 behaviour discovery. Without it (no alternate
			// address) both are unknown comprehension-required
			// attributes, and CHANGE-REQUEST gets its 420 (section 6.1).
			if len(a.Value) != 4 {
				s.count(STUNMalformed)
				return
			}
			if !rfc5780 {
				w.unknown = append(w.unknown, a.Type)
			}
			if a.Type == stun.AttrChangeRequest {
				flags = binary.BigEndian.Uint32(a.Value)
				break
			}
			// RESPONSE-PORT (section 7.5): answer to this port of the
			// source address (clients use it to measure binding
			// lifetimes).
			if respPort = binary.BigEndian.Uint16(a.Value); respPort == 0 {
				s.count(STUNMalformed)
				return
			}
		case stun.AttrPadding:
			padding = len(a.Value)
		case stun.AttrFingerprint, stun.AttrSoftware, stun.AttrUsername, stun.AttrMessageIntegrity,
			stun.AttrMessageIntegritySHA256, stun.AttrUserhash, stun.AttrRealm, stun.AttrNonce,
			stun.AttrPasswordAlgorithm, stun.AttrPriority, stun.AttrUseCandidate:
			// Understood and not needed: Binding is served without
			// authentication, and ICE attributes are for peers.
		default:
			if a.Type.Required() {
				w.unknown = append(w.unknown, a.Type)
			}
		}
	}
	res := &w.res
	res.Reset()
	res.TransactionID = req.TransactionID
	if len(w.unknown) > 0 {
		if len(w.unknown) > 16 {
			w.unknown = w.unknown[:16]
		}
		res.Type = stun.BindingError
		res.WriteHeader()
		_ = stun.ErrorCodeAttribute{Code: stun.CodeUnknownAttribute}.AddTo(res)
		_ = stun.UnknownAttributes(w.unknown).AddTo(res)
		_ = stun.Fingerprint.AddTo(res)
		s.send(w, in, res.Raw, from, STUNUnknownAttribute)
		return
	}
	out := in
	if rfc5780 {
		if flags&changeIPFlag != 0 {
			out ^= 2
		}
		if flags&changePortFlag != 0 {
			out ^= 1
		}
	}
	res.Type = stun.BindingSuccess
	res.WriteHeader()
	var v [20]byte
	res.Add(stun.AttrXORMappedAddress, xorAddr(v[:0], from, &req.TransactionID))
	if rfc5780 {
		// MAPPED-ADDRESS lets a client detect an ALG rewriting
		// addresses in payloads; RESPONSE-ORIGIN and OTHER-ADDRESS are
		// RFC 5780 section 7.
		res.Add(stun.AttrMappedAddress, plainAddr(v[:0], from))
		res.Add(stun.AttrResponseOrigin, plainAddr(v[:0], s.layout.addrs[out]))
		res.Add(stun.AttrOtherAddress, plainAddr(v[:0], s.layout.addrs[3-in]))
	}
	if padding > 0 && w.tcp == nil {
		// RFC 5780 section 7.6: answer a padded request with padding, so
		// the client can test fragmentation. The answer never grows
		// beyond the request, so padding adds no amplification.
		room := len(pkt) - len(res.Raw) - 4 - 8 // PADDING header, FINGERPRINT
		if n := min(padding, room) &^ 3; n > 0 {
			res.Add(stun.AttrPadding, zeros[:min(n, len(zeros))])
		}
	}
	_ = stun.Fingerprint.AddTo(res)
	d := STUNAnswered
	if out != in {
		d = STUNChanged
	}
	to := from
	if respPort != 0 {
		to = netip.AddrPortFrom(from.Addr(), respPort)
	}
	s.send(w, out, res.Raw, to, d)
}

var zeros [maxDatagram]byte

func (s *stunServer) send(w *stunWorker, i int, b []byte, to netip.AddrPort, disposition string) {
	var err error
	if w.tcp != nil {
		_ = w.tcp.SetWriteDeadline(time.Now().Add(stunTCPWriteTimeout))
		_, err = w.tcp.Write(b)
	} else {
		err = s.write(i, b, to)
	}
	if err != nil {
		s.count(STUNSendError)
		s.log.Debug("stun: send failed", "to", to, "err", err)
		return
	}
	s.count(disposition)
}

func (s *stunServer) count(disposition string) { s.m.stunBy[disposition].Inc() }

// plainAddr appends the value of a MAPPED-ADDRESS-style attribute (RFC 8489
// section 14.1): 0, family, port, address.
func plainAddr(b []byte, a netip.AddrPort) []byte {
	ip := a.Addr().Unmap()
	fam := byte(0x01)
	if ip.Is6() {
		fam = 0x02
	}
	b = append(b, 0, fam)
	b = binary.BigEndian.AppendUint16(b, a.Port())
	if ip.Is4() {
		a4 := ip.As4()
		return append(b, a4[:]...)
	}
	a16 := ip.As16()
	return append(b, a16[:]...)
}

// xorAddr appends the value of XOR-MAPPED-ADDRESS (RFC 8489 section 14.2):
// the port XORed with the cookie's high half, the address with the cookie
// (IPv4) or the cookie and the transaction ID (IPv6).
func xorAddr(b []byte, a netip.AddrPort, tid *[stun.TransactionIDSize]byte) []byte {
	ip := a.Addr().Unmap()
	fam := byte(0x01)
	if ip.Is6() {
		fam = 0x02
	}
	b = append(b, 0, fam)
	b = binary.BigEndian.AppendUint16(b, a.Port()^uint16(magicCookie>>16))
	var key [16]byte
	binary.BigEndian.PutUint32(key[:4], magicCookie)
	copy(key[4:], tid[:])
	if ip.Is4() {
		a4 := ip.As4()
		for i := range a4 {
			b = append(b, a4[i]^key[i])
		}
		return b
	}
	a16 := ip.As16()
	for i := range a16 {
		b = append(b, a16[i]^key[i])
	}
	return b
}
