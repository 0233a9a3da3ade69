package stunclient

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/stun/v4"

	"github.com/ferrynet/ferry/internal/netaddr"
	"github.com/ferrynet/ferry/internal/testutil"
)

const ms = time.Millisecond

func TestPlan(t *testing.T) {
	for _, c := range []struct {
		name  string
		s     Schedule
		sends []time.Duration
		end   time.Duration
	}{
		{"RFC 8489 default", Schedule{}, []time.Duration{0, 500 * ms, 1500 * ms, 3500 * ms, 7500 * ms, 15500 * ms, 31500 * ms}, 39500 * ms},
		{"natprobe default", Schedule{RTO: 500 * ms, Rc: -1, Timeout: 5 * time.Second}, []time.Duration{0, 500 * ms, 1500 * ms, 3500 * ms}, 5 * time.Second},
		{"sdk UDP check", Schedule{RTO: 200 * ms, Rc: 3, Rm: 4}, []time.Duration{0, 200 * ms, 600 * ms}, 1400 * ms},
		{"readiness poll", Schedule{RTO: 100 * ms, Rc: 1, Rm: 1}, []time.Duration{0}, 100 * ms},
		{"timeout before Rm", Schedule{RTO: 100 * ms, Rc: 2, Rm: 16, Timeout: 500 * ms}, []time.Duration{0, 100 * ms}, 500 * ms},
		{"timeout cuts sends", Schedule{RTO: 100 * ms, Timeout: 250 * ms}, []time.Duration{0, 100 * ms}, 250 * ms},
	} {
		sends, end := c.s.Plan()
		if !slices.Equal(sends, c.sends) || end != c.end {
			t.Errorf("%s: Plan = %v, %v; want %v, %v", c.name, sends, end, c.sends, c.end)
		}
	}
	// Unbounded: cut, and no overflow.
	if sends, _ := (Schedule{Rc: -1}).Plan(); len(sends) == 0 || len(sends) > 64 || !slices.IsSorted(sends) {
		t.Errorf("unbounded plan: %v", sends)
	}
}

func binding(t testing.TB) *stun.Message {
	t.Helper()
	m, err := stun.Build(stun.TransactionID, stun.BindingRequest)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func build(t testing.TB, txid [stun.TransactionIDSize]byte, typ stun.MessageType, attrs ...stun.Setter) []byte {
	t.Helper()
	m, err := stun.Build(append([]stun.Setter{stun.NewTransactionIDSetter(txid), typ}, attrs...)...)
	if err != nil {
		t.Fatal(err)
	}
	return m.Raw
}

func TestClassify(t *testing.T) {
	req := binding(t)
	id := req.TransactionID
	other := [stun.TransactionIDSize]byte{1, 2, 3}
	success := build(t, id, stun.BindingSuccess, &stun.XORMappedAddress{IP: net.IPv4(192, 0, 2, 1), Port: 4000})
	truncated := success[:len(success)-4]
	for _, c := range []struct {
		name string
		raw  []byte
		want Kind
	}{
		{"empty", nil, Garbage},
		{"not STUN", []byte("GET / HTTP/1.1\r\n\r\n and some more bytes"), Garbage},
		{"truncated", truncated, Garbage},
		{"other transaction", build(t, other, stun.BindingSuccess), OtherTransaction},
		{"our request, echoed", req.Raw, Echo},
		{"indication", build(t, id, stun.NewType(stun.MethodBinding, stun.ClassIndication)), Garbage},
		{"another method", build(t, id, stun.NewType(stun.MethodAllocate, stun.ClassSuccessResponse)), Garbage},
		{"success", success, Answer},
		{"error", build(t, id, stun.BindingError, stun.CodeBadRequest), Answer},
	} {
		m, got := Classify(c.raw, id, stun.MethodBinding)
		if got != c.want {
			t.Errorf("%s: Classify = %v, want %v", c.name, got, c.want)
		}
		if (m == nil) != (got == Garbage) {
			t.Errorf("%s: message %v for kind %v", c.name, m, got)
		}
	}
}

// server is a scripted STUN server on loopback: reply gets each request
// (and its count, from 1) and returns the datagrams to send back.
type server struct {
	pc       net.PacketConn
	requests atomic.Int32
}

func newServer(t *testing.T, reply func(n int, req *stun.Message) [][]byte) *server {
	t.Helper()
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &server{pc: pc}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, MaxMessage)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			m := &stun.Message{Raw: append([]byte(nil), buf[:n]...)}
			if m.Decode() != nil {
				continue
			}
			k := int(s.requests.Add(1))
			for _, b := range reply(k, m) {
				_, _ = pc.WriteTo(b, from)
			}
		}
	}()
	t.Cleanup(func() { _ = pc.Close(); <-done })
	return s
}

func (s *server) addr() netip.AddrPort { return netaddr.AddrPort(s.pc.LocalAddr()) }

func client(t *testing.T) net.PacketConn {
	t.Helper()
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pc.Close() })
	return pc
}

func success(t testing.TB, req *stun.Message) []byte {
	return build(t, req.TransactionID, stun.BindingSuccess, &stun.XORMappedAddress{IP: net.IPv4(198, 51, 100, 7), Port: 1234})
}

// fast is a schedule for tests: many quick retransmissions, so a lost
// request costs little; nothing asserts on time.
var fast = Schedule{RTO: 5 * ms, Rc: 20, Rm: 4}

func TestDoRetransmitsUntilAnswered(t *testing.T) {
	testutil.CheckLeaks(t)
	// The server ignores the first two transmissions.
	s := newServer(t, func(n int, req *stun.Message) [][]byte {
		if n < 3 {
			return nil
		}
		return [][]byte{success(t, req)}
	})
	req := binding(t)
	r, st, err := Do(t.Context(), client(t), s.addr(), req, fast, nil)
	if err != nil {
		t.Fatal(err)
	}
	var xa stun.XORMappedAddress
	if err := xa.GetFrom(r.Msg); err != nil || xa.Port != 1234 {
		t.Errorf("answer %v: %v", xa, err)
	}
	if r.From != s.addr() {
		t.Errorf("answer from %v, want %v", r.From, s.addr())
	}
	if st.Sent < 3 {
		t.Errorf("answered after %d transmissions, want at least 3", st.Sent)
	}
}

func TestDoSkipsMalformedAndOtherTransactions(t *testing.T) {
	testutil.CheckLeaks(t)
	other := [stun.TransactionIDSize]byte{9, 9, 9}
	s := newServer(t, func(n int, req *stun.Message) [][]byte {
		if n > 1 {
			return nil // one answer set is enough
		}
		ok := success(t, req)
		return [][]byte{
			[]byte("not stun at all"),
			ok[:len(ok)-3], // truncated
			build(t, other, stun.BindingSuccess),
			req.Raw, // our own request, echoed
			build(t, req.TransactionID, stun.NewType(stun.MethodAllocate, stun.ClassSuccessResponse)),
			ok,
		}
	})
	_, st, err := Do(t.Context(), client(t), s.addr(), binding(t), fast, nil)
	if err != nil {
		t.Fatal(err)
	}
	if st.Garbage != 3 || st.OtherTransaction != 2 || st.WrongSource != 0 {
		t.Errorf("stats %+v, want 3 garbage, 2 other transaction", st)
	}
}

func TestDoErrorResponseIsAnAnswer(t *testing.T) {
	testutil.CheckLeaks(t)
	s := newServer(t, func(_ int, req *stun.Message) [][]byte {
		return [][]byte{build(t, req.TransactionID, stun.BindingError, stun.CodeUnknownAttribute)}
	})
	r, _, err := Do(t.Context(), client(t), s.addr(), binding(t), fast, nil)
	if err != nil {
		t.Fatal(err)
	}
	var ec stun.ErrorCodeAttribute
	if err := ec.GetFrom(r.Msg); err != nil || ec.Code != stun.CodeUnknownAttribute {
		t.Errorf("error code %v, %v", ec.Code, err)
	}
}

func TestDoAcceptFiltersSources(t *testing.T) {
	testutil.CheckLeaks(t)
	s := newServer(t, func(_ int, req *stun.Message) [][]byte { return [][]byte{success(t, req)} })
	elsewhere := netip.MustParseAddrPort("127.0.0.1:9")
	// An answer from the server while only another address is accepted
	// is counted and skipped; the transaction goes on (until cancelled).
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	_, st, err := Do(ctx, client(t), s.addr(), binding(t), Schedule{Rc: -1},
		func(a netip.AddrPort) bool {
			if a != elsewhere {
				cancel()
			}
			return a == elsewhere
		})
	if !errors.Is(err, context.Canceled) || st.WrongSource != 1 {
		t.Fatalf("Do = %+v, %v; want one answer from a wrong source, then the cancel", st, err)
	}
	r, st, err := Do(t.Context(), client(t), s.addr(), binding(t), fast,
		func(a netip.AddrPort) bool { return a == s.addr() })
	if err != nil || r.From != s.addr() || st.WrongSource != 0 {
		t.Fatalf("Do accepting the server = %v, %+v, %v", r.From, st, err)
	}
}

func TestDoTimeout(t *testing.T) {
	testutil.CheckLeaks(t)
	s := newServer(t, func(int, *stun.Message) [][]byte { return nil })
	sched := Schedule{RTO: 2 * ms, Rc: 3, Rm: 2}
	_, st, err := Do(t.Context(), client(t), s.addr(), binding(t), sched, nil)
	if !errors.Is(err, ErrTimeout) {
		t.Fatalf("err %v, want ErrTimeout", err)
	}
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Errorf("ErrTimeout is not a net.Error timeout")
	}
	if st.Sent != 3 {
		t.Errorf("sent %d, want Rc = 3", st.Sent)
	}
	testutil.WaitFor(t, 5*time.Second, "the server to count 3 requests", func() bool { return s.requests.Load() == 3 })
}

func TestDoContext(t *testing.T) {
	testutil.CheckLeaks(t)
	s := newServer(t, func(int, *stun.Message) [][]byte { return nil })
	ctx, cancel := context.WithCancel(t.Context())
	go func() {
		testutil.WaitFor(t, 5*time.Second, "a request", func() bool { return s.requests.Load() > 0 })
		cancel()
	}()
	_, _, err := Do(ctx, client(t), s.addr(), binding(t), Schedule{Rc: -1}, nil)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err %v, want context.Canceled", err)
	}
}

// flakyConn fails its first fails writes.
type flakyConn struct {
	net.PacketConn
	fails int
}

var errNoRoute = errors.New("no route to host")

func (c *flakyConn) WriteTo(b []byte, to net.Addr) (int, error) {
	if c.fails > 0 {
		c.fails--
		return 0, errNoRoute
	}
	return c.PacketConn.WriteTo(b, to)
}

func TestDoSendErrors(t *testing.T) {
	testutil.CheckLeaks(t)
	s := newServer(t, func(_ int, req *stun.Message) [][]byte { return [][]byte{success(t, req)} })
	// A failed send is a lost transmission.
	_, st, err := Do(t.Context(), &flakyConn{client(t), 2}, s.addr(), binding(t), fast, nil)
	if err != nil || st.Sent == 0 {
		t.Fatalf("Do after two failed sends: %+v, %v", st, err)
	}
	// When every send fails, the send error is returned.
	_, _, err = Do(t.Context(), &flakyConn{client(t), 1 << 30}, s.addr(), binding(t), Schedule{RTO: ms, Rc: 3, Rm: 1}, nil)
	var se *SendError
	if !errors.As(err, &se) || !errors.Is(err, errNoRoute) || se.To != s.addr() {
		t.Fatalf("err %v, want a SendError wrapping the socket's", err)
	}
}

func TestAwaitAndResend(t *testing.T) {
	testutil.CheckLeaks(t)
	// Resend from b to a, as a hairpin test does; a awaits the echo.
	a, b := client(t), client(t)
	req := binding(t)
	done := make(chan struct{})
	sent := make(chan int, 1)
	go func() {
		n, _ := Resend(t.Context(), b, netaddr.AddrPort(a.LocalAddr()), req, Schedule{RTO: 5 * ms, Rc: -1}, done)
		sent <- n
	}()
	r, err := Await(t.Context(), a, req, Echo, time.Now().Add(time.Minute))
	close(done)
	if err != nil || r.From != netaddr.AddrPort(b.LocalAddr()) || r.Msg.TransactionID != req.TransactionID {
		t.Fatalf("Await = %v, %v", r, err)
	}
	if n := <-sent; n < 1 {
		t.Errorf("Resend sent %d", n)
	}
	// Nothing more comes: Await ends at its deadline.
	if _, err := Await(t.Context(), a, binding(t), Answer, time.Now().Add(10*ms)); !errors.Is(err, ErrTimeout) {
		t.Errorf("Await of nothing: %v, want ErrTimeout", err)
	}
	// Resend stops after Rc transmissions by itself.
	n, err := Resend(t.Context(), b, netaddr.AddrPort(a.LocalAddr()), req, Schedule{RTO: ms, Rc: 3}, nil)
	if n != 3 || err != nil {
		t.Errorf("Resend with Rc 3 = %d, %v", n, err)
	}
	// A context that ends stops Await.
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := Await(ctx, a, req, Answer, time.Now().Add(time.Minute)); !errors.Is(err, context.Canceled) {
		t.Errorf("Await after cancel: %v", err)
	}
}

// streamPair runs serve on the far end of a pipe.
func streamPair(t *testing.T, serve func(net.Conn)) net.Conn {
	t.Helper()
	c, s := net.Pipe()
	done := make(chan struct{})
	go func() { defer close(done); defer s.Close(); serve(s) }()
	t.Cleanup(func() { _ = c.Close(); <-done })
	return c
}

func readRequest(c net.Conn) *stun.Message {
	buf := make([]byte, MaxMessage)
	n, err := c.Read(buf)
	if err != nil {
		return nil
	}
	m := &stun.Message{Raw: buf[:n]}
	if m.Decode() != nil {
		return nil
	}
	return m
}

func TestDoStream(t *testing.T) {
	testutil.CheckLeaks(t)
	req := binding(t)
	c := streamPair(t, func(s net.Conn) {
		if m := readRequest(s); m != nil {
			_, _ = s.Write(build(t, [stun.TransactionIDSize]byte{7}, stun.BindingSuccess))
			_, _ = s.Write(success(t, m))
		}
	})
	m, err := DoStream(t.Context(), c, req, time.Minute)
	if err != nil || m.TransactionID != req.TransactionID {
		t.Fatalf("DoStream = %v, %v", m, err)
	}

	c = streamPair(t, func(s net.Conn) {
		if readRequest(s) != nil {
			_, _ = s.Write([]byte("HTTP/1.1 400 Bad Request\r\n\r\n"))
		}
	})
	if _, err := DoStream(t.Context(), c, binding(t), time.Minute); !errors.Is(err, ErrNotSTUN) {
		t.Errorf("DoStream on HTTP: %v, want ErrNotSTUN", err)
	}

	c = streamPair(t, func(s net.Conn) {
		readRequest(s)
		_, _ = s.Read(make([]byte, 1)) // silent until closed
	})
	if _, err := DoStream(t.Context(), c, binding(t), 10*ms); !errors.Is(err, ErrTimeout) {
		t.Errorf("DoStream to a silent peer: %v, want ErrTimeout", err)
	}
}

// FuzzClassify: no input panics, and whatever is an answer carries the
// transaction's ID and method.
func FuzzClassify(f *testing.F) {
	req := binding(f)
	f.Add(req.Raw)
	f.Add(success(f, req))
	f.Add(build(f, req.TransactionID, stun.BindingError, stun.CodeBadRequest))
	f.Add([]byte{0, 1, 0, 0, 0x21, 0x12, 0xa4, 0x42})
	f.Fuzz(func(t *testing.T, raw []byte) {
		m, kind := Classify(raw, req.TransactionID, stun.MethodBinding)
		if kind == Answer && (m.TransactionID != req.TransactionID || m.Type.Method != stun.MethodBinding) {
			t.Fatalf("answer %v for another transaction", m)
		}
	})
}

func TestPoll(t *testing.T) {
	testutil.CheckLeaks(t)
	// The server is "starting": it ignores the first three requests.
	s := newServer(t, func(n int, req *stun.Message) [][]byte {
		if n <= 3 {
			return nil
		}
		return [][]byte{success(t, req)}
	})
	if err := Poll(t.Context(), client(t), s.addr(), ms); err != nil {
		t.Fatal(err)
	}
	if n := s.requests.Load(); n < 4 {
		t.Errorf("answered after %d requests, want 4", n)
	}
	// A server that never answers: Poll ends with its context.
	mute := newServer(t, func(int, *stun.Message) [][]byte { return nil })
	ctx, cancel := context.WithCancel(t.Context())
	go func() {
		testutil.WaitFor(t, 5*time.Second, "two requests", func() bool { return mute.requests.Load() >= 2 })
		cancel()
	}()
	if err := Poll(ctx, client(t), mute.addr(), ms); !errors.Is(err, context.Canceled) {
		t.Errorf("Poll of a mute server: %v, want context.Canceled", err)
	}
}
