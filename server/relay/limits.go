package relay

import (
	"context"
	"hash/maphash"
	"net/netip"
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

// quota counts live allocations per user and in total.
type quota struct {
	mu      sync.Mutex
	perUser map[string]int
	total   int
	maxUser int // < 0: no cap
	maxAll  int // 0: no cap
}

func newQuota(maxUser, maxAll int) *quota {
	return &quota{perUser: map[string]int{}, maxUser: maxUser, maxAll: maxAll}
}

// check reports the quota that one more allocation for user would exceed.
func (q *quota) check(user string) string {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.checkLocked(user)
}

func (q *quota) checkLocked(user string) string {
	if q.maxAll > 0 && q.total >= q.maxAll {
		return QuotaTotal
	}
	if q.maxUser >= 0 && q.perUser[user] >= q.maxUser {
		return QuotaUser
	}
	return ""
}

// acquire takes one allocation for user, or reports the quota in the way.
func (q *quota) acquire(user string) string {
	q.mu.Lock()
	defer q.mu.Unlock()
	if r := q.checkLocked(user); r != "" {
		return r
	}
	q.perUser[user]++
	q.total++
	return ""
}

func (q *quota) release(user string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if n := q.perUser[user]; n <= 1 {
		delete(q.perUser, user)
	} else {
		q.perUser[user] = n - 1
	}
	q.total--
}
