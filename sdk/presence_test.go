package sdk

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

// An acceptor waiting for its dialer gives up once the rendezvous has
// reported the dialer gone for acceptorGoneGrace (the dialer's grace plus
// the heartbeat bound), not before, and not while it reports the dialer
// back in between (a restart, a signaling blip, a redial from another
// rendezvous server).
func TestWatchDialer(t *testing.T) {
	gone := errors.Join(ErrPeerNotFound, errors.New("rendezvous: not logged in"))
	var grace time.Duration
	run := func(t *testing.T, presence func(n int) error, within time.Duration) (took time.Duration, asked int, err error) {
		var questions atomic.Int32
		synctest.Test(t, func(t *testing.T) {
			cfg := defaultConfig()
			cfg.presence = func(context.Context, PeerID) error { return presence(int(questions.Add(1))) }
			c := newConn(cfg, roleAcceptor, PeerID{}, PeerID{1}, [connIDLen]byte{})
			grace = c.acceptorGoneGrace()
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			start := time.Now()
			select {
			case err = <-c.watchDialer(ctx):
				took = time.Since(start)
			case <-time.After(within):
			}
			cancel()
			synctest.Wait() // the watcher ends with ctx
		})
		return took, int(questions.Load()), err
	}

	t.Run("gone", func(t *testing.T) {
		took, n, err := run(t, func(int) error { return gone }, time.Minute)
		if !errors.Is(err, ErrPeerNotFound) {
			t.Fatalf("got %v, want ErrPeerNotFound", err)
		}
		if want := peerGoneGrace + DefaultHeartbeatMisses*DefaultHeartbeatInterval; grace != want {
			t.Fatalf("grace %v, want %v", grace, want)
		}
		if took < grace || took > grace+peerGoneGrace/2 {
			t.Errorf("gave up after %v, want the grace %v (at most one question later)", took, grace)
		}
		if n < 2 {
			t.Errorf("gave up after %d answers, want at least 2", n)
		}
	})
	t.Run("present", func(t *testing.T) {
		if _, n, err := run(t, func(int) error { return nil }, time.Minute); err != nil || n < 10 {
			t.Fatalf("dialer logged in: got %v after %d questions, want none in a minute of asking", err, n)
		}
	})
	t.Run("back-within-grace", func(t *testing.T) {
		// Not found, found, not found, ...: never 2 s of not found in a row.
		_, _, err := run(t, func(n int) error {
			if n%2 == 1 {
				return gone
			}
			return nil
		}, time.Minute)
		if err != nil {
			t.Fatalf("dialer back between answers: got %v, want to keep waiting", err)
		}
	})
	t.Run("no-answer", func(t *testing.T) {
		// A rendezvous that does not answer says nothing about the dialer.
		_, _, err := run(t, func(int) error { return context.DeadlineExceeded }, time.Minute)
		if err != nil {
			t.Fatalf("no answers: got %v, want to keep waiting", err)
		}
	})
}
