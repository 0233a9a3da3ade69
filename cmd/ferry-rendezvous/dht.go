package main

import (
	"fmt"
	"slices"

	"github.com/ferrynet/ferry/identity"
)

// dhtIdentity returns the DHT node's key, or nil when the server runs no
// DHT node.
func (o *options) dhtIdentity() (*identity.Identity, error) {
	switch {
	case o.DHTIdentity != "":
		id, err := identity.Load(o.DHTIdentity)
		if err != nil {
			return nil, fmt.Errorf("--dht-identity: %w", err)
		}
		return id, nil
	case o.DHT || len(o.DHTBootstrap) > 0:
		id, err := identity.Generate()
		if err != nil {
			return nil, fmt.Errorf("DHT key: %w", err)
		}
		return id, nil
	}
	return nil, nil
}

// seeds lists --bootstrap-seed and then the --dht-bootstrap URLs, once each:
// bootstrap answers name the DHT nodes this one joined through.
func (o *options) seeds() []string {
	seeds := slices.Clone(o.BootstrapSeeds)
	for _, u := range o.DHTBootstrap {
		if !slices.Contains(seeds, u) {
			seeds = append(seeds, u)
		}
	}
	return seeds
}
