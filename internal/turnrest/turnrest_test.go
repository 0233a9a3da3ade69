package turnrest

import (
	"errors"
	"testing"
	"time"

	"github.com/pion/turn/v5"
)

// Known answers computed apart from this code, with
// `printf %s USERNAME | openssl dgst -sha1 -hmac SECRET -binary | base64`.
var vectors = []struct{ secret, username, password string }{
	{"secret", "1700000000:alice", "d8soP47RbdIKLDUOpnJPVQyq5Ts="},
	{"s3cret", "1700000000:alice", "TtElzSjT0GdnTQ9xdcRNxx96yQs="},
	{"", "1700000000:alice", "rqBBD+hnu5lsggfwzdJtEMIA/sc="},
	{"secret", "1700000000", "WGw37+g43pfwVUmrc9tgArn/juE="},
	{"s3cret", "1700003600:k2b4xyz", "brifKs3YStaxU19G+woy2K7XSE0="},
	{"secret", "1234567890-bob", "zyBWD/cWVioQ36wApfQ32Y6ZUnw="},
}

func TestPasswordKnownAnswers(t *testing.T) {
	for _, v := range vectors {
		if got := Password(v.secret, v.username); got != v.password {
			t.Errorf("Password(%q, %q) = %s, want %s", v.secret, v.username, got, v.password)
		}
	}
}

func TestCredentials(t *testing.T) {
	exp := time.Unix(1_700_000_000, 999_000_000) // the fraction is dropped
	for _, tc := range []struct {
		user, sep, wantUser, wantPass string
	}{
		{"alice", ":", "1700000000:alice", "d8soP47RbdIKLDUOpnJPVQyq5Ts="},
		{"", ":", "1700000000", "WGw37+g43pfwVUmrc9tgArn/juE="},
	} {
		u, p := Credentials("secret", tc.user, tc.sep, exp)
		if u != tc.wantUser || p != tc.wantPass {
			t.Errorf("Credentials(secret, %q, %q) = %q, %q; want %q, %q", tc.user, tc.sep, u, p, tc.wantUser, tc.wantPass)
		}
	}
	if u, _ := Credentials("k", "bob", "-", time.Unix(1_234_567_890, 0)); u != "1234567890-bob" {
		t.Errorf("custom separator: %q", u)
	}
}

// pion's coturn-style generator computes the same password for the same
// username.
func TestCredentialsMatchPion(t *testing.T) {
	pu, pp, err := turn.GenerateLongTermTURNRESTCredentials("secret", "dave", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	exp, user, err := Parse(pu, ":")
	if err != nil || user != "dave" {
		t.Fatalf("Parse(%q) = %v, %q, %v", pu, exp, user, err)
	}
	if u, p := Credentials("secret", "dave", ":", exp); u != pu || p != pp {
		t.Fatalf("Credentials = %q, %q; pion gives %q, %q", u, p, pu, pp)
	}
}

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		username, sep string
		expiry        int64
		user          string
		err           error
	}{
		{"1700000100:alice", ":", 1_700_000_100, "alice", nil},
		{"1700000100:a:b", ":", 1_700_000_100, "a:b", nil}, // the first separator splits
		{"1700000100:", ":", 1_700_000_100, "", nil},
		{"1700000100", ":", 1_700_000_100, "1700000100", nil},
		{"1700000100-carol", "-", 1_700_000_100, "carol", nil},
		{"1700000100::dan", "::", 1_700_000_100, "dan", nil},
		{"1700000100:alice", "-", 0, "", ErrBadUsername},
		{"1700000100", "", 1_700_000_100, "1700000100", nil},
		{"soon:alice", ":", 0, "", ErrBadUsername},
		{"alice", ":", 0, "", ErrBadUsername},
		{":alice", ":", 0, "", ErrBadUsername},
		{"", ":", 0, "", ErrBadUsername},
		{"99999999999999999999:x", ":", 0, "", ErrBadUsername},
	} {
		exp, user, err := Parse(tc.username, tc.sep)
		if !errors.Is(err, tc.err) || user != tc.user || (err == nil && exp.Unix() != tc.expiry) {
			t.Errorf("Parse(%q, %q) = %v, %q, %v; want %d, %q, %v", tc.username, tc.sep, exp.Unix(), user, err, tc.expiry, tc.user, tc.err)
		}
	}
}

func TestCheckAndVerify(t *testing.T) {
	now := time.Unix(1_700_000_000, 500_000_000)
	good := "d8soP47RbdIKLDUOpnJPVQyq5Ts=" // secret, 1700000000:alice
	for _, tc := range []struct {
		name, secret, username, password string
		user                             string
		err                              error
	}{
		{"valid to the end of its second", "secret", "1700000000:alice", good, "alice", nil},
		{"later expiry", "s3cret", "1700003600:k2b4xyz", "brifKs3YStaxU19G+woy2K7XSE0=", "k2b4xyz", nil},
		{"expired", "secret", "1699999999:alice", Password("secret", "1699999999:alice"), "", ErrExpired},
		{"not a time", "secret", "soon:alice", Password("secret", "soon:alice"), "", ErrBadUsername},
		{"other secret", "s3cret", "1700000000:alice", good, "", ErrBadPassword},
		{"other user", "secret", "1700000000:mallory", good, "", ErrBadPassword},
		{"empty password", "secret", "1700000000:alice", "", "", ErrBadPassword},
	} {
		t.Run(tc.name, func(t *testing.T) {
			user, err := Verify(tc.secret, tc.username, tc.password, ":", now)
			if user != tc.user || !errors.Is(err, tc.err) {
				t.Errorf("Verify = %q, %v; want %q, %v", user, err, tc.user, tc.err)
			}
			cuser, cerr := Check(tc.username, ":", now)
			if tc.err == ErrBadPassword { //nolint:errorlint // comparing the table's sentinel
				if cerr != nil {
					t.Errorf("Check = %v; the username is valid", cerr)
				}
				return
			}
			if cuser != tc.user || !errors.Is(cerr, tc.err) {
				t.Errorf("Check = %q, %v; want %q, %v", cuser, cerr, tc.user, tc.err)
			}
		})
	}
}

func TestCheckBounded(t *testing.T) {
	now := time.Unix(1_700_000_000, 500_000_000)
	for _, tc := range []struct {
		name, username string
		max            time.Duration
		user           string
		err            error
	}{
		{"within the bound", "1700003600:alice", 24 * time.Hour, "alice", nil},
		{"exactly the bound", "1700086400:alice", 24 * time.Hour, "alice", nil},
		{"one second beyond", "1700086401:alice", 24 * time.Hour, "", ErrTooFar},
		{"years ahead", "4102444800:alice", 24 * time.Hour, "", ErrTooFar},
		{"far beyond time.Duration", "9223372036854775807:alice", 24 * time.Hour, "", ErrTooFar},
		{"no bound", "9223372036854775807:alice", 0, "alice", nil},
		{"negative bound is none", "4102444800:alice", -1, "alice", nil},
		{"expired beats the bound", "1699999999:alice", 24 * time.Hour, "", ErrExpired},
		{"not a time", "soon:alice", 24 * time.Hour, "", ErrBadUsername},
	} {
		t.Run(tc.name, func(t *testing.T) {
			user, err := CheckBounded(tc.username, ":", now, tc.max)
			if user != tc.user || !errors.Is(err, tc.err) {
				t.Errorf("CheckBounded = %q, %v; want %q, %v", user, err, tc.user, tc.err)
			}
		})
	}
}
