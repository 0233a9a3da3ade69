package dht

import (
	"bytes"
	"fmt"
	"slices"
	"time"

	"github.com/ferrynet/ferry/identity"
)

// Store defaults.
const (
	// DefaultMaxRecords bounds the records one node stores (about 1 MB).
	DefaultMaxRecords = 1024
	// DefaultMaxPerTopic is how many announcements one topic holds: as many
	// as one VALUES response carries, like hyperdht's 20 peers per lookup.
	DefaultMaxPerTopic = MaxValues
	// DefaultMaxPerSource is how many topic announcements from one peer a
	// node stores.
	DefaultMaxPerSource = 16
)

// Store holds the records a DHT server keeps for others. It checks every
// record before storing it (size, key, expiry, sequence, caps, signature),
// keeps the newest per signer and key, and drops expired ones. It is not
// safe for concurrent use; its owner serialises access.
type Store struct {
	now                          func() time.Time
	maxRecords, perTopic, perSrc int
	peers                        map[identity.PeerID]*Record
	topics                       map[identity.PeerID]map[identity.PeerID]*Record // topic -> signer -> record
	perSource                    map[identity.PeerID]int                         // announcements per signer
	count                        int
}

// StoreOption configures a [Store].
type StoreOption func(*Store) error

// WithStoreClock sets the store's clock (default time.Now).
func WithStoreClock(now func() time.Time) StoreOption {
	return func(s *Store) error {
		if now == nil {
			return fmt.Errorf("%w: nil clock", ErrBadOption)
		}
		s.now = now
		return nil
	}
}

// WithStoreLimits sets the total, per-topic and per-source caps (defaults
// [DefaultMaxRecords], [DefaultMaxPerTopic], [DefaultMaxPerSource]). The
// per-topic cap is at most [MaxValues], so one response carries a topic.
func WithStoreLimits(total, perTopic, perSource int) StoreOption {
	return func(s *Store) error {
		if total < 1 || perTopic < 1 || perTopic > MaxValues || perSource < 1 {
			return fmt.Errorf("%w: store limits %d, %d, %d (want >= 1, per topic <= %d)", ErrBadOption, total, perTopic, perSource, MaxValues)
		}
		s.maxRecords, s.perTopic, s.perSrc = total, perTopic, perSource
		return nil
	}
}

// NewStore returns an empty store.
func NewStore(opts ...StoreOption) (*Store, error) {
	s := &Store{
		now:        time.Now,
		maxRecords: DefaultMaxRecords,
		perTopic:   DefaultMaxPerTopic,
		perSrc:     DefaultMaxPerSource,
		peers:      map[identity.PeerID]*Record{},
		topics:     map[identity.PeerID]map[identity.PeerID]*Record{},
		perSource:  map[identity.PeerID]int{},
	}
	for _, o := range opts {
		if err := o(s); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// Len returns the number of records stored, expired ones not yet dropped
// included.
func (s *Store) Len() int { return s.count }

// CheckRecord runs the checks that need no stored state: size, key, expiry
// and signature. Lookups use it on records they receive.
func CheckRecord(key identity.PeerID, r *Record, now time.Time) error {
	if err := checkStateless(key, r, now); err != nil {
		return err
	}
	return r.Verify()
}

func checkStateless(key identity.PeerID, r *Record, now time.Time) error {
	if r == nil {
		return malformedError("record", "missing")
	}
	if n := r.Len(); n > MaxRecordSize {
		return fmt.Errorf("dht: record is %d bytes, maximum %d: %w", n, MaxRecordSize, ErrRecordTooLarge)
	}
	if len(r.PublicKey) == 0 {
		return malformedError("record", "no public key")
	}
	if k := r.Key(); k != key {
		return fmt.Errorf("dht: record for %s offered under %s: %w", k.Short(), key.Short(), ErrWrongKey)
	}
	if !now.Before(r.Expires) {
		return fmt.Errorf("dht: record by %s expired at %v: %w", r.PeerID().Short(), r.Expires.UTC(), ErrExpired)
	}
	if r.Expires.After(now.Add(MaxTTL)) {
		return fmt.Errorf("dht: record by %s expires at %v, more than %v ahead: %w", r.PeerID().Short(), r.Expires.UTC(), MaxTTL, ErrExpiryTooFar)
	}
	return nil
}

// Put stores r under key after checking it. A record equal to the one
// stored (a republish) is accepted and changes nothing.
func (s *Store) Put(key identity.PeerID, r *Record) error {
	now := s.now()
	if err := checkStateless(key, r, now); err != nil {
		return err
	}
	signer := r.PeerID()
	old := s.lookup(key, signer, r.IsAnnouncement())
	if old != nil && !now.Before(old.Expires) {
		s.remove(key, signer, old)
		old = nil
	}
	if old != nil {
		if old.Seq > r.Seq || (old.Seq == r.Seq && !bytes.Equal(old.encodedBody(), r.encodedBody())) {
			return fmt.Errorf("dht: record by %s has seq %d, stored %d: %w", signer.Short(), r.Seq, old.Seq, ErrOldSeq)
		}
		if old.Seq == r.Seq {
			return nil
		}
	}
	if old == nil {
		if r.IsAnnouncement() {
			s.expireTopic(key, now)
			if len(s.topics[key]) >= s.perTopic {
				return fmt.Errorf("dht: topic %s holds %d announcements: %w", key.Short(), s.perTopic, ErrTopicFull)
			}
			if s.perSource[signer] >= s.perSrc {
				return fmt.Errorf("dht: %s has %d announcements stored: %w", signer.Short(), s.perSrc, ErrSourceLimit)
			}
		}
		if s.count >= s.maxRecords {
			s.Expire()
			if s.count >= s.maxRecords {
				return fmt.Errorf("dht: %d records stored: %w", s.count, ErrStoreFull)
			}
		}
	}
	if err := r.Verify(); err != nil {
		return err
	}
	if old != nil {
		s.remove(key, signer, old)
	}
	if r.IsAnnouncement() {
		t := s.topics[key]
		if t == nil {
			t = map[identity.PeerID]*Record{}
			s.topics[key] = t
		}
		t[signer] = r
		s.perSource[signer]++
	} else {
		s.peers[key] = r
	}
	s.count++
	return nil
}

func (s *Store) lookup(key, signer identity.PeerID, topic bool) *Record {
	if topic {
		return s.topics[key][signer]
	}
	return s.peers[key]
}

func (s *Store) remove(key, signer identity.PeerID, r *Record) {
	if r.IsAnnouncement() {
		delete(s.topics[key], signer)
		if len(s.topics[key]) == 0 {
			delete(s.topics, key)
		}
		if s.perSource[signer]--; s.perSource[signer] <= 0 {
			delete(s.perSource, signer)
		}
	} else {
		delete(s.peers, key)
	}
	s.count--
}

func (s *Store) expireTopic(key identity.PeerID, now time.Time) {
	for signer, r := range s.topics[key] {
		if !now.Before(r.Expires) {
			s.remove(key, signer, r)
		}
	}
}

// Get returns the live records stored under key: a peer record, or a
// topic's announcements ordered by signer. Expired ones are dropped.
func (s *Store) Get(key identity.PeerID) []*Record {
	now := s.now()
	var out []*Record
	if r := s.peers[key]; r != nil {
		if now.Before(r.Expires) {
			out = append(out, r)
		} else {
			s.remove(key, r.PeerID(), r)
		}
	}
	s.expireTopic(key, now)
	t := s.topics[key]
	if len(t) == 0 {
		return out
	}
	signers := make([]identity.PeerID, 0, len(t))
	for id := range t {
		signers = append(signers, id)
	}
	slices.SortFunc(signers, func(a, b identity.PeerID) int { return bytes.Compare(a[:], b[:]) })
	for _, id := range signers {
		if len(out) == MaxValues {
			break
		}
		out = append(out, t[id])
	}
	return out
}

// Expire drops every expired record and returns how many it dropped.
func (s *Store) Expire() int {
	now := s.now()
	before := s.count
	for key, r := range s.peers {
		if !now.Before(r.Expires) {
			s.remove(key, r.PeerID(), r)
		}
	}
	for key := range s.topics {
		s.expireTopic(key, now)
	}
	return before - s.count
}
