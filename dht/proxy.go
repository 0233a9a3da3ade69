package dht

import (
	"context"
	"fmt"

	"github.com/ferrynet/ferry/identity"
)

// A node that answers for peers which cannot reach the rest of the DHT
// (a rendezvous server, for the peers logged in at it) looks up and stores
// on their behalf with Get and Store.

// Get looks key up (a PeerID or a [TopicKey]) and returns the valid records
// found under it, sorted by signer.
func (n *Node) Get(ctx context.Context, key identity.PeerID) ([]*Record, error) {
	res, err := n.lookup(ctx, key, true, false)
	if err != nil {
		return nil, err
	}
	out := make([]*Record, 0, len(res.records))
	for _, r := range res.records {
		out = append(out, r)
	}
	sortBySigner(out)
	return out, nil
}

// Store stores r, a record someone else signed, on the k nodes closest to
// its key, once: its publisher republishes it. It returns how many nodes
// stored it.
func (n *Node) Store(ctx context.Context, r *Record) (int, error) {
	if r == nil {
		return 0, fmt.Errorf("dht: store: no record: %w", ErrMalformed)
	}
	if err := r.Verify(); err != nil {
		return 0, fmt.Errorf("dht: store: %w", err)
	}
	return n.putRecord(ctx, r)
}
