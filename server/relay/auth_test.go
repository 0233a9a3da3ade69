package relay

import (
	"encoding/binary"
	"testing"
	"time"

	"github.com/pion/stun/v4"
	"github.com/pion/turn/v5"

	"github.com/ferrynet/ferry/internal/testutil"
)

func TestAuthenticatorTable(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	a := newAuthenticator("r", ":", []string{"k1", "k2"}, map[string]string{"bob": "pw"}, func() time.Time { return now }, 24*time.Hour)
	future := "1700000100"
	tests := []struct {
		username, realm string
		user, reason    string
		keys            int
	}{
		{"bob", "r", "bob", "", 1},
		{"bob", "other", "", AuthWrongRealm, 0},
		{future + ":alice", "r", "alice", "", 2},
		{future, "r", future, "", 2},
		{"1699999999:alice", "r", "", AuthExpired, 0},
		{"1700086400:alice", "r", "alice", "", 2},       // exactly 24h ahead
		{"1700086401:alice", "r", "", AuthTooFar, 0},    // finding 9: beyond the maximum lifetime
		{"4102444800:alice", "r", "", AuthTooFar, 0},    // year 2100
		{"9223372036854775807", "r", "", AuthTooFar, 0}, // the largest expiry there is
		{"soon:alice", "r", "", AuthBadUsername, 0},
		{"alice", "r", "", AuthBadUsername, 0},
		{"", "r", "", AuthBadUsername, 0},
	}
	for _, tc := range tests {
		user, keys, reason := a.candidates(tc.username, tc.realm)
		if user != tc.user || reason != tc.reason || len(keys) != tc.keys {
			t.Errorf("candidates(%q, %q) = %q, %d keys, %q; want %q, %d, %q",
				tc.username, tc.realm, user, len(keys), reason, tc.user, tc.keys, tc.reason)
		}
	}
	static := newAuthenticator("r", ":", nil, map[string]string{"bob": "pw"}, time.Now, 0)
	if _, _, reason := static.candidates(future+":alice", "r"); reason != AuthUnknownUser {
		t.Errorf("REST username without secrets: reason %q", reason)
	}
	// The key is the RFC 8489 long-term key of the REST password.
	_, keys, _ := a.candidates(future+":alice", "r")
	if want := turn.GenerateAuthKey(future+":alice", "r", RESTPassword("k2", future+":alice")); string(keys[1]) != string(want) {
		t.Error("REST key differs from pion's long-term key")
	}
	sep := newAuthenticator("r", "-", []string{"k"}, nil, func() time.Time { return now }, 0)
	if user, _, reason := sep.candidates(future+"-carol", "r"); user != "carol" || reason != "" {
		t.Errorf("custom separator: %q %q", user, reason)
	}
}

func allocateWith(t *testing.T, server, username, password string) int {
	t.Helper()
	return rawAllocate(t, server, username, password, testRealm)
}

func TestAuthFailuresCounted(t *testing.T) {
	testutil.CheckLeaks(t)
	testutil.Deadline(t, 60*time.Second)
	s := startServer(t, func(c *Config) {
		c.AuthSecrets = []string{"old-secret", "new-secret"}
		c.Users = map[string]string{"static": "pw"}
	})
	addr := s.udpAddr()
	exp := time.Now().Add(time.Hour)
	for _, secret := range []string{"old-secret", "new-secret"} {
		u, p := RESTCredentials(secret, "rot", ":", exp)
		if c := allocateWith(t, addr, u, p); c != 0 {
			t.Errorf("REST credentials under %s refused: %d", secret, c)
		}
	}
	if c := allocateWith(t, addr, "static", "pw"); c != 0 {
		t.Errorf("static user refused: %d", c)
	}
	// The pion client also authenticates with a rotated secret.
	pc := newClient(t, addr, "piondude", "old-secret")
	relay, err := pc.Allocate()
	if err != nil {
		t.Errorf("pion client with the old secret: %v", err)
	} else {
		_ = relay.Close()
	}

	u, p := RESTCredentials("stolen", "mallory", ":", exp)
	if c := allocateWith(t, addr, u, p); c != 401 {
		t.Errorf("a forged REST password got %d, want 401", c)
	}
	u, p = RESTCredentials("new-secret", "late", ":", time.Now().Add(-time.Minute))
	if c := allocateWith(t, addr, u, p); c != 401 {
		t.Errorf("an expired credential got %d, want 401", c)
	}
	// Finding 9 of issue 11: valid REST credentials that expire further out
	// than MaxCredentialLifetime (24h by default) are refused.
	u, p = RESTCredentials("new-secret", "forever", ":", time.Now().Add(30*24*time.Hour))
	if c := allocateWith(t, addr, u, p); c != 401 {
		t.Errorf("credentials valid for 30 days got %d, want 401", c)
	}
	if c := allocateWith(t, addr, "nobody-here:x", "pw"); c != 401 {
		t.Errorf("a malformed REST username got %d, want 401", c)
	}
	if c := allocateWith(t, addr, "static", "wrong"); c != 401 {
		t.Errorf("a wrong static password got %d, want 401", c)
	}
	for reason, min := range map[string]float64{AuthBadIntegrity: 2, AuthExpired: 1, AuthBadUsername: 1, AuthTooFar: 1} {
		if v := s.counter(t, "ferry_relay_auth_failures_total", "reason", reason); v < min {
			t.Errorf("auth_failures_total{reason=%q} = %v, want >= %v", reason, v, min)
		}
	}
	if v := s.counter(t, "ferry_relay_auth_challenges_total"); v < 7 {
		t.Errorf("auth_challenges_total = %v", v)
	}
}

func TestWrongRealm(t *testing.T) {
	testutil.CheckLeaks(t)
	s := startServer(t, nil)
	u, p := RESTCredentials(testSecret, "x", ":", time.Now().Add(time.Hour))
	if c := rawAllocate(t, s.udpAddr(), u, p, "elsewhere"); c != 401 {
		t.Fatalf("code %d, want 401", c)
	}
	if v := s.counter(t, "ferry_relay_auth_failures_total", "reason", AuthWrongRealm); v != 1 {
		t.Errorf("wrong_realm failures = %v", v)
	}
}

func TestLifetimeBounds(t *testing.T) {
	testutil.CheckLeaks(t)
	testutil.Deadline(t, 30*time.Second)
	s := startServer(t, func(c *Config) {
		c.MinAllocationLifetime = time.Minute
		c.MaxAllocationLifetime = 20 * time.Minute
		c.AuthSecrets = []string{"a", testSecret} // exercise secret selection too
	})
	c := newClient(t, s.udpAddr(), "life", testSecret)
	relay, err := c.Allocate()
	if err != nil {
		t.Fatal(err)
	}
	defer relay.Close()
	a := newAuthed(c.Client, "life")
	lifetime := func(secs uint32) rawAttr {
		v := make([]byte, 4)
		binary.BigEndian.PutUint32(v, secs)
		return rawAttr{stun.AttrLifetime, v}
	}
	for _, tc := range []struct{ ask, want uint32 }{{3600, 1200}, {86400, 1200}, {5, 60}, {300, 300}} {
		res, rerr := a.request(stun.MethodRefresh, lifetime(tc.ask))
		if rerr != nil {
			t.Fatal(rerr)
		}
		if code(res) != 0 {
			t.Fatalf("Refresh(%d): code %d", tc.ask, code(res))
		}
		var got stun.RawAttribute
		v, gerr := res.Get(stun.AttrLifetime)
		if gerr != nil {
			t.Fatalf("Refresh(%d): no LIFETIME", tc.ask)
		}
		got.Value = v
		if secs := binary.BigEndian.Uint32(got.Value); secs != tc.want {
			t.Errorf("Refresh(%d) granted %ds, want %ds", tc.ask, secs, tc.want)
		}
	}
	res, err := a.request(stun.MethodRefresh, lifetime(0))
	if err != nil || code(res) != 0 {
		t.Fatalf("Refresh(0): %v code %d", err, code(res))
	}
	testutil.WaitFor(t, 5*time.Second, "the allocation to end after Refresh(0)", func() bool { return s.Allocations() == 0 })
}
