package sdk

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/pion/stun/v4"

	"github.com/ferrynet/ferry/dht"
	"github.com/ferrynet/ferry/dht/kbucket"
	"github.com/ferrynet/ferry/internal/natprobe"
	"github.com/ferrynet/ferry/internal/nattype"
	"github.com/ferrynet/ferry/internal/netaddr"
	"github.com/ferrynet/ferry/internal/stunclient"
)

// This file decides whether a node's DHT part is a server (it stores
// records for others and asks them to keep it in their routing tables) or
// a client, with an RFC 5780 probe against the node's rendezvous STUN
// server, and lets server nodes find each other. See DESIGN.md,
// "Reachability: DHT server or client".

// DHTMode says whether a node's DHT part serves other nodes.
type DHTMode int

// DHT modes. The zero value, DHTAuto, decides with a reachability probe.
const (
	// DHTAuto probes the node's NAT at StartDiscovery: a node with no NAT
	// and no filtering, or behind a full cone (endpoint-independent
	// mapping and filtering), becomes a server; any other result, or a
	// probe that fails, makes it a client.
	DHTAuto DHTMode = iota
	// DHTClient looks up and publishes but serves nobody's records and
	// asks others not to add it to their tables.
	DHTClient
	// DHTServer serves: it stores records for others (within the store's
	// limits) and others keep it in their routing tables.
	DHTServer
)

func (m DHTMode) String() string {
	switch m {
	case DHTAuto:
		return "auto"
	case DHTClient:
		return "client"
	case DHTServer:
		return "server"
	}
	return "DHTMode(" + strconv.Itoa(int(m)) + ")"
}

// Reachability probe bounds: one STUN transaction is resent after 250 ms,
// 500 ms... and given up after reachProbeTimeout; the tests that expect no
// answer behind a filtering NAT run in parallel, so the probe takes about
// reachProbeTimeout there and one round trip (a few) where everything
// answers.
const (
	reachProbeRTO     = 250 * time.Millisecond
	reachProbeTimeout = 2 * time.Second
)

// DHTServersTopic is the topic DHT server nodes announce themselves under,
// so that other nodes (whose rendezvous server cannot hand out contacts it
// cannot reach over Ferry) find some at StartDiscovery. Discovery.Lookup
// of it lists (a sample of) the server nodes.
const DHTServersTopic = "ferry/dht-servers/1"

// maxServerSeeds bounds the server nodes a node pings from that topic.
const maxServerSeeds = 8

// reachProbeFunc runs the reachability probe; tests replace it through
// DiscoveryOptions.probe.
type reachProbeFunc func(ctx context.Context) (*natprobe.Result, error)

// dhtModeDecision is StartDiscovery's choice and why.
type dhtModeDecision struct {
	mode   DHTMode // DHTClient or DHTServer
	reason string
}

// decideDHTMode resolves mode: forced modes stand; DHTAuto probes.
func (n *Node) decideDHTMode(ctx context.Context, o DiscoveryOptions) (dhtModeDecision, error) {
	switch o.DHTMode {
	case DHTClient:
		return dhtModeDecision{DHTClient, "forced by DiscoveryOptions.DHTMode"}, nil
	case DHTServer:
		return dhtModeDecision{DHTServer, "forced by DiscoveryOptions.DHTMode"}, nil
	case DHTAuto:
	default:
		return dhtModeDecision{}, fmt.Errorf("sdk: unknown DHT mode %d", int(o.DHTMode))
	}
	probe := o.probe
	if probe == nil {
		probe = n.reachProbe
	}
	res, err := probe(ctx)
	return reachVerdict(res, err), nil
}

// reachVerdict turns a probe result into a mode: only a node that anyone
// can send to after it sent once (no NAT and no filtering, or a full cone)
// is a server.
func reachVerdict(res *natprobe.Result, err error) dhtModeDecision {
	client := func(why string) dhtModeDecision { return dhtModeDecision{DHTClient, why} }
	switch {
	case errors.Is(err, errNoRFC5780):
		return client("reachability unknown: " + err.Error())
	case err != nil:
		return client("reachability probe failed: " + err.Error())
	case res == nil:
		return client("reachability probe gave no result")
	case res.Mode != "rfc5780":
		return client(fmt.Sprintf("the STUN server %s cannot tell (probe mode %q, no RFC 5780 OTHER-ADDRESS)", res.Server, res.Mode))
	case res.Filtering != nattype.EndpointIndependent:
		return client(fmt.Sprintf("%s: filtering %s", res.NATType, res.Filtering))
	case res.Mapping == nattype.NoNAT:
		return dhtModeDecision{DHTServer, "no NAT and no filtering (" + res.NATType + ")"}
	case res.Mapping == nattype.EndpointIndependent:
		return dhtModeDecision{DHTServer, "endpoint-independent mapping and filtering (" + res.NATType + ")"}
	}
	return client(fmt.Sprintf("%s: mapping %s", res.NATType, res.Mapping))
}

// reachProbe runs natprobe against the first STUN server of the node's
// rendezvous, over the node's network.
func (n *Node) reachProbe(ctx context.Context) (*natprobe.Result, error) {
	cr, err := n.credentials(ctx)
	if err != nil {
		return nil, err
	}
	if len(cr.STUNURLs) == 0 {
		return nil, errors.New("the rendezvous server names no STUN server")
	}
	uri, err := stun.ParseURI(cr.STUNURLs[0])
	if err != nil {
		return nil, fmt.Errorf("STUN URL %q: %w", cr.STUNURLs[0], err)
	}
	cfg := natprobe.Config{
		Server:  net.JoinHostPort(uri.Host, strconv.Itoa(uri.Port)),
		RTO:     reachProbeRTO,
		Timeout: reachProbeTimeout,
		Logger:  n.log.With("component", "reachprobe"),
	}
	if nw := n.cfg.node.icenet; nw != nil {
		cfg.ListenPacket = func(_ context.Context, network, address string) (net.PacketConn, error) {
			return nw.ListenPacket(network, address)
		}
		cfg.Dial = func(_ context.Context, network, address string) (net.Conn, error) {
			return nw.Dial(network, address)
		}
	} else {
		var lc net.ListenConfig
		var d net.Dialer
		cfg.ListenPacket, cfg.Dial = lc.ListenPacket, d.DialContext
	}
	// Most rendezvous servers serve STUN on one address: one Binding
	// tells, and spares the full probe (whose hairpin test alone waits
	// out its timeout behind most NATs).
	if err := n.checkRFC5780(ctx, cfg); err != nil {
		return nil, err
	}
	return natprobe.Probe(ctx, cfg)
}

// errNoRFC5780 reports a STUN server that cannot run the probe's tests.
var errNoRFC5780 = errors.New("no RFC 5780 OTHER-ADDRESS")

// checkRFC5780 sends one Binding request to the probe's server and
// returns errNoRFC5780 unless the answer names an other address that
// differs in address and port.
func (n *Node) checkRFC5780(ctx context.Context, cfg natprobe.Config) error {
	var raddr *net.UDPAddr
	var err error
	if nw := n.cfg.node.icenet; nw != nil {
		raddr, err = nw.ResolveUDPAddr("udp4", cfg.Server)
	} else {
		raddr, err = net.ResolveUDPAddr("udp4", cfg.Server)
	}
	if err != nil {
		return fmt.Errorf("STUN server %s: %w", cfg.Server, err)
	}
	pc, err := cfg.ListenPacket(ctx, "udp4", ":0")
	if err != nil {
		return err
	}
	defer pc.Close()
	req, err := stun.Build(stun.TransactionID, stun.BindingRequest)
	if err != nil {
		return err
	}
	server := netaddr.AddrPort(raddr)
	r, _, err := stunclient.Do(ctx, pc, server, req, reachCheckSchedule, func(from netip.AddrPort) bool { return from == server })
	if err != nil {
		return fmt.Errorf("STUN server %s: %w", server, err)
	}
	var other stun.OtherAddress
	if err := other.GetFrom(r.Msg); err != nil {
		return fmt.Errorf("STUN server %s: %w", server, errNoRFC5780)
	}
	o, ok := netip.AddrFromSlice(other.IP)
	if !ok || o.Unmap() == server.Addr() || other.Port == int(server.Port()) {
		return fmt.Errorf("STUN server %s: OTHER-ADDRESS %s does not differ in address and port: %w", server, other, errNoRFC5780)
	}
	return nil
}

// reachCheckSchedule is checkRFC5780's transaction: the probe's RTO and
// timeout.
var reachCheckSchedule = stunclient.Schedule{RTO: reachProbeRTO, Rc: 4, Rm: 1, Timeout: reachProbeTimeout}

// reachTransport is the transport a Discovery's dht.Node uses: the
// node's DHTTransport, except that requests to the rendezvous server's
// DHT node never say "server". The rendezvous reaches its peers over
// signaling only, so it could not ping a server node back; as its peer
// the node keeps the rendezvous acting as its proxy into the DHT of
// servers (which speak no Ferry sessions).
type reachTransport struct{ *DHTTransport }

func (t reachTransport) Request(ctx context.Context, to kbucket.Contact, req dht.Request) (dht.Message, error) {
	t.mu.Lock()
	rv := !t.rvNode.IsZero() && to.ID == t.rvNode
	t.mu.Unlock()
	if rv {
		req = asPeerRequest(req)
	}
	return t.DHTTransport.Request(ctx, to, req)
}

// asPeerRequest returns req without its Server flag.
func asPeerRequest(req dht.Request) dht.Request {
	switch m := req.(type) {
	case *dht.Ping:
		c := *m
		c.Server = false
		return &c
	case *dht.FindNode:
		c := *m
		c.Server = false
		return &c
	case *dht.Get:
		c := *m
		c.Server = false
		return &c
	case *dht.Put:
		c := *m
		c.Server = false
		return &c
	}
	return req
}

// reachState is a Discovery's server-finding work in the background.
type reachState struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

func (r *reachState) stop() {
	if r != nil {
		r.cancel()
		r.wg.Wait()
	}
}

// startServerSeeds announces a server node under DHTServersTopic and, in
// every mode, pings up to maxServerSeeds server nodes announced there, in
// the background, so they enter the routing table (a lookup then asks them
// as well as the rendezvous server).
func (d *Discovery) startServerSeeds() {
	ctx, cancel := context.WithCancel(d.n.ctx)
	d.reach = &reachState{cancel: cancel}
	d.reach.wg.Go(func() {
		if d.mode.mode == DHTServer {
			if _, err := d.d.Announce(ctx, DHTServersTopic, d.urls, d.o.Addrs); err != nil && ctx.Err() == nil {
				d.n.log.Info("could not announce this node as a DHT server", "err", err)
			}
		}
		recs, err := d.d.Peers(ctx, DHTServersTopic)
		if err != nil && ctx.Err() == nil {
			d.n.log.Debug("DHT server lookup failed", "err", err)
		}
		var seeds []kbucket.Contact
		for _, r := range recs {
			if id := r.PeerID(); id != d.n.PeerID() && len(seeds) < maxServerSeeds {
				seeds = append(seeds, kbucket.Contact{ID: id})
			}
		}
		if len(seeds) == 0 {
			return
		}
		if err := d.d.Bootstrap(ctx, seeds); err != nil && ctx.Err() == nil {
			d.n.log.Debug("joining through DHT server nodes failed", "servers", len(seeds), "err", err)
		} else {
			d.n.log.Debug("joined through DHT server nodes", "servers", len(seeds))
		}
	})
}

// Mode returns the DHT mode StartDiscovery chose, DHTClient or DHTServer.
func (d *Discovery) Mode() DHTMode { return d.mode.mode }

// ModeReason says why StartDiscovery chose Mode (the probe's verdict, or
// that the mode was forced).
func (d *Discovery) ModeReason() string { return d.mode.reason }

// Contacts returns the DHT routing table's contacts (the rendezvous
// server's node and the server nodes this node learned).
func (d *Discovery) Contacts() []PeerID {
	cs := d.d.Contacts()
	out := make([]PeerID, 0, len(cs))
	for _, c := range cs {
		out = append(out, c.ID)
	}
	return out
}
