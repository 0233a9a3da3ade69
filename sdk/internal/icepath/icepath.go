// Package icepath finds a packet path to a peer with ICE (pion/ice v4) and
// presents it as a net.PacketConn that a QUIC session can run on.
//
// Each side gathers candidates (host, server-reflexive from STUN, relayed
// from TURN over UDP, TCP or TLS), trickles them to the other side through
// whatever signaling the caller has, and runs connectivity checks; the
// dialer is the controlling agent. The selected pair may change later (for
// example relay to direct, with renomination) without the PacketConn above
// it noticing: it always writes to the current pair.
//
// The package knows nothing about signaling or sessions: the SDK wires it to
// the rendezvous client and to quic-go.
package icepath

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/stun/v4"
	"github.com/pion/transport/v5"
	"github.com/pion/transport/v5/stdnet"

	"github.com/ferrynet/ferry/internal/pionlog"
)

// Policy says which candidates a path may use.
type Policy int

// Relay policies.
const (
	// PolicyAuto uses direct paths when they work and relays otherwise.
	PolicyAuto Policy = iota
	// PolicyNever never relays: peers that cannot reach each other fail.
	PolicyNever
	// PolicyAlways only relays (for privacy, or to test the relay path).
	PolicyAlways
)

// TURN is one relay server and its (short-lived) credentials.
type TURN struct {
	// URL is a turn: or turns: URI, e.g. "turn:relay.example:3478?transport=tcp".
	URL      string
	Username string
	Password string
}

// Config configures an Agent.
type Config struct {
	// STUN lists stun: URIs for server-reflexive candidates.
	STUN []string
	// TURN lists relays for relayed candidates.
	TURN []TURN
	// Policy limits the candidates used (default PolicyAuto).
	Policy Policy
	// Net is the network to use; nil means the host's. Tests pass a
	// pion vnet, or a network namespace's sockets.
	Net transport.Net
	// IncludeLoopback gathers loopback host candidates (off by default;
	// useful when both peers share a host).
	IncludeLoopback bool
	// IPFilter, if set, restricts the local addresses used for candidates.
	IPFilter func(net.IP) bool
	// PortMap, if set, is the node's shared socket for UDP host
	// candidates and the gateway's mapping of it, offered as a
	// server-reflexive candidate (portmap.go).
	PortMap *PortMap
	Timing  Timing
	Logger  *slog.Logger
}

// Errors.
var (
	// ErrNoPath reports that no candidate pair worked. The error text lists
	// the candidates gathered on both sides and the pairs checked.
	ErrNoPath = errors.New("icepath: no path to the peer")
	// ErrClosed reports use of a closed agent.
	ErrClosed = errors.New("icepath: agent closed")
)

// An Agent finds one path to one peer.
type Agent struct {
	cfg         Config
	controlling bool
	a           *ice.Agent
	log         *slog.Logger

	upgradeTo atomic.Pointer[pairRef]   // a renomination for the event loop to send
	probeTo   atomic.Pointer[[]pairRef] // a round of probes for the event loop to send
	probes    atomic.Int64              // probe requests handed to the event loop
	relayed   *atomic.Int64             // application bytes through this side's allocations (turnNet)
	changed   chan struct{}             // a remote candidate arrived (cap 1)
	done      chan struct{}             // closed by Close
	wg        sync.WaitGroup            // upgrade, watch
	fb        fallbackState             // fallback.go

	mu           sync.Mutex
	relays       []relayServer // cfg.TURN, parsed
	onChange     func(Info)    // OnPathChange's f
	selectedAt   time.Time     // when the current pair was selected
	upgrades     int           // relay -> direct moves so far
	lastRelayed  bool          // whether the current pair is relayed
	gathered     []string
	remote       []string
	remoteRelays map[string]bool          // addresses of the peer's relayed candidates
	pairs        []ice.CandidatePairStats // last snapshot while connecting
	closed       bool
}

// New creates an agent. controlling is true on the dialing side.
func New(cfg Config, controlling bool) (*Agent, error) {
	cfg.Timing = cfg.Timing.withDefaults()
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	urls := make([]*stun.URI, 0, len(cfg.STUN)+len(cfg.TURN))
	var relays []relayServer
	for _, s := range cfg.STUN {
		u, err := stun.ParseURI(s)
		if err != nil {
			return nil, fmt.Errorf("icepath: STUN URL %q: %w", s, err)
		}
		urls = append(urls, u)
	}
	for _, t := range cfg.TURN {
		u, err := stun.ParseURI(t.URL)
		if err != nil {
			return nil, fmt.Errorf("icepath: TURN URL %q: %w", t.URL, err)
		}
		if u.Scheme != stun.SchemeTypeTURN && u.Scheme != stun.SchemeTypeTURNS {
			return nil, fmt.Errorf("icepath: TURN URL %q: scheme must be turn or turns", t.URL)
		}
		u.Username, u.Password = t.Username, t.Password
		urls = append(urls, u)
		relays = append(relays, newRelayServer(u))
	}
	types := []ice.CandidateType{ice.CandidateTypeHost, ice.CandidateTypeServerReflexive, ice.CandidateTypePeerReflexive, ice.CandidateTypeRelay}
	switch cfg.Policy {
	case PolicyNever:
		types = types[:3]
	case PolicyAlways:
		types = []ice.CandidateType{ice.CandidateTypeRelay}
	}
	t := cfg.Timing
	opts := []ice.AgentOption{
		ice.WithUrls(urls),
		ice.WithNetworkTypes([]ice.NetworkType{ice.NetworkTypeUDP4, ice.NetworkTypeUDP6}),
		ice.WithCandidateTypes(types),
		ice.WithMulticastDNSMode(ice.MulticastDNSModeDisabled),
		ice.WithCheckInterval(t.CheckInterval),
		ice.WithMaxBindingRequests(uint16(min(t.CheckWindow/t.CheckInterval+1, 1000))),
		ice.WithHostAcceptanceMinWait(0),
		ice.WithSrflxAcceptanceMinWait(t.SrflxWait),
		ice.WithPrflxAcceptanceMinWait(t.PrflxWait),
		ice.WithRelayAcceptanceMinWait(t.RelayWait),
		ice.WithSTUNGatherTimeout(t.STUNTimeout),
		ice.WithDisconnectedTimeout(t.DisconnectedTimeout),
		ice.WithFailedTimeout(t.FailedTimeout),
		ice.WithKeepaliveInterval(t.KeepaliveInterval),
		ice.WithLoggerFactory(pionlog.Factory{L: cfg.Logger}),
	}
	// TURN clients speak UDP, TCP or TLS to the relay as each URL says
	// (pion's default when no TURN transport is configured). A turns:
	// relay's certificate is checked against the system roots, which
	// honour SSL_CERT_FILE.
	tn := cfg.Net
	if tn == nil {
		var err error
		if tn, err = stdnet.NewNet(); err != nil {
			return nil, fmt.Errorf("icepath: %w", err)
		}
	}
	relayed := new(atomic.Int64)
	opts = append(opts, ice.WithNet(turnNet{tn, relayed}))
	if cfg.IncludeLoopback {
		opts = append(opts, ice.WithIncludeLoopback())
	}
	if cfg.IPFilter != nil {
		opts = append(opts, ice.WithIPFilter(cfg.IPFilter))
	}
	if cfg.PortMap != nil {
		opts = append(opts, ice.WithUDPMux(cfg.PortMap.forAgent(cfg)))
	}
	// Renomination (both sides must speak it): when a direct pair becomes
	// valid after a relayed one was selected, the controlling side moves
	// the path to it, and the PacketConn above follows without noticing.
	// pion's automatic renomination is on for one thing only: after a pair
	// is selected it keeps checking all the others, which a direct pair
	// that comes up late needs. Its own choice of target is switched off
	// (an interval no connection reaches): it scores pairs by candidate
	// type and RTT, so it would move a working direct path to a relay (a
	// host/relay pair outscores a srflx/prflx one) and would not move a
	// host/relay path to a srflx/prflx direct one. upgrade chooses.
	ag := &Agent{cfg: cfg, controlling: controlling, log: cfg.Logger, done: make(chan struct{}), changed: make(chan struct{}, 1), relays: relays, relayed: relayed}
	opts = append(opts, ice.WithRenomination(ice.DefaultNominationValueGenerator()))
	if controlling {
		opts = append(opts,
			ice.WithAutomaticRenomination(pionRenominationOff),
			ice.WithBindingRequestHandler(ag.onRequest))
	} else {
		opts = append(opts, ice.WithBindingRequestHandler(ag.onRequest))
	}
	a, err := ice.NewAgentWithOptions(opts...)
	if err != nil {
		return nil, fmt.Errorf("icepath: %w", err)
	}
	ag.a = a
	if err := a.OnSelectedCandidatePairChange(ag.selected); err != nil {
		_ = a.Close()
		return nil, fmt.Errorf("icepath: %w", err)
	}
	return ag, nil
}

// Credentials returns the local ICE username fragment and password, to send
// to the peer.
func (ag *Agent) Credentials() (ufrag, pwd string, err error) {
	return ag.a.GetLocalUserCredentials()
}

// Gather starts gathering; onCandidate receives each local candidate in its
// SDP text form, then "" once gathering is complete. It is called from the
// agent's goroutine and must not block for long.
func (ag *Agent) Gather(onCandidate func(cand string)) error {
	offer := newMappedOffer(ag.cfg.PortMap) // nil without a mapping
	emit := func(s string) {
		ag.mu.Lock()
		ag.gathered = append(ag.gathered, s)
		ag.mu.Unlock()
		onCandidate(s)
	}
	if err := ag.a.OnCandidate(func(c ice.Candidate) {
		if c == nil {
			if s := offer.after(nil); s != "" {
				emit(s)
			}
			onCandidate("")
			return
		}
		emit(c.Marshal())
		if s := offer.after(c); s != "" {
			emit(s)
		}
	}); err != nil {
		return err
	}
	return ag.a.GatherCandidates()
}

// AddRemote adds a candidate the peer trickled, in SDP text form.
func (ag *Agent) AddRemote(cand string) error {
	cand = strings.TrimPrefix(cand, "candidate:")
	c, err := ice.UnmarshalCandidate(cand)
	if err != nil {
		return fmt.Errorf("icepath: remote candidate %q: %w", cand, err)
	}
	ag.mu.Lock()
	ag.remote = append(ag.remote, cand)
	if c.Type() == ice.CandidateTypeRelay {
		if ag.remoteRelays == nil {
			ag.remoteRelays = map[string]bool{}
		}
		ag.remoteRelays[candAddr(c)] = true
	}
	ag.mu.Unlock()
	if err := ag.a.AddRemoteCandidate(c); err != nil {
		return err
	}
	select {
	case ag.changed <- struct{}{}:
	default:
	}
	return nil
}

// ConnectError is Connect's error: Err is ErrNoPath, ctx's error or whatever else
// stopped ICE, and Dump what was tried (Diagnose), kept apart so that a
// caller can log it without putting it in every error string.
type ConnectError struct {
	Err  error
	Dump string
}

func (f *ConnectError) Error() string {
	if errors.Is(f.Err, ErrNoPath) {
		return f.Err.Error() + ": " + f.Dump
	}
	return "icepath: " + f.Err.Error() + " (" + f.Dump + ")"
}

// Unwrap returns Err.
func (f *ConnectError) Unwrap() error { return f.Err }

// Connect runs the connectivity checks against the peer's credentials and
// returns the path once a pair is selected. It fails with a *ConnectError: of
// ErrNoPath, naming what was tried, when ICE fails, and of ctx's error when
// ctx ends.
func (ag *Agent) Connect(ctx context.Context, remoteUfrag, remotePwd string) (*PacketConn, error) {
	failed := make(chan struct{})
	var once sync.Once
	if err := ag.a.OnConnectionStateChange(func(s ice.ConnectionState) {
		if s == ice.ConnectionStateFailed {
			once.Do(func() { close(failed) })
		}
	}); err != nil {
		return nil, err
	}
	parent := ctx
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() {
		cancel()
		wg.Wait()
	}()
	wg.Go(func() {
		// pion forgets its checklist when ICE fails: keep a recent copy
		// for Diagnose.
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			ag.snapshotPairs()
			select {
			case <-failed:
				cancel()
				return
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	})
	var (
		c   *ice.Conn
		err error
	)
	if ag.controlling {
		c, err = ag.a.Dial(ctx, remoteUfrag, remotePwd)
	} else {
		c, err = ag.a.Accept(ctx, remoteUfrag, remotePwd)
	}
	if err != nil {
		select {
		case <-failed:
			return nil, &ConnectError{Err: ErrNoPath, Dump: ag.Diagnose()}
		default:
		}
		if perr := parent.Err(); perr != nil {
			err = perr
		}
		return nil, &ConnectError{Err: err, Dump: ag.Diagnose()}
	}
	ag.mu.Lock()
	if !ag.closed {
		ag.startWatchingLocked() // fallback.go: the watcher, and upgrade
	}
	ag.mu.Unlock()
	return newPacketConn(c, ag), nil
}

// Info describes the selected path.
type Info struct {
	Relayed       bool
	LocalType     string // host, srflx, prflx or relay
	RemoteType    string
	LocalAddr     string
	RemoteAddr    string
	LocalProtocol string // udp or tcp (for a relay: udp, tcp, tls or dtls, how we reach the relay)
	RemoteRelayed bool
	// RelayAddr is the relay server's address when Relayed, and
	// RelayProtocol how this side reaches it: the TURN URL's host:port and
	// transport (udp, tcp, tls or dtls) when the relayed candidate is this
	// side's; the peer's allocation on its relay, over udp, when only the
	// peer's candidate is relayed.
	RelayAddr, RelayProtocol string
	// SelectedAt is when the pair was selected (zero before it is), and
	// Upgrades how many times the path moved from a relayed pair to a
	// direct one.
	SelectedAt time.Time
	Upgrades   int
	// RelayBytes counts the application bytes (not ICE checks, not TURN's
	// own messages) that crossed the relay through this side's own
	// allocations since the agent started: both ways over a UDP relay,
	// only those sent over TCP, none over TLS (see turnNet). Packets this
	// side sends straight to the peer's allocation are the peer's count.
	RelayBytes int64
}

// Path returns the selected path, or ok false before one is selected.
func (ag *Agent) Path() (Info, bool) {
	p, err := ag.a.GetSelectedCandidatePair()
	if err != nil || p == nil {
		return Info{}, false
	}
	inf := ag.pairInfo(p.Local, p.Remote)
	ag.mu.Lock()
	inf.SelectedAt, inf.Upgrades = ag.selectedAt, ag.upgrades
	ag.mu.Unlock()
	inf.RelayBytes = ag.relayed.Load()
	if inf.SelectedAt.IsZero() {
		// pion selects the pair before it calls selected; the time is
		// set there within a moment.
		inf.SelectedAt = time.Now()
	}
	return inf, true
}

// selected runs on pion's handler goroutine for each newly selected pair:
// it records when, counts relay -> direct upgrades, and passes the change
// on to OnPathChange's f.
func (ag *Agent) selected(l, r ice.Candidate) {
	inf := ag.pairInfo(l, r)
	ag.mu.Lock()
	if ag.lastRelayed && !inf.Relayed {
		ag.upgrades++
	}
	ag.lastRelayed = inf.Relayed
	ag.selectedAt = time.Now()
	inf.SelectedAt, inf.Upgrades = ag.selectedAt, ag.upgrades
	f := ag.onChange
	ag.mu.Unlock()
	if f != nil {
		f(inf)
	}
	ag.pathSelected(l, r, inf.Relayed) // fallback.go: relayed again, upgrade again
}

// pairInfo describes a pair. A peer-reflexive remote candidate at the
// address of one of the peer's relayed candidates is the relay: pion
// learnt it from a check that came through the relay before the relayed
// candidate itself came through signaling, and a pair selected by then
// keeps the peer-reflexive candidate.
func (ag *Agent) pairInfo(l, r ice.Candidate) Info {
	inf := Info{
		LocalType:     l.Type().String(),
		RemoteType:    r.Type().String(),
		LocalAddr:     net.JoinHostPort(l.Address(), fmt.Sprint(l.Port())),
		RemoteAddr:    net.JoinHostPort(r.Address(), fmt.Sprint(r.Port())),
		LocalProtocol: l.NetworkType().NetworkShort(),
		RemoteRelayed: r.Type() == ice.CandidateTypeRelay,
	}
	if r.Type() == ice.CandidateTypeRelay || r.Type() == ice.CandidateTypePeerReflexive && ag.remoteRelay(r) {
		inf.Relayed, inf.RemoteRelayed = true, true
		inf.RemoteType = ice.CandidateTypeRelay.String()
		inf.RelayAddr, inf.RelayProtocol = inf.RemoteAddr, "udp"
	}
	if l.Type() == ice.CandidateTypeRelay {
		// The candidate's address is the allocation on the relay and its
		// related address the local socket that reaches the relay:
		// neither is the relay server, which the TURN URL names.
		inf.Relayed = true
		proto := "udp"
		if rel, ok := l.(*ice.CandidateRelay); ok {
			proto = rel.RelayProtocol()
		}
		inf.LocalProtocol, inf.RelayProtocol = proto, proto
		inf.RelayAddr = ag.relayFor(l.Address(), proto)
	}
	return inf
}

// relayServer is one TURN URL: where the relay listens and how it is
// reached.
type relayServer struct {
	host, addr, proto string
}

func newRelayServer(u *stun.URI) relayServer {
	proto := "udp"
	switch {
	case u.Scheme == stun.SchemeTypeTURNS && u.Proto == stun.ProtoTypeUDP:
		proto = "dtls"
	case u.Scheme == stun.SchemeTypeTURNS:
		proto = "tls"
	case u.Proto == stun.ProtoTypeTCP:
		proto = "tcp"
	}
	return relayServer{host: u.Host, addr: net.JoinHostPort(u.Host, fmt.Sprint(u.Port)), proto: proto}
}

// relayFor returns the address of the relay server that holds an
// allocation at ip, reached over proto: of the TURN URLs with that
// transport, the one whose host is ip (a relay allocates on its own
// address, as Ferry's relay does), else the only one, else the first. It
// returns ip itself if no URL has that transport (which pion never
// produces).
func (ag *Agent) relayFor(ip, proto string) string {
	var fit []relayServer
	for _, r := range ag.relays {
		if r.proto != proto {
			continue
		}
		if r.host == ip {
			return r.addr
		}
		fit = append(fit, r)
	}
	if len(fit) > 0 {
		return fit[0].addr
	}
	return ip
}

// remoteRelay reports whether c is at the address of a relayed candidate
// the peer signaled.
func (ag *Agent) remoteRelay(c ice.Candidate) bool {
	ag.mu.Lock()
	defer ag.mu.Unlock()
	return ag.remoteRelays[candAddr(c)]
}

func candAddr(c ice.Candidate) string { return net.JoinHostPort(c.Address(), fmt.Sprint(c.Port())) }

// OnPathChange calls f whenever the selected pair changes (the first
// selection included, if it has not happened yet), from pion's handler
// goroutine. It replaces any earlier f.
func (ag *Agent) OnPathChange(f func(Info)) error {
	ag.mu.Lock()
	defer ag.mu.Unlock()
	if ag.closed {
		return ErrClosed
	}
	ag.onChange = f
	return nil
}

// Diagnose describes what the agent gathered and tried, for errors.
func (ag *Agent) Diagnose() string {
	ag.mu.Lock()
	local := append([]string(nil), ag.gathered...)
	remote := append([]string(nil), ag.remote...)
	ag.mu.Unlock()
	var b strings.Builder
	fmt.Fprintf(&b, "local candidates %s; remote candidates %s; pairs checked:", list(local), list(remote))
	stats := ag.a.GetCandidatePairsStats()
	if len(stats) == 0 {
		ag.mu.Lock()
		stats = ag.pairs
		ag.mu.Unlock()
	}
	if len(stats) == 0 {
		b.WriteString(" none")
	}
	for _, s := range stats {
		fmt.Fprintf(&b, " [%s->%s %s, %d requests, %d responses]", s.LocalCandidateID, s.RemoteCandidateID, s.State, s.RequestsSent, s.ResponsesReceived)
	}
	return b.String()
}

func list(cands []string) string {
	if len(cands) == 0 {
		return "(none)"
	}
	short := make([]string, len(cands))
	for i, c := range cands {
		// "foundation component proto priority ip port typ type ..."
		f := strings.Fields(c)
		if len(f) >= 8 {
			short[i] = f[7] + " " + f[2] + " " + net.JoinHostPort(f[4], f[5])
		} else {
			short[i] = c
		}
	}
	return "[" + strings.Join(short, ", ") + "]"
}

func (ag *Agent) snapshotPairs() {
	if st := ag.a.GetCandidatePairsStats(); len(st) > 0 {
		ag.mu.Lock()
		ag.pairs = st
		ag.mu.Unlock()
	}
}

// Close stops the agent and frees its sockets and relay allocations.
func (ag *Agent) Close() error {
	ag.mu.Lock()
	if ag.closed {
		ag.mu.Unlock()
		return nil
	}
	ag.closed = true
	ag.mu.Unlock()
	close(ag.done)
	err := ag.a.Close()
	ag.wg.Wait()
	return err
}
