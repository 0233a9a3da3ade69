package rendezvous

import (
	"net/netip"
	"sync"
	"time"
)

// bucket is a token bucket: rate tokens per second, up to burst, starting
// full. It is not safe for concurrent use.
type bucket struct {
	tokens float64
	last   int64 // unix nanoseconds of the last update; 0 = never used
}

// take takes one token at time now. If none is left it returns false and
// how long until one is.
func (b *bucket) take(now int64, rate float64, burst int) (bool, time.Duration) {
	if rate < 0 {
		return true, 0
	}
	if b.last == 0 {
		b.tokens = float64(burst)
	} else if now > b.last {
		b.tokens = min(float64(burst), b.tokens+float64(now-b.last)/1e9*rate)
	}
	b.last = now
	if b.tokens >= 1 {
		b.tokens--
		return true, 0
	}
	return false, time.Duration((1 - b.tokens) / rate * 1e9)
}

// full reports whether the bucket would be full at now (so forgetting it
// changes nothing).
func (b *bucket) full(now int64, rate float64, burst int) bool {
	return b.last == 0 || b.tokens+float64(now-b.last)/1e9*rate >= float64(burst)
}

// ipLimits counts connections per source IP and overall, and rate-limits
// new connections per IP.
type ipLimits struct {
	rate     float64
	burst    int
	maxPerIP int
	maxTotal int
	login    rateSpec // LOGIN attempts per IP
	cred     rateSpec // CREDENTIALS_REQUESTs per IP

	mu    sync.Mutex
	total int
	ips   map[netip.Addr]*ipState
}

type ipState struct {
	conns int
	b     bucket // new connections
	login bucket
	cred  bucket
}

type rateSpec struct {
	rate  float64
	burst int
}

func newIPLimits(s *settings) *ipLimits {
	return &ipLimits{
		rate: s.IPConnectRate, burst: s.IPConnectBurst,
		maxPerIP: s.MaxConnsPerIP, maxTotal: s.MaxConns,
		login: rateSpec{s.IPLoginRate, s.IPLoginBurst},
		cred:  rateSpec{s.IPCredentialRate, s.IPCredentialBurst},
		ips:   map[netip.Addr]*ipState{},
	}
}

// admit accounts a new connection from ip. It returns "" when admitted,
// else the limit that refused it (a Limit* scope) and when to retry.
func (l *ipLimits) admit(ip netip.Addr, now int64) (string, time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.maxTotal > 0 && l.total >= l.maxTotal {
		return LimitMaxConns, 5 * time.Second
	}
	st := l.ips[ip]
	if st == nil {
		st = &ipState{}
		l.ips[ip] = st
	}
	if l.maxPerIP > 0 && st.conns >= l.maxPerIP {
		return LimitIPConns, 5 * time.Second
	}
	if ok, wait := st.b.take(now, l.rate, l.burst); !ok {
		return LimitIPConnect, wait
	}
	st.conns++
	l.total++
	return "", 0
}

// takeLogin takes a LOGIN attempt from ip's bucket; false says when to
// retry.
func (l *ipLimits) takeLogin(ip netip.Addr, now int64) (bool, time.Duration) {
	return l.take(ip, now, func(st *ipState) *bucket { return &st.login }, l.login)
}

// takeCredentials takes a CREDENTIALS_REQUEST from ip's bucket.
func (l *ipLimits) takeCredentials(ip netip.Addr, now int64) (bool, time.Duration) {
	return l.take(ip, now, func(st *ipState) *bucket { return &st.cred }, l.cred)
}

// take takes from one bucket of a connected IP (its state exists while it
// has a connection).
func (l *ipLimits) take(ip netip.Addr, now int64, which func(*ipState) *bucket, r rateSpec) (bool, time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	st := l.ips[ip]
	if st == nil {
		st = &ipState{}
		l.ips[ip] = st
	}
	return which(st).take(now, r.rate, r.burst)
}

// release accounts the end of a connection admitted from ip.
func (l *ipLimits) release(ip netip.Addr) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.total--
	if st := l.ips[ip]; st != nil {
		st.conns--
	}
}

// sweep forgets IPs with no connections and a full bucket, so that the map
// holds only what is in use.
func (l *ipLimits) sweep(now int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for ip, st := range l.ips {
		if st.conns == 0 && st.b.full(now, l.rate, l.burst) &&
			st.login.full(now, l.login.rate, l.login.burst) && st.cred.full(now, l.cred.rate, l.cred.burst) {
			delete(l.ips, ip)
		}
	}
}

// size returns how many IPs are tracked (for tests).
func (l *ipLimits) size() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.ips)
}
