package natprobe

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sort"
	"sync"
	"time"

	"github.com/ferrynet/ferry/internal/nattype"
	"github.com/ferrynet/ferry/internal/netaddr"
	"github.com/ferrynet/ferry/internal/stunclient"
)

// prober holds one probe's state. Tests run concurrently, each on its own
// sockets, and report through record and note.
type prober struct {
	cfg     Config
	rto     time.Duration
	timeout time.Duration
	log     *slog.Logger
	network string // udp4 or udp6
	local   netip.Addr

	mu    sync.Mutex
	tests []orderedTest
	notes []string
}

type orderedTest struct {
	order int
	Test
}

// Test order in the report.
const (
	ordMapping1 = iota
	ordMapping2
	ordMapping3
	ordFilter2a
	ordFilter2
	ordFilter3a
	ordFilter3
	ordHairpin1
	ordHairpin
	ordLifetime
	ordAlloc
	ordSTUNTCP
)

func (p *prober) record(order int, t Test) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.tests = append(p.tests, orderedTest{order, t})
	p.log.Debug("test", "name", t.Name, "to", t.To, "response", t.Response, "from", t.From, "mapped", t.Mapped, "detail", t.Detail)
}

func (p *prober) note(format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.notes = append(p.notes, fmt.Sprintf(format, args...))
}

func (p *prober) listen(ctx context.Context) (net.PacketConn, error) {
	pc, err := p.cfg.ListenPacket(ctx, p.network, net.JoinHostPort(p.local.String(), "0"))
	if err != nil {
		return nil, fmt.Errorf("natprobe: open UDP socket: %w", err)
	}
	return pc, nil
}

// exactly accepts responses from one address.
func exactly(want netip.AddrPort) func(netip.AddrPort) bool {
	return func(got netip.AddrPort) bool { return got == want }
}

// run is one recorded Binding transaction over UDP.
func (p *prober) run(ctx context.Context, order int, name string, pc net.PacketConn, to netip.AddrPort,
	req request, accept func(netip.AddrPort) bool,
) (response, ignored, error) {
	r, ig, err := p.transact(ctx, pc, to, req, accept)
	t := Test{Name: name, Socket: netaddr.AddrPort(pc.LocalAddr()).String(), To: to.String(), Response: err == nil}
	if err == nil {
		t.From, t.Mapped = r.from.String(), r.xorMapped.String()
	} else {
		t.Detail = err.Error()
	}
	if s := ig.String(); s != "" {
		t.Detail = joinDetail(t.Detail, s)
	}
	p.record(order, t)
	return r, ig, err
}

func joinDetail(a, b string) string {
	if a == "" {
		return b
	}
	return a + "; " + b
}

// Probe runs the tests and returns what it found. Tests that cannot
// conclude leave their fields "unknown" and say why in Notes; Probe returns
// an error only when the configuration is bad (ErrConfig), the network
// fails (a socket cannot be opened, the name does not resolve), or nothing
// reaches the server (ErrServerUnreachable, with the partial Result).
//
// The whole probe takes a little more than Config.Timeout (plus
// Config.Lifetime when set): tests that wait for an answer that may not
// come run in parallel.
func Probe(ctx context.Context, cfg Config) (*Result, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	p := &prober{cfg: cfg, rto: cfg.rto(), timeout: cfg.timeout(), log: cfg.logger()}
	if p.rto > p.timeout {
		p.rto = p.timeout
	}
	server, err := p.resolve(ctx)
	if err != nil {
		return nil, err
	}
	res := &Result{
		Server:    server.String(),
		Mapping:   nattype.Unknown,
		Filtering: nattype.Unknown,
		Tests:     []Test{},
	}
	defer p.finish(res)

	p.network = "udp4"
	if server.Addr().Is6() {
		p.network = "udp6"
	}
	if p.local = cfg.LocalAddr; !p.local.IsValid() {
		// Learn the local address the system routes to the server from;
		// a connected UDP socket sends nothing.
		c, derr := cfg.Dial(ctx, p.network, server.String())
		if derr != nil {
			return res, fmt.Errorf("natprobe: no route to %s: %w", server, derr)
		}
		p.local = netaddr.AddrPort(c.LocalAddr()).Addr()
		c.Close()
	}

	// Mapping test I, on the socket whose mapping the other mapping tests
	// compare against.
	m, err := p.listen(ctx)
	if err != nil {
		return res, err
	}
	defer m.Close()
	local := netaddr.AddrPort(m.LocalAddr())
	res.LocalAddr = local.String()
	r1, _, err := p.run(ctx, ordMapping1, "mapping test I (primary address)", m, server, request{}, exactly(server))
	switch {
	case errors.Is(err, ErrNoResponse):
		return res, p.udpBlocked(ctx, res, server)
	case err != nil:
		return res, err
	}
	res.PublicAddr = r1.xorMapped.String()
	res.PortPreserved = r1.xorMapped.Port() == local.Port()
	if r1.mapped.IsValid() && r1.mapped != r1.xorMapped {
		res.ALGDetected = true
		p.note("MAPPED-ADDRESS %s differs from XOR-MAPPED-ADDRESS %s: a middlebox (ALG) rewrites addresses inside packets", r1.mapped, r1.xorMapped)
	}
	noNAT := r1.xorMapped == local
	if noNAT {
		res.Mapping = nattype.NoNAT
	}

	other := r1.other
	switch {
	case !other.IsValid():
		p.note("the server does not support RFC 5780 (its answer has no OTHER-ADDRESS): basic mode, only the public address and hints from one server; mapping and filtering need an RFC 5780 server")
	case other.Addr() == server.Addr() || other.Port() == server.Port():
		p.note("the server's OTHER-ADDRESS %s does not differ from %s in both address and port: basic mode", other, server)
		other = netip.AddrPort{}
	}
	res.Mode = "basic"
	if other.IsValid() {
		res.Mode, res.RFC5780, res.OtherAddr = "rfc5780", true, other.String()
	}

	var wg sync.WaitGroup
	var mu sync.Mutex // guards res fields set below
	set := func(f func()) { mu.Lock(); f(); mu.Unlock() }
	if other.IsValid() && !noNAT {
		wg.Go(func() {
			b := p.mappingTests(ctx, m, r1, server, other)
			set(func() { res.Mapping = b })
		})
	}
	if other.IsValid() {
		wg.Go(func() {
			b := p.filteringTests(ctx, server, other)
			set(func() { res.Filtering = b })
		})
	}
	wg.Go(func() {
		b := p.hairpinTest(ctx, server)
		set(func() { res.Hairpinning = b })
	})
	if cfg.Lifetime > 0 {
		wg.Go(func() {
			lt := p.lifetimeTest(ctx, server)
			set(func() { res.MappingLifetime = lt })
		})
	}
	if len(cfg.TURN) > 0 {
		wg.Go(func() {
			tc := p.turnChecks(ctx)
			set(func() { res.TURN = tc })
		})
	}
	if !noNAT {
		wg.Go(func() {
			pa := p.allocationTest(ctx, server)
			set(func() { res.PortAllocation = pa })
		})
	}
	gw := cfg.Gateway
	if !gw.IsValid() && cfg.AutoGateway && !server.Addr().IsLoopback() {
		var gerr error
		if gw, gerr = FindGateway(server.Addr()); gerr != nil {
			p.note("port mapping not checked: %v", gerr)
		}
	}
	if gw.IsValid() {
		wg.Go(func() {
			pm := p.portMappingTest(ctx, gw)
			set(func() { res.PortMapping = pm })
		})
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return res, err
	}
	if res.Mapping == nattype.Unknown && res.Mode == "basic" {
		if res.PortPreserved {
			p.note("hint: the NAT kept the local port, as most endpoint-independent (cone) NATs do")
		} else {
			p.note("hint: the NAT changed the local port; symmetric NATs do, but so do some cone NATs")
		}
	}
	return res, nil
}

// finish copies the recorded tests and notes into res and sets the verdict.
func (p *prober) finish(res *Result) {
	p.mu.Lock()
	defer p.mu.Unlock()
	sort.SliceStable(p.tests, func(i, j int) bool { return p.tests[i].order < p.tests[j].order })
	res.Tests = res.Tests[:0]
	for _, t := range p.tests {
		res.Tests = append(res.Tests, t.Test)
	}
	res.Notes = append(res.Notes, p.notes...)
	res.fillVerdict()
}

func (p *prober) resolve(ctx context.Context) (netip.AddrPort, error) {
	host, port, err := splitHostPort(p.cfg.Server, DefaultPort)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("%w: server %q: %w", ErrConfig, p.cfg.Server, err)
	}
	addrs, err := p.cfg.lookup(ctx, host)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("natprobe: resolve %s: %w", host, err)
	}
	var pick netip.Addr
	for _, a := range addrs {
		a = a.Unmap()
		if a.Is4() {
			pick = a
			break
		}
		if !pick.IsValid() {
			pick = a
		}
	}
	if !pick.IsValid() {
		return netip.AddrPort{}, fmt.Errorf("natprobe: resolve %s: no addresses", host)
	}
	return netip.AddrPortFrom(pick, uint16(port)), nil
}

// mappingTests runs mapping tests II and III (RFC 5780 section 4.3) on the
// socket of test I.
func (p *prober) mappingTests(ctx context.Context, m net.PacketConn, r1 response, server, other netip.AddrPort) nattype.Behaviour {
	to2 := netip.AddrPortFrom(other.Addr(), server.Port())
	r2, _, err := p.run(ctx, ordMapping2, "mapping test II (alternate address, primary port)", m, to2, request{}, exactly(to2))
	if err != nil {
		p.note("mapping test II got no answer from %s: mapping behaviour unknown", to2)
		return nattype.Unknown
	}
	if r2.xorMapped == r1.xorMapped {
		return nattype.EndpointIndependent
	}
	r3, _, err := p.run(ctx, ordMapping3, "mapping test III (alternate address and port)", m, other, request{}, exactly(other))
	if err != nil {
		p.note("mapping test III got no answer from %s: mapping is address-dependent or address-and-port-dependent", other)
		return nattype.Unknown
	}
	if r3.xorMapped == r2.xorMapped {
		return nattype.AddressDependent
	}
	return nattype.AddressAndPortDependent
}

// filteringTests runs filtering tests II and III (RFC 5780 section 4.4),
// each on a fresh socket after its own test I, in parallel.
func (p *prober) filteringTests(ctx context.Context, server, other netip.AddrPort) nattype.Behaviour {
	type outcome struct {
		ok, known bool
		wrongSrc  int
	}
	one := func(orderI, order int, name string, req request, from netip.AddrPort) outcome {
		pc, err := p.listen(ctx)
		if err != nil {
			p.note("%v", err)
			return outcome{}
		}
		defer pc.Close()
		if _, _, err = p.run(ctx, orderI, name+": test I first", pc, server, request{}, exactly(server)); err != nil {
			return outcome{}
		}
		_, ig, err := p.run(ctx, order, name, pc, server, req, exactly(from))
		return outcome{ok: err == nil, known: err == nil || errors.Is(err, ErrNoResponse), wrongSrc: ig.wrongSource}
	}
	var t2, t3 outcome
	var wg sync.WaitGroup
	wg.Go(func() {
		t2 = one(ordFilter2a, ordFilter2, "filtering test II (change IP and port)", request{changeIP: true, changePort: true}, other)
	})
	wg.Go(func() {
		t3 = one(ordFilter3a, ordFilter3, "filtering test III (change port)", request{changePort: true},
			netip.AddrPortFrom(server.Addr(), other.Port()))
	})
	wg.Wait()
	switch {
	case t2.wrongSrc > 0 || t3.wrongSrc > 0:
		p.note("the server answered CHANGE-REQUEST from the wrong address: it does not implement RFC 5780 correctly, so filtering is unknown")
		return nattype.Unknown
	case t2.ok:
		return nattype.EndpointIndependent
	case !t2.known:
		p.note("filtering test II could not run (no answer to its test I): filtering unknown")
		return nattype.Unknown
	case t3.ok:
		return nattype.AddressDependent
	case !t3.known:
		p.note("filtering test III could not run (no answer to its test I): filtering unknown")
		return nattype.Unknown
	}
	return nattype.AddressAndPortDependent
}

// hairpinTest (RFC 5780 section 4.5): a second socket sends a Binding
// request to the first socket's public address; hairpinning works if the
// first socket receives it.
func (p *prober) hairpinTest(ctx context.Context, server netip.AddrPort) bool {
	h1, err := p.listen(ctx)
	if err != nil {
		p.note("%v", err)
		return false
	}
	defer h1.Close()
	r, _, err := p.run(ctx, ordHairpin1, "hairpin: learn the first socket's public address", h1, server, request{}, exactly(server))
	if err != nil {
		p.note("hairpinning unknown: no answer to the server for its first socket")
		return false
	}
	h2, err := p.listen(ctx)
	if err != nil {
		p.note("%v", err)
		return false
	}
	defer h2.Close()
	m, err := request{}.build()
	if err != nil {
		return false
	}
	deadline := time.Now().Add(p.timeout)
	got := make(chan bool, 1)
	go func() { got <- waitRequest(ctx, h1, m, deadline) }()
	// Retransmit like a transaction until the first socket sees it.
	done := make(chan struct{})
	sendErr := make(chan error, 1)
	go func() {
		_, err := stunclient.Resend(ctx, h2, r.xorMapped, m, p.schedule(), done)
		sendErr <- err
	}()
	ok := <-got
	close(done)
	if err := <-sendErr; err != nil {
		p.note("hairpin test: send to %s: %v", r.xorMapped, err)
	}
	p.record(ordHairpin, Test{
		Name: "hairpin (second socket to the first one's public address)", Socket: netaddr.AddrPort(h2.LocalAddr()).String(),
		To: r.xorMapped.String(), Response: ok,
	})
	return ok
}

// udpBlocked finishes a probe whose UDP test I got no answer: it checks
// STUN over TCP and the TURN servers, to tell "UDP blocked" from "server
// unreachable".
func (p *prober) udpBlocked(ctx context.Context, res *Result, server netip.AddrPort) error {
	res.UDPBlocked, res.Mode = true, "udp-blocked"
	var wg sync.WaitGroup
	var tcp *response
	wg.Go(func() {
		c, err := p.cfg.Dial(ctx, "tcp", server.String())
		t := Test{Name: "STUN Binding over TCP", To: server.String()}
		if err == nil {
			defer c.Close()
			t.Socket = netaddr.AddrPort(c.LocalAddr()).String()
			var r response
			if r, err = p.streamBinding(ctx, c); err == nil {
				tcp = &r
				t.Response, t.From, t.Mapped = true, r.from.String(), r.xorMapped.String()
			}
		}
		if err != nil {
			t.Detail = err.Error()
		}
		p.record(ordSTUNTCP, t)
	})
	if len(p.cfg.TURN) > 0 {
		wg.Go(func() { res.TURN = p.turnChecks(ctx) })
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return err
	}
	ok := tcp != nil
	res.STUNOverTCP = &ok
	turnOK := false
	for _, t := range res.TURN {
		turnOK = turnOK || t.Reachable
	}
	switch {
	case ok:
		res.PublicAddr = tcp.xorMapped.String()
		p.note("no answer over UDP, but the server answered over TCP: UDP is blocked on this network; Ferry needs a TURN relay over TCP or TLS here")
	case turnOK:
		p.note("no answer from the STUN server over UDP or TCP, but a TURN server answered over TCP/TLS: UDP is most likely blocked")
	default:
		res.Mode = "unreachable"
		return fmt.Errorf("%w (%s): UDP is blocked or the server is down", ErrServerUnreachable, server)
	}
	return nil
}

func (p *prober) streamBinding(ctx context.Context, c net.Conn) (response, error) {
	m, err := request{}.build()
	if err != nil {
		return response{}, err
	}
	return transactStream(ctx, c, m, p.timeout)
}
