package rendezvous

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/ferrynet/ferry/identity"
	"github.com/ferrynet/ferry/internal/testutil"
	"github.com/ferrynet/ferry/signal"
	"github.com/ferrynet/ferry/wire"
)

// TestLoginRatePerIP (finding 2): LOGIN attempts from one source IP are
// limited (DefaultIPLoginBurst, then DefaultIPLoginRate per second), so one
// address cannot log in identities as fast as it can generate keys.
func TestLoginRatePerIP(t *testing.T) {
	testutil.CheckLeaks(t)
	testutil.Deadline(t, 60*time.Second)
	s := newServer(t, nil)
	const tries = 80 // over the default burst of 50, under the connect burst of 100
	accepted, limited := 0, 0
	for range tries {
		p := rawDial(t, s)
		p.send(p.loginMessage())
		f := p.read()
		switch f.Type {
		case wire.TypeLoggedIn:
			accepted++
		case wire.TypeSignalError:
			var e wire.SignalError
			if err := e.Unmarshal(f.Payload); err != nil {
				t.Fatal(err)
			}
			if e.Code != wire.SignalErrRateLimited || e.RetryAfterMillis == 0 {
				t.Fatalf("refused with %v, want rate limited with a retry hint", &e)
			}
			limited++
		default:
			t.Fatalf("answer %v", f.Type)
		}
		p.conn.CloseNow()
	}
	// The bucket refills at 5/s while the loop runs: allow a few more.
	if limited == 0 || accepted > 50+20 {
		t.Fatalf("%d of %d logins from one IP accepted, %d refused", accepted, tries, limited)
	}
}

// TestCredentialRatePerIP (finding 2): relay credentials are handed out at
// a bounded rate per source IP, however many identities it logs in.
func TestCredentialRatePerIP(t *testing.T) {
	testutil.CheckLeaks(t)
	testutil.Deadline(t, 60*time.Second)
	s := newServer(t, func(c *Config) {
		c.RelaySecret = "s3cret"
		c.RelayURLs = []string{"turn:127.0.0.1:3478?transport=udp"}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	clients := []*signal.Client{dial(t, s), dial(t, s), dial(t, s)}
	got, refused := 0, 0
	for i := range 120 { // over the default burst of 60, spread over identities
		cr, err := clients[i%len(clients)].Credentials(ctx)
		if err != nil {
			var se *signal.ServerError
			if !errors.As(err, &se) || se.Code != wire.SignalErrRateLimited || se.RetryAfter <= 0 {
				t.Fatalf("request %d: %v, want rate limited with a retry hint", i, err)
			}
			refused++
			continue
		}
		if cr.Username == "" {
			t.Fatal("credentials without a relay username")
		}
		got++
	}
	if refused == 0 || got > 60+20 {
		t.Fatalf("%d credentials handed to one IP, %d refused", got, refused)
	}
}

// TestAllowPeer (finding 2): with AllowPeer set, only the PeerIDs it
// accepts log in; the others are refused with a reason, and the refusal
// is permanent for the Go client.
func TestAllowPeer(t *testing.T) {
	testutil.CheckLeaks(t)
	testutil.Deadline(t, 30*time.Second)
	member := newIdentity(t)
	s := newServer(t, func(c *Config) {
		c.AllowPeer = func(id identity.PeerID) bool { return id == member.PeerID() }
	})
	dialAs(t, s, member)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := signal.Dial(ctx, wsURL(s), newIdentity(t))
	if !errors.Is(err, signal.ErrLoginRefused) || !strings.Contains(err.Error(), "operator lists") {
		t.Fatalf("a stranger's login: %v", err)
	}
	if got := counter(s.m.logins.WithLabelValues(LoginNotAllowed)); got != 1 {
		t.Fatalf("not_allowed logins %v, want 1", got)
	}
}

// TestAllowDHT (finding 9): the "dht" capability is self-declared; with
// AllowDHT set, BOOTSTRAP lists only the peers it accepts.
func TestAllowDHT(t *testing.T) {
	testutil.CheckLeaks(t)
	testutil.Deadline(t, 30*time.Second)
	seed := newIdentity(t)
	s := newServer(t, func(c *Config) {
		c.AllowDHT = func(id identity.PeerID) bool { return id == seed.PeerID() }
	})
	dialAs(t, s, seed, signal.WithCapabilities("dht"))
	dial(t, s, signal.WithCapabilities("dht")) // self-declared, not listed
	asker := dial(t, s)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	bs, err := asker.Bootstrap(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(bs.Peers) != 1 || bs.Peers[0] != seed.PeerID() {
		t.Fatalf("bootstrap peers %v, want only %v", bs.Peers, seed.PeerID())
	}
}
