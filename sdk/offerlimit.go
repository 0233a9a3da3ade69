package sdk

import (
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Defaults for WithOfferLimit.
const (
	// DefaultOfferRate is how many offers a second one sender may make,
	// on average, before the node ignores the rest.
	DefaultOfferRate = 1.0
	// DefaultOfferBurst is how many offers one sender may make at once.
	DefaultOfferBurst = 8
)

// maxOfferSenders bounds the senders the offer limiter remembers; when it
// is full of senders that are still limited, offers from new senders are
// ignored until some of them have refilled.
const maxOfferSenders = 4096

// offerLimiter rate-limits incoming offers per sender, in bounded memory.
type offerLimiter struct {
	limit rate.Limit
	burst int

	mu   sync.Mutex
	byID map[PeerID]*rate.Limiter
}

func newOfferLimiter(perSecond float64, burst int) *offerLimiter {
	return &offerLimiter{limit: rate.Limit(perSecond), burst: burst, byID: map[PeerID]*rate.Limiter{}}
}

// allow reports whether an offer from p at now is within p's rate.
func (o *offerLimiter) allow(p PeerID, now time.Time) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	l := o.byID[p]
	if l == nil {
		if len(o.byID) >= maxOfferSenders {
			// A sender whose bucket is full again is forgotten at no
			// cost: a new limiter would start full too.
			for id, old := range o.byID {
				if old.TokensAt(now) >= float64(o.burst) {
					delete(o.byID, id)
				}
			}
			if len(o.byID) >= maxOfferSenders {
				return false
			}
		}
		l = rate.NewLimiter(o.limit, o.burst)
		o.byID[p] = l
	}
	return l.AllowN(now, 1)
}
