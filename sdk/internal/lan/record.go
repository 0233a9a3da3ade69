package lan

import (
	"crypto/ed25519"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/pion/mdns/v2"

	"github.com/ferrynet/ferry/identity"
)

// TXT keys of an announcement.
const (
	keyVersion = "v"
	keyPub     = "pk"
	keyTime    = "ts"
	keySig     = "sig"
	version    = "1"
)

// proofContext prefixes every signed announcement, so a LAN proof can
// never be taken for a signature made for anything else.
const proofContext = "ferry-lan-proof-v1\x00"

// MaxSkew is how far an announcement's timestamp may be from the local
// clock. Announcements are re-signed well within it.
const MaxSkew = time.Hour

// maxTXTBytes bounds the TXT data of an announcement we look at; ours take
// about 160 bytes.
const maxTXTBytes = 512

// Errors of a refused announcement.
var (
	// ErrBadAnnouncement reports an announcement that is not a Ferry
	// record: missing or malformed fields, too large.
	ErrBadAnnouncement = errors.New("lan: bad announcement")
	// ErrBadProof reports an announcement whose key or signature does not
	// prove the PeerID it names.
	ErrBadProof = errors.New("lan: bad proof")
)

// proofMessage is what an announcement's signature covers: the PeerID
// (the instance name), the public key, the session port and the time.
func proofMessage(id identity.PeerID, pub ed25519.PublicKey, port uint16, ts int64) []byte {
	b := make([]byte, 0, len(proofContext)+len(id)+len(pub)+2+8)
	b = append(b, proofContext...)
	b = append(b, id[:]...)
	b = append(b, pub...)
	b = binary.BigEndian.AppendUint16(b, port)
	b = binary.BigEndian.AppendUint64(b, uint64(ts)) //nolint:gosec // a Unix time; the sign bit round-trips
	return b
}

// signTXT returns the TXT entries announcing id on port at time now.
func signTXT(id *identity.Identity, port uint16, now time.Time) []mdns.TXTEntry {
	ts := now.Unix()
	sig := id.Sign(proofMessage(id.PeerID(), id.PublicKey(), port, ts))
	return []mdns.TXTEntry{
		mdns.NewTXTString(keyVersion, version),
		mdns.NewTXTString(keyPub, base64.RawURLEncoding.EncodeToString(id.PublicKey())),
		mdns.NewTXTString(keyTime, strconv.FormatInt(ts, 10)),
		mdns.NewTXTString(keySig, base64.RawURLEncoding.EncodeToString(sig)),
	}
}

// verifyTXT checks that the announcement of instance on port carries a
// valid proof for the PeerID the instance names, signed within MaxSkew of
// now. It returns that PeerID.
func verifyTXT(instance string, port uint16, txt []mdns.TXTEntry, now time.Time) (identity.PeerID, error) {
	var zero identity.PeerID
	size := 0
	for _, e := range txt {
		size += len(e.Key) + len(e.Value) + 2
	}
	if size > maxTXTBytes {
		return zero, fmt.Errorf("%w: TXT data of %d bytes, at most %d", ErrBadAnnouncement, size, maxTXTBytes)
	}
	id, err := identity.ParsePeerID(instance)
	if err != nil {
		return zero, fmt.Errorf("%w: instance name is not a PeerID", ErrBadAnnouncement)
	}
	if port == 0 {
		return zero, fmt.Errorf("%w: port 0", ErrBadAnnouncement)
	}
	vals := map[string][]byte{}
	for _, e := range txt {
		if _, dup := vals[e.Key]; dup {
			return zero, fmt.Errorf("%w: duplicate TXT key %q", ErrBadAnnouncement, e.Key)
		}
		vals[e.Key] = e.Value
	}
	if v := string(vals[keyVersion]); v != version {
		return zero, fmt.Errorf("%w: version %.8q, want %q", ErrBadAnnouncement, v, version)
	}
	pub, err := base64.RawURLEncoding.DecodeString(string(vals[keyPub]))
	if err != nil || len(pub) != ed25519.PublicKeySize {
		return zero, fmt.Errorf("%w: public key is not %d base64url bytes", ErrBadAnnouncement, ed25519.PublicKeySize)
	}
	sig, err := base64.RawURLEncoding.DecodeString(string(vals[keySig]))
	if err != nil || len(sig) != ed25519.SignatureSize {
		return zero, fmt.Errorf("%w: signature is not %d base64url bytes", ErrBadAnnouncement, ed25519.SignatureSize)
	}
	ts, err := strconv.ParseInt(string(vals[keyTime]), 10, 64)
	if err != nil {
		return zero, fmt.Errorf("%w: timestamp is not a number", ErrBadAnnouncement)
	}
	if d := now.Sub(time.Unix(ts, 0)); d > MaxSkew || d < -MaxSkew {
		return zero, fmt.Errorf("%w: signed %v away from now, at most %v", ErrBadProof, d.Round(time.Second), MaxSkew)
	}
	if err := identity.Verify(id, pub, proofMessage(id, pub, port, ts), sig); err != nil {
		return zero, fmt.Errorf("%w: %w", ErrBadProof, err)
	}
	return id, nil
}
