package sdk

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"time"

	"github.com/ferrynet/ferry/dht"
	"github.com/ferrynet/ferry/dht/kbucket"
)

// DefaultTopicRefresh is how often Topic.Peers looks the topic up again.
const DefaultTopicRefresh = 5 * time.Second

// DiscoveryOptions configures Node.StartDiscovery.
type DiscoveryOptions struct {
	// Addrs are published in the node's record and announcements only if
	// set: by default a record names the rendezvous server alone, for
	// privacy.
	Addrs []netip.AddrPort
	// Transport bounds the DHT's Ferry connections.
	Transport DHTTransportConfig
	// Refresh is how often Topic.Peers looks again; zero means
	// DefaultTopicRefresh.
	Refresh time.Duration
	// DHTMode chooses whether the node serves the DHT (DHTServer) or only
	// uses it (DHTClient); the default, DHTAuto, probes the node's NAT
	// against its rendezvous STUN server (see Discovery.Mode).
	DHTMode DHTMode

	probe reachProbeFunc // tests: replaces the reachability probe
}

// Discovery is a Node's part in the DHT: a dht.Node (a client, or a server
// when reachable: see Mode) that joined through the node's rendezvous
// server and publishes the node's signed peer record (and republishes it
// until Close).
type Discovery struct {
	n       *Node
	tr      *DHTTransport
	d       *dht.Node
	urls    []string
	o       DiscoveryOptions
	mode    dhtModeDecision
	reach   *reachState
	stop    func() bool
	closeMu sync.Once
}

// A PeerInfo is a peer found in the DHT, from its signed record.
type PeerInfo struct {
	ID         PeerID
	Rendezvous []string
	Addrs      []netip.AddrPort
}

// ErrNoDiscovery reports a discovery call on a node without StartDiscovery.
var ErrNoDiscovery = errors.New("sdk: discovery is not started (Node.StartDiscovery)")

// StartDiscovery joins the DHT through the DHT node of the node's
// rendezvous server (ferry-rendezvous --dht) and publishes the node's peer
// record. The node closes it when it closes.
func (n *Node) StartDiscovery(ctx context.Context, o DiscoveryOptions) (_ *Discovery, err error) {
	if o.Refresh < 0 {
		return nil, fmt.Errorf("sdk: negative topic refresh %v", o.Refresh)
	}
	if o.Refresh == 0 {
		o.Refresh = DefaultTopicRefresh
	}
	mode, err := n.decideDHTMode(ctx, o)
	if err != nil {
		return nil, err
	}
	n.log.Info("DHT mode chosen", "mode", mode.mode, "reason", mode.reason)
	tr, err := NewDHTTransport(n, o.Transport)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			_ = tr.Close()
		}
	}()
	dopts := []dht.Option{dht.WithLogger(n.log.With("component", "dht"))}
	if mode.mode != DHTServer {
		dopts = append(dopts, dht.WithClientMode())
	}
	d, err := dht.New(n.id, reachTransport{tr}, dopts...)
	if err != nil {
		return nil, err
	}
	tr.Serve(d.Handle)
	disc := &Discovery{n: n, tr: tr, d: d, urls: []string{n.rv.URL()}, o: o, mode: mode}
	seed, err := tr.Rendezvous(ctx)
	if err == nil {
		err = d.Bootstrap(ctx, []kbucket.Contact{seed})
	}
	if err == nil {
		_, err = d.Publish(ctx, disc.urls, o.Addrs)
	}
	if err != nil {
		_ = d.Close()
		return nil, fmt.Errorf("sdk: start discovery: %w", err)
	}
	if !n.disc.CompareAndSwap(nil, disc) {
		_ = d.Close()
		return nil, errors.New("sdk: discovery is already started")
	}
	// Server nodes are found in the background, within the node's lifetime.
	disc.startServerSeeds() //nolint:contextcheck // see above
	// The node's lifetime, not ctx's: discovery lasts until the node closes.
	disc.stop = context.AfterFunc(n.ctx, func() { _ = disc.Close() }) //nolint:contextcheck // see above
	return disc, nil
}

// FindPeer looks up the signed peer record of id.
func (d *Discovery) FindPeer(ctx context.Context, id PeerID) (PeerInfo, error) {
	r, err := d.d.FindPeer(ctx, id)
	if err != nil {
		return PeerInfo{}, err
	}
	return PeerInfo{ID: r.PeerID(), Rendezvous: r.Rendezvous, Addrs: r.Addrs}, nil
}

// Close stops publishing and leaves the DHT.
func (d *Discovery) Close() error {
	d.closeMu.Do(func() {
		if d.stop != nil {
			d.stop()
		}
		d.n.disc.CompareAndSwap(d, nil)
		d.reach.stop()
		_ = d.d.Close()
		_ = d.tr.Close()
	})
	return nil
}

// A Topic is a node's membership of one topic: announced, and
// re-announced, until Close.
type Topic struct {
	d     *Discovery
	name  string
	done  chan struct{}
	close sync.Once
	gsp   topicGossip // see gossip.go
}

// Join announces the node under topic, through the discovery started with
// StartDiscovery.
func (n *Node) Join(ctx context.Context, topic string) (*Topic, error) {
	d := n.disc.Load()
	if d == nil {
		return nil, ErrNoDiscovery
	}
	if topic == "" {
		return nil, errors.New("sdk: empty topic name")
	}
	if _, err := d.d.Announce(ctx, topic, d.urls, d.o.Addrs); err != nil {
		return nil, fmt.Errorf("sdk: join %q: %w", topic, err)
	}
	return &Topic{d: d, name: topic, done: make(chan struct{})}, nil
}

// Leave stops announcing the node under topic (Topic.Close does too).
func (n *Node) Leave(topic string) {
	if d := n.disc.Load(); d != nil {
		d.d.Leave(topic)
	}
}

// Name returns the topic's name.
func (t *Topic) Name() string { return t.name }

// Peers yields the topic's other peers as they are found, each once,
// looking again every DiscoveryOptions.Refresh. The channel closes when
// ctx ends or the topic is closed.
func (t *Topic) Peers(ctx context.Context) <-chan PeerInfo {
	ch := make(chan PeerInfo)
	go func() {
		defer close(ch)
		seen := map[PeerID]bool{t.d.n.PeerID(): true}
		tick := time.NewTicker(t.d.o.Refresh)
		defer tick.Stop()
		for {
			recs, err := t.d.d.Peers(ctx, t.name)
			if err != nil && ctx.Err() == nil {
				t.d.n.log.Debug("topic lookup failed", "topic", t.name, "err", err)
			}
			for _, r := range recs {
				if seen[r.PeerID()] {
					continue
				}
				seen[r.PeerID()] = true
				select {
				case ch <- PeerInfo{ID: r.PeerID(), Rendezvous: r.Rendezvous, Addrs: r.Addrs}:
				case <-ctx.Done():
					return
				case <-t.done:
					return
				}
			}
			select {
			case <-tick.C:
			case <-ctx.Done():
				return
			case <-t.done:
				return
			}
		}
	}()
	return ch
}

// Close stops announcing the node under the topic and ends its Peers
// channels. Announcements already stored expire with their TTL.
func (t *Topic) Close() error {
	t.close.Do(func() {
		close(t.done)
		t.closeGossip() // see gossip.go
		t.d.d.Leave(t.name)
	})
	return nil
}

// Lookup returns the peers announced under topic now, without joining it.
func (d *Discovery) Lookup(ctx context.Context, topic string) ([]PeerInfo, error) {
	recs, err := d.d.Peers(ctx, topic)
	if err != nil {
		return nil, err
	}
	out := make([]PeerInfo, 0, len(recs))
	for _, r := range recs {
		out = append(out, PeerInfo{ID: r.PeerID(), Rendezvous: r.Rendezvous, Addrs: r.Addrs})
	}
	return out, nil
}
