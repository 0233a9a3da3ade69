package dht

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"fmt"
	"net/netip"
	"time"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/ferrynet/ferry/identity"
)

// Record bounds (SPEC.md §2).
const (
	// MaxRecordSize is the largest encoded record, signature included
	// (BEP 44's 1000 bytes).
	MaxRecordSize = 1000
	// MaxRendezvous is the most rendezvous URLs a record lists.
	MaxRendezvous = 8
	// MaxURLLen bounds one rendezvous URL.
	MaxURLLen = 255
	// MaxAddrs is the most addresses a record lists.
	MaxAddrs = 8
	// MaxTTL is the furthest ahead a store accepts a record's expiry
	// (kad-dht keeps provider records 48 h).
	MaxTTL = 48 * time.Hour
)

// recordDomain prefixes the signed bytes, so a record signature can never be
// replayed as a signature of anything else the key signs.
const recordDomain = "ferry-dht-record-v1\x00"

// Record is a signed statement by a peer, stored in the DHT under [Record.Key]:
//
//   - a peer record (Topic zero) says where the peer with this key can be
//     reached: the rendezvous servers it is logged in at and, if it opts
//     in, its addresses. It is stored under the peer's PeerID;
//   - an announcement (Topic set) is a peer record that also says the peer
//     joined the topic. It is stored under the topic key
//     ([TopicKey], SHA-256 of the topic's name), next to the other peers'.
//
// Build one with the fields set and call [Record.Sign]; a decoded record
// keeps the exact bytes that were signed. Do not change a record's fields
// after signing or decoding it; sign a new one (with a higher Seq).
type Record struct {
	// PublicKey is the signer's Ed25519 public key; the record's PeerID is
	// its SHA-256.
	PublicKey ed25519.PublicKey
	// Topic is the topic key of an announcement, or zero for a peer record.
	Topic identity.PeerID
	// Seq orders the records of one signer for one key: a store replaces a
	// record only with a higher Seq.
	Seq uint64
	// Expires is when the record stops being valid, to the second.
	Expires time.Time
	// Rendezvous lists the rendezvous URLs the peer is logged in at. At
	// most [MaxRendezvous] of at most [MaxURLLen] bytes.
	Rendezvous []string
	// Addrs lists reachable addresses, only if the peer opts in. At most
	// [MaxAddrs].
	Addrs []netip.AddrPort
	// Signature is the Ed25519 signature of the body, set by Sign.
	Signature []byte

	body []byte // the signed body, as encoded
}

// Record envelope and body fields (SPEC.md §2.1).
const (
	recordBody      protowire.Number = 1
	recordSignature protowire.Number = 2

	bodyPublicKey  protowire.Number = 1
	bodyTopic      protowire.Number = 2
	bodySeq        protowire.Number = 3
	bodyExpires    protowire.Number = 4
	bodyRendezvous protowire.Number = 5
	bodyAddrs      protowire.Number = 6
)

// TopicKey returns the DHT key of a topic: the SHA-256 of its name.
func TopicKey(topic string) identity.PeerID {
	return sha256.Sum256([]byte(topic))
}

// PeerID returns the ID of the record's signer.
func (r *Record) PeerID() identity.PeerID { return identity.IDFromPublicKey(r.PublicKey) }

// Key returns the key the record is stored under: its topic for an
// announcement, its signer's PeerID for a peer record.
func (r *Record) Key() identity.PeerID {
	if !r.Topic.IsZero() {
		return r.Topic
	}
	return r.PeerID()
}

// IsAnnouncement reports whether the record announces a topic.
func (r *Record) IsAnnouncement() bool { return !r.Topic.IsZero() }

func (r *Record) validate() error {
	if len(r.PublicKey) != ed25519.PublicKeySize {
		return malformedError("record", "public key is %d bytes, want %d", len(r.PublicKey), ed25519.PublicKeySize)
	}
	if len(r.Rendezvous) > MaxRendezvous {
		return malformedError("record", "%d rendezvous URLs, maximum %d", len(r.Rendezvous), MaxRendezvous)
	}
	for _, u := range r.Rendezvous {
		if err := checkString("record", "rendezvous URL", u, MaxURLLen); err != nil {
			return err
		}
	}
	if len(r.Addrs) > MaxAddrs {
		return malformedError("record", "%d addresses, maximum %d", len(r.Addrs), MaxAddrs)
	}
	for _, a := range r.Addrs {
		if !a.IsValid() {
			return malformedError("record", "invalid address")
		}
		if err := checkAddr("record", a); err != nil {
			return err
		}
	}
	if r.Expires.Unix() < 0 {
		return malformedError("record", "expiry %v before 1970", r.Expires)
	}
	return nil
}

func (r *Record) appendBody(b []byte) []byte {
	b = appendBytesField(b, bodyPublicKey, r.PublicKey)
	b = appendBytesField(b, bodyTopic, idBytes(r.Topic))
	b = appendVarintField(b, bodySeq, r.Seq)
	b = appendVarintField(b, bodyExpires, uint64(r.Expires.Unix()))
	for _, u := range r.Rendezvous {
		b = appendStringField(b, bodyRendezvous, u)
	}
	for _, a := range r.Addrs {
		b = protowire.AppendTag(b, bodyAddrs, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(addrLen(a)))
		b = appendAddr(b, a)
	}
	return b
}

func signedBytes(body []byte) []byte {
	msg := make([]byte, 0, len(recordDomain)+len(body))
	return append(append(msg, recordDomain...), body...)
}

// Sign fills in PublicKey from id, encodes the body and signs it. It fails
// with [ErrMalformed] for a field over its bound and [ErrRecordTooLarge] if
// the record would exceed [MaxRecordSize].
func (r *Record) Sign(id *identity.Identity) error {
	r.PublicKey = id.PublicKey()
	r.Expires = r.Expires.Truncate(time.Second)
	if err := r.validate(); err != nil {
		return err
	}
	body := r.appendBody(nil)
	if n := envelopeLen(len(body)); n > MaxRecordSize {
		return fmt.Errorf("dht: record is %d bytes, maximum %d: %w", n, MaxRecordSize, ErrRecordTooLarge)
	}
	r.body = body
	r.Signature = id.Sign(signedBytes(body))
	return nil
}

// Verify checks the signature against the record's public key.
func (r *Record) Verify() error {
	body := r.body
	if body == nil {
		if err := r.validate(); err != nil {
			return err
		}
		body = r.appendBody(nil)
	}
	if len(r.Signature) != ed25519.SignatureSize {
		return fmt.Errorf("dht: record by %s: signature is %d bytes: %w", r.PeerID().Short(), len(r.Signature), ErrBadSignature)
	}
	if err := identity.Verify(r.PeerID(), r.PublicKey, signedBytes(body), r.Signature); err != nil {
		return fmt.Errorf("dht: %w: %w", ErrBadSignature, err)
	}
	return nil
}

func envelopeLen(bodyLen int) int {
	return sizeBytesField(recordBody, bodyLen) + sizeBytesField(recordSignature, ed25519.SignatureSize)
}

func (r *Record) encodedBody() []byte {
	if r.body != nil {
		return r.body
	}
	return r.appendBody(nil)
}

// Len returns the size of the encoded record.
func (r *Record) Len() int {
	return sizeBytesField(recordBody, len(r.encodedBody())) + sizeBytesField(recordSignature, len(r.Signature))
}

// Append appends the encoded record to b. An unsigned record is refused
// ([ErrMalformed]), as is one over [MaxRecordSize].
func (r *Record) Append(b []byte) ([]byte, error) {
	if len(r.Signature) != ed25519.SignatureSize {
		return b, malformedError("record", "not signed (signature is %d bytes)", len(r.Signature))
	}
	if r.body == nil {
		if err := r.validate(); err != nil {
			return b, err
		}
	}
	body := r.encodedBody()
	if n := envelopeLen(len(body)); n > MaxRecordSize {
		return b, fmt.Errorf("dht: record is %d bytes, maximum %d: %w", n, MaxRecordSize, ErrRecordTooLarge)
	}
	b = appendBytesField(b, recordBody, body)
	return appendBytesField(b, recordSignature, r.Signature), nil
}

// Unmarshal resets r and decodes b into it. It checks the form and the
// bounds, not the signature: call [Record.Verify] (stores do).
func (r *Record) Unmarshal(b []byte) error {
	*r = Record{}
	if len(b) > MaxRecordSize {
		return fmt.Errorf("dht: record is %d bytes, maximum %d: %w", len(b), MaxRecordSize, ErrRecordTooLarge)
	}
	var body []byte
	for len(b) > 0 {
		num, typ, n, err := consumeTag("record", b)
		if err != nil {
			return err
		}
		b = b[n:]
		switch num {
		case recordBody:
			body, n, err = consumeBytes("record", num, typ, b, MaxRecordSize)
		case recordSignature:
			var sig []byte
			if sig, n, err = consumeBytes("record", num, typ, b, ed25519.SignatureSize); err == nil {
				if len(sig) != ed25519.SignatureSize {
					return malformedError("record", "signature is %d bytes, want %d", len(sig), ed25519.SignatureSize)
				}
				r.Signature = bytes.Clone(sig)
			}
		default:
			n, err = skipField("record", num, typ, b)
		}
		if err != nil {
			return err
		}
		b = b[n:]
	}
	if r.Signature == nil {
		return malformedError("record", "no signature")
	}
	if err := r.parseBody(body); err != nil {
		return err
	}
	r.body = bytes.Clone(body)
	return nil
}

func (r *Record) parseBody(b []byte) error {
	var expires uint64
	for len(b) > 0 {
		num, typ, n, err := consumeTag("record", b)
		if err != nil {
			return err
		}
		b = b[n:]
		switch num {
		case bodyPublicKey:
			var v []byte
			if v, n, err = consumeBytes("record", num, typ, b, ed25519.PublicKeySize); err == nil {
				if len(v) != ed25519.PublicKeySize {
					return malformedError("record", "public key is %d bytes, want %d", len(v), ed25519.PublicKeySize)
				}
				r.PublicKey = bytes.Clone(v)
			}
		case bodyTopic:
			r.Topic, n, err = consumeID("record", num, typ, b)
		case bodySeq:
			r.Seq, n, err = consumeVarint("record", num, typ, b)
		case bodyExpires:
			expires, n, err = consumeVarint("record", num, typ, b)
			if err == nil && expires > 1<<40 {
				return malformedError("record", "expiry %d out of range", expires)
			}
		case bodyRendezvous:
			var u string
			if u, n, err = consumeString("record", num, typ, b, MaxURLLen); err == nil {
				if len(r.Rendezvous) == MaxRendezvous {
					return malformedError("record", "more than %d rendezvous URLs", MaxRendezvous)
				}
				r.Rendezvous = append(r.Rendezvous, u)
			}
		case bodyAddrs:
			var v []byte
			if v, n, err = consumeBytes("record", num, typ, b, 18); err == nil {
				if len(r.Addrs) == MaxAddrs {
					return malformedError("record", "more than %d addresses", MaxAddrs)
				}
				var a netip.AddrPort
				if a, err = parseAddr("record", v); err == nil {
					if !a.IsValid() {
						return malformedError("record", "empty address")
					}
					r.Addrs = append(r.Addrs, a)
				}
			}
		default:
			n, err = skipField("record", num, typ, b)
		}
		if err != nil {
			return err
		}
		b = b[n:]
	}
	if r.PublicKey == nil {
		return malformedError("record", "no public key")
	}
	r.Expires = time.Unix(int64(expires), 0)
	return nil
}
