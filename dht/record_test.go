package dht

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/ferrynet/ferry/identity"
)

func newTestStore(t *testing.T, now *time.Time, opts ...StoreOption) *Store {
	t.Helper()
	s, err := NewStore(append([]StoreOption{WithStoreClock(func() time.Time { return *now })}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestRecordSignVerifyRoundTrip(t *testing.T) {
	id := testIdentity(t, "alice")
	r := signedRecord(t, id, 7, func(r *Record) {
		r.Addrs = []netip.AddrPort{netip.MustParseAddrPort("198.51.100.7:4242"), netip.MustParseAddrPort("[2001:db8::1]:443")}
	})
	if err := r.Verify(); err != nil {
		t.Fatal(err)
	}
	if r.Key() != id.PeerID() || r.PeerID() != id.PeerID() || r.IsAnnouncement() {
		t.Fatal("a peer record's key is not its signer's PeerID")
	}
	b, err := r.Append(nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) != r.Len() {
		t.Fatalf("Len %d, encoded %d", r.Len(), len(b))
	}
	var got Record
	if err := got.Unmarshal(b); err != nil {
		t.Fatal(err)
	}
	if err := got.Verify(); err != nil {
		t.Fatalf("decoded record does not verify: %v", err)
	}
	if got.Seq != 7 || !got.Expires.Equal(r.Expires) || len(got.Addrs) != 2 || got.Addrs[1] != r.Addrs[1] || got.Rendezvous[0] != r.Rendezvous[0] {
		t.Fatalf("decoded %+v, want %+v", got, r)
	}
	ann := signedRecord(t, id, 1, func(r *Record) { r.Topic = TopicKey("chat") })
	if ann.Key() != TopicKey("chat") || !ann.IsAnnouncement() {
		t.Fatal("an announcement's key is not its topic")
	}
}

// Each bad record is refused with its own sentinel error.
func TestStoreRefusesBadRecords(t *testing.T) {
	now := testNow
	alice, bob := testIdentity(t, "alice"), testIdentity(t, "bob")
	forged := signedRecord(t, alice, 1, nil)
	forged.Signature = append([]byte(nil), forged.Signature...)
	forged.Signature[5] ^= 1
	// A record whose signature is bob's over alice's key.
	swapped := signedRecord(t, alice, 1, nil)
	swapped.Signature = signedRecord(t, bob, 1, nil).Signature
	big := &Record{Seq: 1, Expires: now.Add(time.Hour)}
	for range MaxRendezvous {
		big.Rendezvous = append(big.Rendezvous, strings.Repeat("u", 150))
	}
	tests := []struct {
		name string
		key  identity.PeerID
		rec  *Record
		want error
	}{
		{"bad signature", alice.PeerID(), forged, ErrBadSignature},
		{"signature by another key", alice.PeerID(), swapped, ErrBadSignature},
		{"expired", alice.PeerID(), signedRecord(t, alice, 1, func(r *Record) { r.Expires = now }), ErrExpired},
		{"expiry too far", alice.PeerID(), signedRecord(t, alice, 1, func(r *Record) { r.Expires = now.Add(MaxTTL + time.Minute) }), ErrExpiryTooFar},
		{"wrong key", bob.PeerID(), signedRecord(t, alice, 1, nil), ErrWrongKey},
		{"announcement under a peer key", alice.PeerID(), signedRecord(t, alice, 1, func(r *Record) { r.Topic = TopicKey("t") }), ErrWrongKey},
		{"peer record under a topic", TopicKey("t"), signedRecord(t, alice, 1, nil), ErrWrongKey},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newTestStore(t, &now)
			if err := s.Put(tt.key, tt.rec); !errors.Is(err, tt.want) {
				t.Fatalf("Put: %v, want %v", err, tt.want)
			}
			if s.Len() != 0 || len(s.Get(tt.key)) != 0 {
				t.Fatal("a refused record was stored")
			}
		})
	}
	t.Run("oversize", func(t *testing.T) {
		if err := big.Sign(alice); !errors.Is(err, ErrRecordTooLarge) {
			t.Fatalf("Sign of a %d-byte record: %v, want ErrRecordTooLarge", big.appendBodyLen(), err)
		}
		// One signed by hand past the limit is refused by the store and
		// the decoder.
		big.PublicKey = alice.PublicKey()
		big.body = big.appendBody(nil)
		big.Signature = alice.Sign(signedBytes(big.body))
		s := newTestStore(t, &now)
		if err := s.Put(alice.PeerID(), big); !errors.Is(err, ErrRecordTooLarge) {
			t.Fatalf("Put: %v, want ErrRecordTooLarge", err)
		}
		enc := appendBytesField(appendBytesField(nil, recordBody, big.body), recordSignature, big.Signature)
		var r Record
		if err := r.Unmarshal(enc); !errors.Is(err, ErrRecordTooLarge) {
			t.Fatalf("Unmarshal of %d bytes: %v, want ErrRecordTooLarge", len(enc), err)
		}
	})
}

func (r *Record) appendBodyLen() int { return len(r.appendBody(nil)) }

func TestStoreSeq(t *testing.T) {
	now := testNow
	alice := testIdentity(t, "alice")
	s := newTestStore(t, &now)
	key := alice.PeerID()
	r5 := signedRecord(t, alice, 5, nil)
	if err := s.Put(key, r5); err != nil {
		t.Fatal(err)
	}
	if err := s.Put(key, signedRecord(t, alice, 4, nil)); !errors.Is(err, ErrOldSeq) {
		t.Fatalf("older seq: %v, want ErrOldSeq", err)
	}
	other5 := signedRecord(t, alice, 5, func(r *Record) { r.Rendezvous = []string{"wss://elsewhere"} })
	if err := s.Put(key, other5); !errors.Is(err, ErrOldSeq) {
		t.Fatalf("same seq, other content: %v, want ErrOldSeq", err)
	}
	if err := s.Put(key, r5); err != nil {
		t.Fatalf("republish of the same record: %v", err)
	}
	r6 := signedRecord(t, alice, 6, func(r *Record) { r.Rendezvous = []string{"wss://new"} })
	if err := s.Put(key, r6); err != nil {
		t.Fatal(err)
	}
	got := s.Get(key)
	if len(got) != 1 || got[0].Seq != 6 || s.Len() != 1 {
		t.Fatalf("after a newer seq: %d records, len %d", len(got), s.Len())
	}
	// Expired records are dropped; then any seq may start again.
	now = now.Add(2 * time.Hour)
	if len(s.Get(key)) != 0 || s.Len() != 0 {
		t.Fatal("an expired record was returned or kept")
	}
	if err := s.Put(key, signedRecord(t, alice, 1, func(r *Record) { r.Expires = now.Add(time.Hour) })); err != nil {
		t.Fatalf("fresh record after expiry: %v", err)
	}
	now = now.Add(2 * time.Hour)
	if n := s.Expire(); n != 1 || s.Len() != 0 {
		t.Fatalf("Expire dropped %d, %d left", n, s.Len())
	}
}

func TestStoreTopicCaps(t *testing.T) {
	now := testNow
	s := newTestStore(t, &now, WithStoreLimits(100, 3, 2))
	topic := TopicKey("room")
	ann := func(name string, topic identity.PeerID, seq uint64) *Record {
		return signedRecord(t, testIdentity(t, name), seq, func(r *Record) { r.Topic = topic })
	}
	for _, n := range []string{"a", "b", "c"} {
		if err := s.Put(topic, ann(n, topic, 1)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Put(topic, ann("d", topic, 1)); !errors.Is(err, ErrTopicFull) {
		t.Fatalf("fourth source on a 3-topic: %v, want ErrTopicFull", err)
	}
	// A newer record of a source already there still fits.
	if err := s.Put(topic, ann("a", topic, 2)); err != nil {
		t.Fatal(err)
	}
	if got := s.Get(topic); len(got) != 3 {
		t.Fatalf("topic holds %d, want 3", len(got))
	}
	// Per source: "a" may announce one more topic, not two.
	if err := s.Put(TopicKey("x"), ann("a", TopicKey("x"), 1)); err != nil {
		t.Fatal(err)
	}
	if err := s.Put(TopicKey("y"), ann("a", TopicKey("y"), 1)); !errors.Is(err, ErrSourceLimit) {
		t.Fatalf("third topic of one source: %v, want ErrSourceLimit", err)
	}
	// Expired announcements free their slots.
	now = now.Add(2 * time.Hour)
	if err := s.Put(topic, ann("d", topic, 1)); !errors.Is(err, ErrExpired) {
		t.Fatalf("stale test record: %v", err)
	}
	fresh := signedRecord(t, testIdentity(t, "d"), 1, func(r *Record) { r.Topic = topic; r.Expires = now.Add(time.Hour) })
	if err := s.Put(topic, fresh); err != nil {
		t.Fatalf("after expiry: %v", err)
	}
}

func TestStoreFull(t *testing.T) {
	now := testNow
	s := newTestStore(t, &now, WithStoreLimits(2, 20, 16))
	for _, n := range []string{"a", "b"} {
		id := testIdentity(t, n)
		if err := s.Put(id.PeerID(), signedRecord(t, id, 1, nil)); err != nil {
			t.Fatal(err)
		}
	}
	c := testIdentity(t, "c")
	if err := s.Put(c.PeerID(), signedRecord(t, c, 1, nil)); !errors.Is(err, ErrStoreFull) {
		t.Fatalf("third record in a 2-store: %v, want ErrStoreFull", err)
	}
}

func TestRecordBounds(t *testing.T) {
	id := testIdentity(t, "alice")
	for name, mod := range map[string]func(*Record){
		"too many urls":  func(r *Record) { r.Rendezvous = make([]string, MaxRendezvous+1) },
		"long url":       func(r *Record) { r.Rendezvous = []string{strings.Repeat("x", MaxURLLen+1)} },
		"bad utf8":       func(r *Record) { r.Rendezvous = []string{"\xff"} },
		"too many addrs": func(r *Record) { r.Addrs = make([]netip.AddrPort, MaxAddrs+1) },
		"invalid addr":   func(r *Record) { r.Addrs = []netip.AddrPort{{}} },
		"zone":           func(r *Record) { r.Addrs = []netip.AddrPort{netip.MustParseAddrPort("[fe80::1%eth0]:1")} },
		"no expiry":      func(r *Record) { r.Expires = time.Time{} },
	} {
		r := &Record{Seq: 1, Expires: testNow.Add(time.Hour)}
		mod(r)
		if err := r.Sign(id); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: Sign gives %v, want ErrMalformed", name, err)
		}
	}
	var unsigned Record
	if _, err := unsigned.Append(nil); !errors.Is(err, ErrMalformed) {
		t.Errorf("unsigned record encodes: %v", err)
	}
}

func TestPutCodes(t *testing.T) {
	for c := PutMalformed; c <= PutNotServer; c++ {
		if got := PutCodeOf(c.Err()); got != c {
			t.Errorf("code %d -> %v -> %d", c, c.Err(), got)
		}
	}
	if PutStored.Err() != nil || PutCodeOf(nil) != PutStored || PutCode(99).Err() == nil {
		t.Error("stored / unknown codes")
	}
}
