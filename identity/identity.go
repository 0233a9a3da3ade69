// Package identity holds a Ferry node's long-term key and the PeerID derived
// from it.
//
// A node's identity is an Ed25519 key pair kept in a file that is created, with
// mode 0600, on first use. Its PeerID is the SHA-256 of the public key, written
// as lowercase base32 without padding (52 characters). Every place a peer claims
// a PeerID (the signaling login, the session's TLS handshake, DHT records) the
// claim is proven with this key.
//
// The package depends only on the standard library so that servers (the
// rendezvous verifies logins) can use it without pulling in the SDK. The SDK
// re-exports its types as sdk.Identity and sdk.PeerID.
package identity

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
)

// IDLen is the length of a PeerID in bytes.
const IDLen = sha256.Size

// EncodedLen is the length of a PeerID's text form: 256 bits in 5-bit
// base32 characters, rounded up.
const EncodedLen = (IDLen*8 + 4) / 5

var encoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// PeerID names a node: the SHA-256 of its Ed25519 public key.
type PeerID [IDLen]byte

// Errors returned when parsing or verifying identities.
var (
	// ErrInvalidPeerID reports text or bytes that are not a PeerID.
	ErrInvalidPeerID = errors.New("identity: invalid peer ID")
	// ErrBadKeyFile reports an identity file that exists but cannot be used.
	ErrBadKeyFile = errors.New("identity: bad key file")
	// ErrKeyFileMode reports a key file that users other than its owner
	// may read or write; errors.Is also matches ErrBadKeyFile for it.
	ErrKeyFileMode = errors.New("identity: key file open to other users")
	// ErrBadSignature reports a signature that does not verify.
	ErrBadSignature = errors.New("identity: bad signature")
)

// IDFromPublicKey returns the PeerID of an Ed25519 public key.
func IDFromPublicKey(pub ed25519.PublicKey) PeerID {
	return sha256.Sum256(pub)
}

// ParsePeerID parses the text form of a PeerID: 52 characters of lowercase
// RFC 4648 base32 without padding. Surrounding whitespace is not accepted;
// the error says what is wrong.
func ParsePeerID(s string) (PeerID, error) {
	var id PeerID
	if len(s) != EncodedLen {
		return id, fmt.Errorf("%w: %q has %d characters, want %d", ErrInvalidPeerID, abbrev(s), len(s), EncodedLen)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < 'a' || c > 'z') && (c < '2' || c > '7') {
			return id, fmt.Errorf("%w: %q has %q at offset %d; a peer ID is lowercase base32 (a-z, 2-7)", ErrInvalidPeerID, abbrev(s), c, i)
		}
	}
	n, err := encoding.Decode(id[:], []byte(s))
	if err != nil || n != IDLen {
		return PeerID{}, fmt.Errorf("%w: %q does not decode to %d bytes", ErrInvalidPeerID, abbrev(s), IDLen)
	}
	// 52 base32 characters carry 260 bits; the last 4 must be zero, or two
	// strings would name the same ID.
	if encoding.EncodeToString(id[:]) != s {
		return PeerID{}, fmt.Errorf("%w: %q is not in canonical form (trailing bits set)", ErrInvalidPeerID, abbrev(s))
	}
	return id, nil
}

// PeerIDFromBytes converts a 32-byte slice into a PeerID.
func PeerIDFromBytes(b []byte) (PeerID, error) {
	var id PeerID
	if len(b) != IDLen {
		return id, fmt.Errorf("%w: %d bytes, want %d", ErrInvalidPeerID, len(b), IDLen)
	}
	copy(id[:], b)
	return id, nil
}

// String returns the canonical text form.
func (id PeerID) String() string { return encoding.EncodeToString(id[:]) }

// Short returns the first 10 characters of the text form, for logs.
func (id PeerID) Short() string { return id.String()[:10] }

// IsZero reports whether id is the zero value (no peer).
func (id PeerID) IsZero() bool { return id == PeerID{} }

// MarshalText implements encoding.TextMarshaler.
func (id PeerID) MarshalText() ([]byte, error) { return []byte(id.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (id *PeerID) UnmarshalText(b []byte) error {
	p, err := ParsePeerID(string(b))
	if err != nil {
		return err
	}
	*id = p
	return nil
}

// Identity is a node's key pair. It is safe for concurrent use.
type Identity struct {
	priv ed25519.PrivateKey
	id   PeerID
}

// Generate creates a new random identity.
func Generate() (*Identity, error) {
	return generate(rand.Reader)
}

func generate(r io.Reader) (*Identity, error) {
	_, priv, err := ed25519.GenerateKey(r)
	if err != nil {
		return nil, fmt.Errorf("identity: generate key: %w", err)
	}
	return FromPrivateKey(priv)
}

// FromPrivateKey wraps an existing Ed25519 private key.
func FromPrivateKey(priv ed25519.PrivateKey) (*Identity, error) {
	if len(priv) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("%w: private key has %d bytes, want %d", ErrBadKeyFile, len(priv), ed25519.PrivateKeySize)
	}
	pub, ok := priv.Public().(ed25519.PublicKey)
	if !ok {
		return nil, fmt.Errorf("%w: not an Ed25519 key", ErrBadKeyFile)
	}
	// The seed determines the public key; a key whose stored public half
	// disagrees with its seed is corrupt.
	check := ed25519.NewKeyFromSeed(priv.Seed())
	if !check.Public().(ed25519.PublicKey).Equal(pub) {
		return nil, fmt.Errorf("%w: public half does not match the private seed", ErrBadKeyFile)
	}
	return &Identity{priv: priv, id: IDFromPublicKey(pub)}, nil
}

// PeerID returns the identity's PeerID.
func (i *Identity) PeerID() PeerID { return i.id }

// PublicKey returns the Ed25519 public key.
func (i *Identity) PublicKey() ed25519.PublicKey {
	return i.priv.Public().(ed25519.PublicKey)
}

// PrivateKey returns the Ed25519 private key. It is needed to build TLS
// certificates; treat it as secret.
func (i *Identity) PrivateKey() ed25519.PrivateKey { return i.priv }

// Sign signs msg with the identity's key.
func (i *Identity) Sign(msg []byte) []byte { return ed25519.Sign(i.priv, msg) }

// Verify checks that sig is pub's signature of msg and that pub hashes to id.
func Verify(id PeerID, pub ed25519.PublicKey, msg, sig []byte) error {
	if len(pub) != ed25519.PublicKeySize {
		return fmt.Errorf("%w: public key has %d bytes, want %d", ErrBadSignature, len(pub), ed25519.PublicKeySize)
	}
	if got := IDFromPublicKey(pub); got != id {
		return &MismatchError{Expected: id, Presented: got}
	}
	if !ed25519.Verify(pub, msg, sig) {
		return fmt.Errorf("%w: signature by %s does not verify", ErrBadSignature, id.Short())
	}
	return nil
}

// MismatchError reports a peer that proved a different identity from the one
// expected.
type MismatchError struct {
	Expected  PeerID
	Presented PeerID
}

func (e *MismatchError) Error() string {
	return fmt.Sprintf("identity: peer ID mismatch: expected %s, presented %s", e.Expected, e.Presented)
}

const pemType = "FERRY ED25519 PRIVATE KEY"

// Load reads the identity stored at path, creating a new one there (mode
// 0600, parent directories 0700) if the file does not exist. An unreadable
// or corrupt file is an error that names the file and what is wrong; it is
// never silently replaced. On Unix, a file that group or others may access
// is refused (ErrKeyFileMode) with the chmod that fixes it: whoever can read
// the key can be this node.
func Load(path string) (*Identity, error) {
	b, err := readKeyFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return create(path)
	}
	if err != nil {
		return nil, err
	}
	return decodeFile(path, b)
}

// maxKeyFile bounds what Load reads: a key file is about 200 bytes.
const maxKeyFile = 64 << 10

// readKeyFile reads a key file after checking that it is a regular file
// only its owner may access. A missing file is fs.ErrNotExist, unwrapped
// by nothing else.
func readKeyFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	if err != nil {
		return nil, fmt.Errorf("%w: read %s: %w", ErrBadKeyFile, path, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("%w: read %s: %w", ErrBadKeyFile, path, err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%w: %s is not a regular file (%v)", ErrBadKeyFile, path, fi.Mode().Type())
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 && runtime.GOOS != "windows" {
		return nil, fmt.Errorf("%w: %w: %s has mode %04o, so other users can read the private key; run: chmod 600 %s",
			ErrBadKeyFile, ErrKeyFileMode, path, perm, path)
	}
	b, err := io.ReadAll(io.LimitReader(f, maxKeyFile+1))
	if err != nil {
		return nil, fmt.Errorf("%w: read %s: %w", ErrBadKeyFile, path, err)
	}
	if len(b) > maxKeyFile {
		return nil, fmt.Errorf("%w: %s is larger than %d bytes; a key file is about 200", ErrBadKeyFile, path, maxKeyFile)
	}
	return b, nil
}

func decodeFile(path string, b []byte) (*Identity, error) {
	blk, rest := pem.Decode(b)
	if blk == nil {
		return nil, fmt.Errorf("%w: %s is not a PEM file (want a %q block)", ErrBadKeyFile, path, pemType)
	}
	if blk.Type != pemType {
		return nil, fmt.Errorf("%w: %s holds a %q block, want %q", ErrBadKeyFile, path, blk.Type, pemType)
	}
	if len(strings.TrimSpace(string(rest))) != 0 {
		return nil, fmt.Errorf("%w: %s has trailing data after the key", ErrBadKeyFile, path)
	}
	if len(blk.Bytes) != ed25519.SeedSize {
		return nil, fmt.Errorf("%w: %s holds a %d-byte key, want a %d-byte Ed25519 seed", ErrBadKeyFile, path, len(blk.Bytes), ed25519.SeedSize)
	}
	id, err := FromPrivateKey(ed25519.NewKeyFromSeed(blk.Bytes))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return id, nil
}

func create(path string) (*Identity, error) {
	id, err := Generate()
	if err != nil {
		return nil, err
	}
	if err := Save(id, path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			// Another process created it first; use theirs.
			b, rerr := readKeyFile(path)
			if rerr != nil {
				return nil, rerr
			}
			return decodeFile(path, b)
		}
		return nil, err
	}
	return id, nil
}

// Save writes the identity to path with mode 0600. It refuses to overwrite an
// existing file.
func Save(id *Identity, path string) error {
	if dir := filepath.Dir(path); dir != "." {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return fmt.Errorf("identity: create directory for %s: %w", path, err)
		}
	}
	data := pem.EncodeToMemory(&pem.Block{
		Type:    pemType,
		Headers: map[string]string{"Peer-Id": id.PeerID().String()},
		Bytes:   id.priv.Seed(),
	})
	// Write to a temporary file and link it into place, so a crash never
	// leaves a half-written key and a concurrent creator never wins twice.
	tmp, err := os.CreateTemp(filepath.Dir(path), ".identity-*")
	if err != nil {
		return fmt.Errorf("identity: write %s: %w", path, err)
	}
	tmpName := tmp.Name()
	defer os.Remove(tmpName)
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return fmt.Errorf("identity: write %s: %w", path, err)
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("identity: write %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("identity: write %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("identity: write %s: %w", path, err)
	}
	if err := os.Link(tmpName, path); err != nil {
		return fmt.Errorf("identity: write %s: %w", path, err)
	}
	return nil
}

func abbrev(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}
