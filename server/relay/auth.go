package relay

import (
	"crypto/md5" //nolint:gosec // the STUN long-term key is MD5 by definition (RFC 8489 section 9.2.2)
	"errors"
	"slices"
	"sync"
	"time"

	"github.com/ferrynet/ferry/internal/turnrest"
)

// Auth failure reasons: the label values of ferry_relay_auth_failures_total.
const (
	AuthWrongRealm   = "wrong_realm"    // REALM differs from the configured realm
	AuthUnknownUser  = "unknown_user"   // not a static user, and no REST secret applies
	AuthBadUsername  = "bad_username"   // a REST username whose expiry is not a number
	AuthExpired      = "expired"        // a REST username whose expiry has passed
	AuthTooFar       = "expiry_too_far" // a REST username valid for longer than MaxCredentialLifetime
	AuthBadIntegrity = "bad_integrity"  // MESSAGE-INTEGRITY does not match: forged or wrong password
)

// maxChosenCache bounds the memory of which secret verified which REST username.
const maxChosenCache = 16384

// authenticator resolves usernames to long-term keys: static users, and
// coturn's TURN REST scheme (internal/turnrest: username "expiry<sep>user",
// password base64(HMAC-SHA1(secret, username))) with several secrets for
// rotation.
type authenticator struct {
	realm   string
	sep     string
	secrets []string
	users   map[string][]byte // username -> MD5(username:realm:password)
	now     func() time.Time
	maxLife time.Duration // furthest a REST expiry may be; 0: no bound

	mu     sync.Mutex
	chosen map[string]int // REST username -> index of the secret that verified it
}

func newAuthenticator(realm, sep string, secrets []string, users map[string]string, now func() time.Time, maxLife time.Duration) *authenticator {
	a := &authenticator{
		realm: realm, sep: sep, secrets: slices.Clone(secrets), users: map[string][]byte{}, now: now,
		maxLife: maxLife, chosen: map[string]int{},
	}
	for u, p := range users {
		a.users[u] = longTermKey(u, realm, p)
	}
	return a
}

func longTermKey(username, realm, password string) []byte {
	h := md5.New() //nolint:gosec // see import
	h.Write([]byte(username + ":" + realm + ":" + password))
	return h.Sum(nil)
}

// RESTPassword returns the TURN REST password for username under secret:
// base64(HMAC-SHA1(secret, username)), as coturn's --use-auth-secret expects.
func RESTPassword(secret, username string) string { return turnrest.Password(secret, username) }

// RESTCredentials returns a TURN REST username and password for user, valid
// until expiry: the format coturn accepts with --use-auth-secret, and the one
// Ferry's rendezvous server issues (both are internal/turnrest).
func RESTCredentials(secret, user, separator string, expiry time.Time) (username, password string) {
	return turnrest.Credentials(secret, user, separator, expiry)
}

// candidates returns the user ID (for quotas) and the possible keys for a
// username, or the reason it cannot authenticate.
func (a *authenticator) candidates(username, realm string) (userID string, keys [][]byte, reason string) {
	if realm != a.realm {
		return "", nil, AuthWrongRealm
	}
	if k, ok := a.users[username]; ok {
		return username, [][]byte{k}, ""
	}
	if len(a.secrets) == 0 {
		return "", nil, AuthUnknownUser
	}
	user, err := turnrest.CheckBounded(username, a.sep, a.now(), a.maxLife)
	switch {
	case errors.Is(err, turnrest.ErrExpired):
		return "", nil, AuthExpired
	case errors.Is(err, turnrest.ErrTooFar):
		return "", nil, AuthTooFar
	case err != nil:
		return "", nil, AuthBadUsername
	}
	keys = make([][]byte, len(a.secrets))
	for i, s := range a.secrets {
		keys[i] = longTermKey(username, realm, turnrest.Password(s, username))
	}
	return user, keys, ""
}

// key returns the one key pion/turn should check a request's integrity with.
// With several REST secrets it is the one a prior verify call chose for this
// username; the relay calls verify on every authenticated request before
// pion/turn sees it.
func (a *authenticator) key(username, realm string) (userID string, key []byte, reason string) {
	userID, keys, reason := a.candidates(username, realm)
	if reason != "" {
		return "", nil, reason
	}
	if len(keys) == 1 {
		return userID, keys[0], ""
	}
	a.mu.Lock()
	i, ok := a.chosen[username]
	a.mu.Unlock()
	if !ok || i >= len(keys) {
		i = 0
	}
	return userID, keys[i], ""
}

// verify checks m's MESSAGE-INTEGRITY (at offset mi) against every key the
// username could have. It returns the matching key, and remembers which secret
// it was so that key returns it.
func (a *authenticator) verify(m stunMsg, mi int, username, realm string) ([]byte, bool) {
	_, keys, reason := a.candidates(username, realm)
	if reason != "" {
		return nil, false
	}
	for i, k := range keys {
		if m.checkIntegrity(mi, k) {
			if len(keys) > 1 {
				a.mu.Lock()
				if len(a.chosen) >= maxChosenCache {
					clear(a.chosen)
				}
				a.chosen[username] = i
				a.mu.Unlock()
			}
			return k, true
		}
	}
	return nil, false
}

// needsVerify reports whether requests must be verified before pion/turn sees
// them so that key can pick among several secrets.
func (a *authenticator) needsVerify() bool { return len(a.secrets) > 1 }
