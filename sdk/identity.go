package sdk

import "github.com/ferrynet/ferry/identity"

// Identity is a node's Ed25519 key pair; see package identity.
type Identity = identity.Identity

// PeerID names a peer: the SHA-256 of its Ed25519 public key.
type PeerID = identity.PeerID

// LoadIdentity reads the identity stored at path, creating it (mode 0600)
// when the file does not exist. A corrupt or unreadable file is an error,
// and so is one that group or others may read (identity.ErrKeyFileMode).
func LoadIdentity(path string) (*Identity, error) { return identity.Load(path) }

// GenerateIdentity creates a fresh identity that is not stored anywhere.
func GenerateIdentity() (*Identity, error) { return identity.Generate() }

// ParsePeerID parses a PeerID's text form (52 characters of lowercase base32).
func ParsePeerID(s string) (PeerID, error) { return identity.ParsePeerID(s) }
