package signal

import (
	"context"
	"fmt"

	"github.com/ferrynet/ferry/identity"
	"github.com/ferrynet/ferry/wire"
)

// DHT sends one DHT request (a message as package dht encodes it) to the
// server's DHT node and returns the node's PeerID and its answer. The
// server takes the requester to be this client's PeerID. A server that runs
// no DHT node answers with a *ServerError (code unavailable).
func (c *Client) DHT(ctx context.Context, msg []byte) (identity.PeerID, []byte, error) {
	id := c.nextID.Add(1)
	frame, err := wire.AppendMessage(nil, &wire.DHT{ID: id, Message: msg})
	if err != nil {
		return identity.PeerID{}, nil, err
	}
	r, err := c.request(ctx, id, frame)
	if err != nil {
		return identity.PeerID{}, nil, err
	}
	if r.dht == nil {
		return identity.PeerID{}, nil, fmt.Errorf("%w: answer to a DHT request is not DHT", ErrProtocol)
	}
	if r.dht.Node == ([wire.PeerIDLen]byte{}) {
		return identity.PeerID{}, nil, fmt.Errorf("%w: DHT answer without the server's node ID", ErrProtocol)
	}
	return identity.PeerID(r.dht.Node), r.dht.Message, nil
}

// URL returns the signaling URL the client logs in at.
func (c *Client) URL() string { return c.url }
