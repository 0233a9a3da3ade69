// Package turnrest issues and checks TURN REST credentials, the scheme
// coturn calls use-auth-secret (draft-uberti-behave-turn-rest): the username
// is "EXPIRY<sep>USER", EXPIRY being the Unix time in seconds after which the
// credentials stop working, and the password is
// base64(HMAC-SHA1(secret, username)). A server that holds the secret checks
// a username without any state of its own.
//
// The rendezvous server issues such credentials, and Ferry's relay (or any
// coturn configured with the same secret) accepts them; both use this
// package, so the two cannot drift apart.
package turnrest

import (
	"crypto/hmac"
	"crypto/sha1" //nolint:gosec // the TURN REST password is HMAC-SHA1 by definition
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"strconv"
	"strings"
	"time"
)

// Errors of Parse, Check and Verify.
var (
	// ErrBadUsername means the part of a username before the separator
	// is not a Unix time.
	ErrBadUsername = errors.New("turnrest: username does not start with a Unix expiry time")
	// ErrExpired means the username's expiry time has passed.
	ErrExpired = errors.New("turnrest: credentials expired")
	// ErrBadPassword means the password is not the one the secret gives
	// for the username.
	ErrBadPassword = errors.New("turnrest: wrong password")
	// ErrTooFar means the username's expiry is further in the future than
	// the checker's maximum credential lifetime.
	ErrTooFar = errors.New("turnrest: credentials expire further in the future than allowed")
)

// Password returns the password of username under secret:
// base64(HMAC-SHA1(secret, username)).
func Password(secret, username string) string {
	m := hmac.New(sha1.New, []byte(secret))
	m.Write([]byte(username))
	return base64.StdEncoding.EncodeToString(m.Sum(nil))
}

// Credentials returns a username and password for user that work until
// expiry (to the second, rounded down). The username is
// "EXPIRY<sep>USER", or the bare EXPIRY when user is empty.
func Credentials(secret, user, sep string, expiry time.Time) (username, password string) {
	username = strconv.FormatInt(expiry.Unix(), 10)
	if user != "" {
		username += sep + user
	}
	return username, Password(secret, username)
}

// Parse splits username at the first sep into its expiry time and its user.
// A username without sep is a bare expiry time, and its user is the whole
// username (so that per-user accounting still has a key for it). An empty
// sep separates nothing: the whole username is then the expiry time.
func Parse(username, sep string) (expiry time.Time, user string, err error) {
	ts, user := username, username
	if i := strings.Index(username, sep); sep != "" && i >= 0 {
		ts, user = username[:i], username[i+len(sep):]
	}
	secs, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return time.Time{}, "", ErrBadUsername
	}
	return time.Unix(secs, 0), user, nil
}

// Check parses username and reports whether it is still valid at now: it
// is until the end of its expiry second. It returns the user, or
// ErrBadUsername or ErrExpired.
func Check(username, sep string, now time.Time) (user string, err error) {
	expiry, user, err := Parse(username, sep)
	if err != nil {
		return "", err
	}
	if expiry.Unix() < now.Unix() {
		return "", ErrExpired
	}
	return user, nil
}

// CheckBounded is Check that also refuses, with ErrTooFar, a username whose
// expiry is more than maxLifetime after now: a relay bounds how long
// credentials it did not issue may work, so that a leaked or carelessly
// issued username stops working within that bound. maxLifetime <= 0 means
// no bound.
func CheckBounded(username, sep string, now time.Time, maxLifetime time.Duration) (user string, err error) {
	expiry, user, err := Parse(username, sep)
	if err != nil {
		return "", err
	}
	if expiry.Unix() < now.Unix() {
		return "", ErrExpired
	}
	// Compare in seconds: far-future expiries overflow time.Duration.
	if maxLifetime > 0 && expiry.Unix()-now.Unix() > int64(maxLifetime/time.Second) {
		return "", ErrTooFar
	}
	return user, nil
}

// Verify checks username as Check does and password against secret, in
// constant time. It returns the user, or ErrBadUsername, ErrExpired or
// ErrBadPassword.
func Verify(secret, username, password, sep string, now time.Time) (user string, err error) {
	user, err = Check(username, sep, now)
	if err != nil {
		return "", err
	}
	if subtle.ConstantTimeCompare([]byte(password), []byte(Password(secret, username))) != 1 {
		return "", ErrBadPassword
	}
	return user, nil
}
