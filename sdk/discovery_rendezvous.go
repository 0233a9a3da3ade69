package sdk

import (
	"context"
	"errors"
	"fmt"

	"github.com/ferrynet/ferry/dht"
	"github.com/ferrynet/ferry/dht/kbucket"
)

// A rendezvous server that runs a DHT node (ferry-rendezvous --dht) is a
// DHT contact the node reaches over its signaling connection, not over a
// Ferry session: see README.md, "Discovery".

// Rendezvous pings the DHT node of the rendezvous server the node is
// logged in at, over signaling, and returns it as a contact to bootstrap
// through. From then on Request reaches that contact over signaling.
func (t *DHTTransport) Rendezvous(ctx context.Context) (kbucket.Contact, error) {
	rv := t.n.rv
	if rv == nil {
		return kbucket.Contact{}, errors.New("sdk: the node is logged in at no rendezvous server")
	}
	b, err := dht.AppendMessage(nil, &dht.Ping{})
	if err != nil {
		return kbucket.Contact{}, err
	}
	node, ans, err := rv.DHT(ctx, b)
	if err != nil {
		return kbucket.Contact{}, fmt.Errorf("sdk: the rendezvous server's DHT node: %w", err)
	}
	m, err := dht.ParseMessage(ans)
	if err != nil {
		return kbucket.Contact{}, fmt.Errorf("sdk: the rendezvous server's DHT node: %w", err)
	}
	if m.Type() != dht.TypePong {
		return kbucket.Contact{}, fmt.Errorf("sdk: the rendezvous server's DHT node answered a ping with %v", m.Type())
	}
	t.mu.Lock()
	t.rvNode = node
	t.mu.Unlock()
	return kbucket.Contact{ID: node}, nil
}

// viaRendezvous sends req to the rendezvous server's DHT node.
func (t *DHTTransport) viaRendezvous(ctx context.Context, to PeerID, req dht.Request) (dht.Message, error) {
	b, err := dht.AppendMessage(nil, req)
	if err != nil {
		return nil, err
	}
	node, ans, err := t.n.rv.DHT(ctx, b)
	if err != nil {
		return nil, err
	}
	if node != to {
		// The server restarted with a new DHT key: that contact is gone.
		return nil, fmt.Errorf("sdk: the rendezvous server's DHT node is now %s, not %s", node.Short(), to.Short())
	}
	return dht.ParseMessage(ans)
}
