// Package kbucket is the Kademlia routing table of Ferry's DHT: the nodes a
// node knows, sorted into buckets by the length of the prefix their ID shares
// with its own.
//
// The rules, which follow the Kademlia paper, go-libp2p-kad-dht and
// go-ethereum discv5:
//
//   - a bucket holds at most K (default 20) contacts in least-recently-seen
//     order: the head is the contact heard from longest ago;
//   - only a node that answered a request enters the table: the caller
//     reports answers with [Table.Seen], never contacts merely heard of;
//   - a full bucket is not changed at once: the newcomer goes to the bucket's
//     replacement cache, and [Table.Seen] asks the caller to ping the
//     bucket's head. If the head answers it stays (and moves to the tail);
//     if it fails ([Table.Failed]) it is dropped and the most recently seen
//     replacement takes its place. Long-lived nodes are thereby preferred,
//     which is what makes Kademlia resist churn and table flooding;
//   - buckets that no lookup touched within the refresh interval are
//     reported by [Table.StaleBuckets], so the owner can look up a random ID
//     in them ([Table.RandomID]);
//   - IP diversity: at most 2 contacts per bucket and 10 in the whole table
//     may share an IPv4 /24 or an IPv6 /48 (discv5's figures; kad-dht uses
//     2 and 3). Loopback, private and link-local addresses, and contacts
//     without an address, are exempt, so a LAN or a test still works.
//
// A Table is not safe for concurrent use: its owner serialises access (the
// DHT node holds a mutex; the simulator runs on one goroutine). Time comes
// from an injected clock, so tests and the simulator run in virtual time.
package kbucket

import (
	"errors"
	"fmt"
	"math/bits"
	"math/rand/v2"
	"net/netip"
	"slices"
	"time"

	"github.com/ferrynet/ferry/identity"
)

// Defaults.
const (
	// DefaultK is the bucket size, Kademlia's k.
	DefaultK = 20
	// DefaultBucketIPLimit is how many contacts of one bucket may share an
	// IPv4 /24 or an IPv6 /48.
	DefaultBucketIPLimit = 2
	// DefaultTableIPLimit is how many contacts of the whole table may share
	// an IPv4 /24 or an IPv6 /48.
	DefaultTableIPLimit = 10
	// DefaultRefreshInterval is how long a bucket may go without a lookup
	// before it is stale (kad-dht refreshes every 10 minutes).
	DefaultRefreshInterval = 10 * time.Minute
	// DefaultMaxFailures is how many failed requests in a row remove a
	// contact. A failed eviction ping removes it at once.
	DefaultMaxFailures = 2
)

// IDBits is the size of the key space in bits.
const IDBits = identity.IDLen * 8

// ErrBadOption reports an option value out of range.
var ErrBadOption = errors.New("kbucket: bad option")

// Contact is a node as the table knows it: its ID and, if known, the address
// it answered from.
type Contact struct {
	ID identity.PeerID
	// Addr is the node's address; the zero value means unknown and is
	// exempt from the IP diversity limits.
	Addr netip.AddrPort
}

// Outcome says what [Table.Seen] did.
type Outcome int

// Outcomes of [Table.Seen].
const (
	// Updated: the contact was in the table and moved to its bucket's tail.
	Updated Outcome = iota
	// Added: the contact entered the table.
	Added
	// Pending: the bucket is full; the contact waits in the replacement
	// cache, and the returned contact (the bucket's head) must be pinged.
	// Report the ping's answer with Seen, its failure with Failed.
	Pending
	// Cached: the bucket is full and a ping of its head is already under
	// way; the contact waits in the replacement cache.
	Cached
	// Rejected: the contact would break an IP diversity limit, or is the
	// table's own ID.
	Rejected
)

func (o Outcome) String() string {
	switch o {
	case Updated:
		return "updated"
	case Added:
		return "added"
	case Pending:
		return "pending"
	case Cached:
		return "cached"
	case Rejected:
		return "rejected"
	default:
		return fmt.Sprintf("Outcome(%d)", int(o))
	}
}

type entry struct {
	Contact
	lastSeen int64 // unix nanoseconds
	fails    int
}

type bucket struct {
	entries []entry   // least recently seen first
	repl    []Contact // most recently seen last
	pinging bool      // the head is being pinged for an eviction
	touched int64     // last lookup into this bucket, unix nanoseconds
}

// Table is a Kademlia routing table. Create it with [New].
type Table struct {
	self    identity.PeerID
	cfg     config
	buckets []bucket // index: common prefix length with self; grown on demand
	size    int
	created int64
}

type config struct {
	k, replSize, bucketIP, tableIP, maxFails int
	refresh                                  time.Duration
	now                                      func() time.Time
}

// Option configures a [Table].
type Option func(*config) error

// WithK sets the bucket size (default [DefaultK]); also the size of the
// replacement cache unless [WithReplacementSize] says otherwise.
func WithK(k int) Option {
	return func(c *config) error {
		if k < 1 || k > 256 {
			return fmt.Errorf("%w: k = %d, want 1..256", ErrBadOption, k)
		}
		c.k = k
		return nil
	}
}

// WithReplacementSize sets how many contacts each bucket's replacement cache
// keeps (default: k).
func WithReplacementSize(n int) Option {
	return func(c *config) error {
		if n < 0 || n > 256 {
			return fmt.Errorf("%w: replacement cache size %d, want 0..256", ErrBadOption, n)
		}
		c.replSize = n
		return nil
	}
}

// WithIPLimits sets how many contacts per bucket and per table may share an
// IPv4 /24 or IPv6 /48 (defaults [DefaultBucketIPLimit],
// [DefaultTableIPLimit]). 0 disables a limit.
func WithIPLimits(perBucket, perTable int) Option {
	return func(c *config) error {
		if perBucket < 0 || perTable < 0 {
			return fmt.Errorf("%w: IP limits %d, %d must not be negative", ErrBadOption, perBucket, perTable)
		}
		c.bucketIP, c.tableIP = perBucket, perTable
		return nil
	}
}

// WithRefreshInterval sets how long a bucket may go without a lookup before
// [Table.StaleBuckets] reports it (default [DefaultRefreshInterval]).
func WithRefreshInterval(d time.Duration) Option {
	return func(c *config) error {
		if d <= 0 {
			return fmt.Errorf("%w: refresh interval %v must be positive", ErrBadOption, d)
		}
		c.refresh = d
		return nil
	}
}

// WithMaxFailures sets how many failed requests in a row remove a contact
// (default [DefaultMaxFailures]).
func WithMaxFailures(n int) Option {
	return func(c *config) error {
		if n < 1 {
			return fmt.Errorf("%w: max failures %d, want at least 1", ErrBadOption, n)
		}
		c.maxFails = n
		return nil
	}
}

// WithClock sets the clock (default time.Now).
func WithClock(now func() time.Time) Option {
	return func(c *config) error {
		if now == nil {
			return fmt.Errorf("%w: nil clock", ErrBadOption)
		}
		c.now = now
		return nil
	}
}

// New returns an empty table for the node self.
func New(self identity.PeerID, opts ...Option) (*Table, error) {
	c := config{
		k:        DefaultK,
		replSize: -1,
		bucketIP: DefaultBucketIPLimit,
		tableIP:  DefaultTableIPLimit,
		maxFails: DefaultMaxFailures,
		refresh:  DefaultRefreshInterval,
		now:      time.Now,
	}
	for _, o := range opts {
		if err := o(&c); err != nil {
			return nil, err
		}
	}
	if c.replSize < 0 {
		c.replSize = c.k
	}
	return &Table{self: self, cfg: c, created: c.now().UnixNano()}, nil
}

// Self returns the table owner's ID.
func (t *Table) Self() identity.PeerID { return t.self }

// K returns the bucket size.
func (t *Table) K() int { return t.cfg.k }

// Len returns the number of contacts in the table (not counting
// replacement caches).
func (t *Table) Len() int { return t.size }

// CommonPrefixLen returns the number of leading bits a and b share.
func CommonPrefixLen(a, b identity.PeerID) int {
	for i := range a {
		if x := a[i] ^ b[i]; x != 0 {
			return i*8 + bits.LeadingZeros8(x)
		}
	}
	return IDBits
}

// Distance returns the XOR distance of a and b.
func Distance(a, b identity.PeerID) identity.PeerID {
	var d identity.PeerID
	for i := range a {
		d[i] = a[i] ^ b[i]
	}
	return d
}

// Closer reports whether a is closer to target than b.
func Closer(a, b, target identity.PeerID) bool {
	for i := range target {
		da, db := a[i]^target[i], b[i]^target[i]
		if da != db {
			return da < db
		}
	}
	return false
}

func (t *Table) bucketIndex(id identity.PeerID) int {
	return min(CommonPrefixLen(t.self, id), IDBits-1)
}

// find returns the bucket index of id and its position in that bucket, or -1.
func (t *Table) find(id identity.PeerID) (int, int) {
	bi := t.bucketIndex(id)
	if bi >= len(t.buckets) {
		return bi, -1
	}
	for i := range t.buckets[bi].entries {
		if t.buckets[bi].entries[i].ID == id {
			return bi, i
		}
	}
	return bi, -1
}

// Contains reports whether id is in the table.
func (t *Table) Contains(id identity.PeerID) bool {
	_, i := t.find(id)
	return i >= 0
}

// Seen reports that c answered a request (or sent a valid response). It
// returns what the table did and, for [Pending], the contact to ping.
func (t *Table) Seen(c Contact) (Outcome, Contact) {
	if c.ID == t.self {
		return Rejected, Contact{}
	}
	now := t.cfg.now().UnixNano()
	bi, i := t.find(c.ID)
	if i >= 0 {
		b := &t.buckets[bi]
		e := b.entries[i]
		e.lastSeen, e.fails = now, 0
		if c.Addr.IsValid() && c.Addr != e.Addr && t.diverse(bi, c.Addr, e.Addr) {
			e.Addr = c.Addr
		}
		if i == 0 {
			b.pinging = false // the head answered its eviction ping
		}
		copy(b.entries[i:], b.entries[i+1:])
		b.entries[len(b.entries)-1] = e
		return Updated, Contact{}
	}
	if !t.diverse(bi, c.Addr, netip.AddrPort{}) {
		return Rejected, Contact{}
	}
	for bi >= len(t.buckets) {
		t.buckets = append(t.buckets, bucket{touched: t.created})
	}
	b := &t.buckets[bi]
	if len(b.entries) < t.cfg.k {
		b.entries = append(b.entries, entry{Contact: c, lastSeen: now})
		t.size++
		t.removeReplacement(b, c.ID)
		return Added, Contact{}
	}
	t.addReplacement(b, c)
	if b.pinging {
		return Cached, Contact{}
	}
	b.pinging = true
	return Pending, b.entries[0].Contact
}

// Failed reports that id did not answer a request. A contact is removed
// after [WithMaxFailures] failures in a row, or at once if it was being
// pinged for an eviction; the most recently seen replacement then takes
// its place. Failed reports whether the contact left the table.
func (t *Table) Failed(id identity.PeerID) bool {
	bi, i := t.find(id)
	if i < 0 {
		if bi < len(t.buckets) {
			t.removeReplacement(&t.buckets[bi], id)
		}
		return false
	}
	b := &t.buckets[bi]
	b.entries[i].fails++
	evicting := i == 0 && b.pinging
	if !evicting && b.entries[i].fails < t.cfg.maxFails {
		return false
	}
	if i == 0 {
		b.pinging = false
	}
	b.entries = slices.Delete(b.entries, i, i+1)
	t.size--
	t.promote(bi)
	return true
}

// Remove drops id from the table and its replacement cache, promoting a
// replacement. It reports whether id was in the table.
func (t *Table) Remove(id identity.PeerID) bool {
	bi, i := t.find(id)
	if bi < len(t.buckets) {
		t.removeReplacement(&t.buckets[bi], id)
	}
	if i < 0 {
		return false
	}
	b := &t.buckets[bi]
	if i == 0 {
		b.pinging = false
	}
	b.entries = slices.Delete(b.entries, i, i+1)
	t.size--
	t.promote(bi)
	return true
}

// promote moves the most recently seen replacement that fits the IP
// diversity limits into bucket bi.
func (t *Table) promote(bi int) {
	b := &t.buckets[bi]
	for j := len(b.repl) - 1; j >= 0; j-- {
		c := b.repl[j]
		if !t.diverse(bi, c.Addr, netip.AddrPort{}) {
			continue
		}
		b.repl = slices.Delete(b.repl, j, j+1)
		b.entries = append(b.entries, entry{Contact: c, lastSeen: t.cfg.now().UnixNano()})
		t.size++
		return
	}
}

func (t *Table) addReplacement(b *bucket, c Contact) {
	if t.cfg.replSize == 0 {
		return
	}
	t.removeReplacement(b, c.ID)
	if len(b.repl) == t.cfg.replSize {
		b.repl = slices.Delete(b.repl, 0, 1)
	}
	b.repl = append(b.repl, c)
}

func (t *Table) removeReplacement(b *bucket, id identity.PeerID) {
	for j := range b.repl {
		if b.repl[j].ID == id {
			b.repl = slices.Delete(b.repl, j, j+1)
			return
		}
	}
}

// IPGroup returns the diversity group of addr (its IPv4 /24 or IPv6 /48)
// and whether the limits apply to it at all.
func IPGroup(addr netip.AddrPort) (netip.Prefix, bool) {
	ip := addr.Addr().Unmap()
	if !ip.IsValid() || ip.IsLoopback() || ip.IsPrivate() || ip.IsLinkLocalUnicast() || ip.IsUnspecified() {
		return netip.Prefix{}, false
	}
	bitsLen := 48
	if ip.Is4() {
		bitsLen = 24
	}
	p, err := ip.Prefix(bitsLen)
	return p, err == nil
}

// diverse reports whether a contact at addr may join bucket bi without
// breaking a diversity limit, not counting the contact at except (the one
// being replaced by an address change).
func (t *Table) diverse(bi int, addr, except netip.AddrPort) bool {
	g, ok := IPGroup(addr)
	if !ok {
		return true
	}
	inBucket, inTable := 0, 0
	for j := range t.buckets {
		for _, e := range t.buckets[j].entries {
			if e.Addr == except && except.IsValid() {
				continue
			}
			if eg, ok := IPGroup(e.Addr); ok && eg == g {
				inTable++
				if j == bi {
					inBucket++
				}
			}
		}
	}
	if t.cfg.bucketIP > 0 && inBucket >= t.cfg.bucketIP {
		return false
	}
	return t.cfg.tableIP == 0 || inTable < t.cfg.tableIP
}

// Closest returns up to n contacts of the table closest to target by XOR
// distance, closest first.
func (t *Table) Closest(target identity.PeerID, n int) []Contact {
	return t.AppendClosest(nil, target, n, identity.PeerID{}, false)
}

// AppendClosest appends to dst up to n contacts closest to target, closest
// first, leaving out the contact exclude if skip is set (the requester,
// which need not learn about itself).
//
// It visits buckets in distance order instead of sorting the whole table:
// with i the common prefix length of self and target, the contacts of
// bucket i are closer to target than any other; then come those of the
// buckets above i (they all differ from target first at bit i); then
// buckets i-1, i-2, ..., each farther than the last.
func (t *Table) AppendClosest(dst []Contact, target identity.PeerID, n int, exclude identity.PeerID, skip bool) []Contact {
	if n <= 0 {
		return dst
	}
	start := len(dst)
	add := func(from, to int) { // buckets [from, to)
		mark := len(dst)
		for j := from; j < to && j < len(t.buckets); j++ {
			for _, e := range t.buckets[j].entries {
				if skip && e.ID == exclude {
					continue
				}
				dst = append(dst, e.Contact)
			}
		}
		group := dst[mark:]
		slices.SortFunc(group, func(a, b Contact) int { return compareDist(a.ID, b.ID, target) })
	}
	i := t.bucketIndex(target)
	if target == t.self {
		i = IDBits - 1
	}
	add(i, i+1)
	if len(dst)-start < n {
		add(i+1, len(t.buckets))
	}
	for j := i - 1; j >= 0 && len(dst)-start < n; j-- {
		add(j, j+1)
	}
	if len(dst)-start > n {
		dst = dst[:start+n]
	}
	return dst
}

func compareDist(a, b, target identity.PeerID) int {
	for i := range target {
		da, db := a[i]^target[i], b[i]^target[i]
		if da != db {
			if da < db {
				return -1
			}
			return 1
		}
	}
	return 0
}

// Contacts returns every contact in the table, bucket by bucket, least
// recently seen first.
func (t *Table) Contacts() []Contact {
	out := make([]Contact, 0, t.size)
	for j := range t.buckets {
		for _, e := range t.buckets[j].entries {
			out = append(out, e.Contact)
		}
	}
	return out
}

// LastSeen returns when id last answered, and whether it is in the table.
func (t *Table) LastSeen(id identity.PeerID) (time.Time, bool) {
	bi, i := t.find(id)
	if i < 0 {
		return time.Time{}, false
	}
	return time.Unix(0, t.buckets[bi].entries[i].lastSeen), true
}

// Touch records that a lookup for target ran, which refreshes the bucket
// target falls in.
func (t *Table) Touch(target identity.PeerID) {
	bi := t.bucketIndex(target)
	if bi < len(t.buckets) {
		t.buckets[bi].touched = t.cfg.now().UnixNano()
	}
}

// StaleBuckets returns the indexes (common prefix lengths) of the buckets
// that no lookup touched within the refresh interval, up to the deepest
// non-empty bucket. Refresh bucket i by looking up [Table.RandomID](i).
func (t *Table) StaleBuckets() []int {
	now := t.cfg.now().UnixNano()
	var out []int
	for j := range t.buckets {
		if now-t.buckets[j].touched >= int64(t.cfg.refresh) {
			out = append(out, j)
		}
	}
	return out
}

// RandomID returns a random ID that shares exactly cpl leading bits with the
// table's own ID, so falls in bucket cpl. r supplies the randomness (the
// simulator passes a seeded source).
func (t *Table) RandomID(cpl int, r *rand.Rand) identity.PeerID {
	cpl = max(0, min(cpl, IDBits-1))
	var id identity.PeerID
	for i := range id {
		id[i] = byte(r.Uint32())
	}
	// Copy the first cpl bits of self, flip bit cpl, keep the rest random.
	for b := 0; b <= cpl; b++ {
		mask := byte(0x80) >> (b % 8)
		bit := t.self[b/8] & mask
		if b == cpl {
			bit ^= mask
		}
		id[b/8] = id[b/8]&^mask | bit
	}
	return id
}

// NumBuckets returns how many buckets the table has opened: one more than
// the deepest common prefix length it has seen.
func (t *Table) NumBuckets() int { return len(t.buckets) }

// HasRoom reports whether a contact with id would enter the table at once
// if it answered: it is not there yet and its bucket is not full. A node
// that hears from an unknown server pings it only then.
func (t *Table) HasRoom(id identity.PeerID) bool {
	if id == t.self {
		return false
	}
	bi, i := t.find(id)
	if i >= 0 {
		return false
	}
	return bi >= len(t.buckets) || len(t.buckets[bi].entries) < t.cfg.k
}
