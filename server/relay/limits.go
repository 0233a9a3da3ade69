package relay

import (
	"context"
	"hash/maphash"
	"net/netip"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/ferrynet/ferry/internal/iplimit"
)

// ipLimiter is a per-source rate limit in bounded memory: sources hash into a
// fixed table of token buckets, so a flood from many addresses can only make
// the limit stricter for the addresses that share a bucket, never grow memory.
// A source is what iplimit.Key says: an IPv4 address, or an IPv6 /64.
type ipLimiter struct {
	seed    maphash.Seed
	buckets []*rate.Limiter
}

const ipLimiterBuckets = 4096

func newIPLimiter(perSecond float64) *ipLimiter {
	if perSecond < 0 {
		return nil
	}
	burst := max(1, int(2*perSecond))
	l := &ipLimiter{seed: maphash.MakeSeed(), buckets: make([]*rate.Limiter, ipLimiterBuckets)}
	for i := range l.buckets {
		l.buckets[i] = rate.NewLimiter(rate.Limit(perSecond), burst)
	}
	return l
}

func (l *ipLimiter) allow(ip netip.Addr) bool {
	if l == nil {
		return true
	}
	key := iplimit.Key(ip).As16() // an IPv4 key is IPv4-mapped: no /64 key looks like one
	h := maphash.Bytes(l.seed, key[:])
	return l.buckets[h%uint64(len(l.buckets))].Allow()
}

// byteLimiter is a token bucket of bytes per second; nil means unlimited.
type byteLimiter struct{ l *rate.Limiter }

// newByteLimiter allows bps bytes per second with a burst of 50 ms of traffic
// (at least 4 KiB, so that any relayed datagram fits; streams wait in chunks
// of at most the burst).
func newByteLimiter(bps int64) *byteLimiter {
	if bps <= 0 {
		return nil
	}
	burst := max(int(min(bps/20, 1<<30)), 4<<10)
	return &byteLimiter{rate.NewLimiter(rate.Limit(bps), burst)}
}

// allow takes n bytes if available (datagrams: drop when over).
func (b *byteLimiter) allow(now time.Time, n int) bool {
	return b == nil || b.l.AllowN(now, n)
}

// wait blocks until n bytes are available (streams: slow the sender down).
func (b *byteLimiter) wait(ctx context.Context, n int) error {
	if b == nil {
		return nil
	}
	for n > 0 {
		c := min(n, b.l.Burst())
		if err := b.l.WaitN(ctx, c); err != nil {
			return err
		}
		n -= c
	}
	return nil
}

// quota counts live allocations per user, per source (iplimit.Key) and in
// total.
type quota struct {
	mu      sync.Mutex
	perUser map[string]int
	perIP   map[netip.Addr]int
	total   int
	maxUser int // < 0: no cap
	maxIP   int // < 0: no cap
	maxAll  int // 0: no cap
}

func newQuota(maxUser, maxIP, maxAll int) *quota {
	return &quota{perUser: map[string]int{}, perIP: map[netip.Addr]int{}, maxUser: maxUser, maxIP: maxIP, maxAll: maxAll}
}

// check reports the quota that one more allocation for user from ip would
// exceed.
func (q *quota) check(user string, ip netip.Addr) string {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.checkLocked(user, iplimit.Key(ip))
}

func (q *quota) checkLocked(user string, key netip.Addr) string {
	if q.maxAll > 0 && q.total >= q.maxAll {
		return QuotaTotal
	}
	if q.maxIP >= 0 && q.perIP[key] >= q.maxIP {
		return QuotaIP
	}
	if q.maxUser >= 0 && q.perUser[user] >= q.maxUser {
		return QuotaUser
	}
	return ""
}

// acquire takes one allocation for user from ip, or reports the quota in the
// way.
func (q *quota) acquire(user string, ip netip.Addr) string {
	key := iplimit.Key(ip)
	q.mu.Lock()
	defer q.mu.Unlock()
	if r := q.checkLocked(user, key); r != "" {
		return r
	}
	q.perUser[user]++
	q.perIP[key]++
	q.total++
	return ""
}

func (q *quota) release(user string, ip netip.Addr) {
	key := iplimit.Key(ip)
	q.mu.Lock()
	defer q.mu.Unlock()
	if n := q.perUser[user]; n <= 1 {
		delete(q.perUser, user)
	} else {
		q.perUser[user] = n - 1
	}
	if n := q.perIP[key]; n <= 1 {
		delete(q.perIP, key)
	} else {
		q.perIP[key] = n - 1
	}
	q.total--
}

// pion/turn passes the user ID the AuthHandler returns to the quota handler,
// the relay address generator and the events, but not the client's address
// to the generator. The relay's user ID therefore carries both: the user,
// NUL, and the client's source key (iplimit.Key). An address never contains
// NUL, so the last NUL separates them whatever the username holds.

// userIDOf returns the user ID for user authenticated from src.
func userIDOf(user string, src netip.Addr) string {
	return user + "\x00" + iplimit.Key(src).String()
}

// splitUserID returns the user and the source of a user ID from userIDOf.
func splitUserID(id string) (user string, src netip.Addr) {
	i := strings.LastIndexByte(id, 0)
	if i < 0 {
		return id, netip.Addr{}
	}
	src, _ = netip.ParseAddr(id[i+1:])
	return id[:i], src
}

// ipCounter counts live things (connections, allocations) per source, as
// iplimit.Key says, against a cap (< 0: no cap).
type ipCounter struct {
	mu  sync.Mutex
	n   map[netip.Addr]int
	max int
}

func newIPCounter(limit int) *ipCounter {
	return &ipCounter{n: map[netip.Addr]int{}, max: limit}
}

// acquire takes one for ip's source, or reports false at the cap.
func (c *ipCounter) acquire(ip netip.Addr) bool {
	k := iplimit.Key(ip)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.max >= 0 && c.n[k] >= c.max {
		return false
	}
	c.n[k]++
	return true
}

// full reports whether ip's source is at the cap.
func (c *ipCounter) full(ip netip.Addr) bool {
	k := iplimit.Key(ip)
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.max >= 0 && c.n[k] >= c.max
}

func (c *ipCounter) release(ip netip.Addr) {
	k := iplimit.Key(ip)
	c.mu.Lock()
	defer c.mu.Unlock()
	if n := c.n[k]; n <= 1 {
		delete(c.n, k)
	} else {
		c.n[k] = n - 1
	}
}
