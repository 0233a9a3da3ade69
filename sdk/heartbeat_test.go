package sdk

import (
	"context"
	"errors"
	"net"
	"testing"
	"testing/synctest"
	"time"
)

// TestHeartbeatDeclaresSilentPeerDisconnected runs two endpoints over an
// in-memory network in a synctest bubble, so time is virtual: when the
// network goes silent, each side must report Disconnected after 3 heartbeat
// intervals, give or take one.
func TestHeartbeatDeclaresSilentPeerDisconnected(t *testing.T) {
	for _, interval := range []time.Duration{time.Second, 5 * time.Second} {
		t.Run(interval.String(), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				n := newMemNet()
				n.latency = 10 * time.Millisecond
				opts := []EndpointOption{WithHeartbeat(interval, 3), WithHandshakeTimeout(2 * time.Second)}
				a := memEndpoint(t, n, opts...)
				b := memEndpoint(t, n, opts...)
				ca, cb := memConnect(t, a, b)
				drainEvents(ca)
				drainEvents(cb)

				// Let heartbeats run for a while: a live peer is never
				// declared dead, however long it stays quiet.
				time.Sleep(10 * interval)
				synctest.Wait()
				if ca.State() != StateConnected || cb.State() != StateConnected {
					t.Fatalf("live but idle peers reported %v / %v", ca.State(), cb.State())
				}
				if rtt := ca.RTT(); rtt < 2*n.latency || rtt > 3*n.latency {
					t.Fatalf("RTT %v after 10 heartbeats", rtt)
				}

				silentAt := time.Now()
				n.blackhole.Store(true)
				for _, c := range []*Conn{ca, cb} {
					ev := waitEvent(t, c, StateDisconnected)
					took := ev.Time.Sub(silentAt)
					t.Logf("%v declared its silent peer disconnected after %v (%.2f intervals): %v", c.role, took, float64(took)/float64(interval), ev.Err)
					// The acceptance bound is 3 intervals +- 1; this
					// implementation checks four times per interval.
					if took < 2*interval || took > 4*interval || took > 3*interval+interval/4+2*n.latency {
						t.Errorf("%v: Disconnected after %v, want 3 intervals of %v +- 1", c.role, took, interval)
					}
					var ne net.Error
					if !errors.As(ev.Err, &ne) || !ne.Timeout() {
						t.Errorf("%v: Disconnected error %v is not a net.Error timeout", c.role, ev.Err)
					}
					if ev := waitEvent(t, c, StateReconnecting); ev.State != StateReconnecting {
						t.Errorf("%v: after Disconnected came %v", c.role, ev.State)
					}
				}

				// The network comes back: the dialer's redial succeeds and
				// the pair is Connected again, on the same Conns.
				n.blackhole.Store(false)
				waitEvent(t, ca, StateConnected)
				waitEvent(t, cb, StateConnected)
				ctx := context.Background()
				if err := ca.Send(ctx, []byte("back")); err != nil {
					t.Fatal(err)
				}
				if m, err := cb.Recv(ctx); err != nil || string(m) != "back" {
					t.Fatalf("after reconnect: %q %v", m, err)
				}
			})
		})
	}
}

func memEndpoint(t *testing.T, n *memNet, opts ...EndpointOption) *Endpoint {
	t.Helper()
	pc := n.listen()
	e, err := NewEndpoint(pc, newIdentity(t), opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = e.Close()
		_ = pc.Close()
	})
	return e
}

func memConnect(t *testing.T, a, b *Endpoint, opts ...EndpointDialOption) (*Conn, *Conn) {
	t.Helper()
	ctx := context.Background()
	accepted := make(chan *Conn, 1)
	go func() {
		c, err := b.Accept(ctx)
		if err != nil {
			t.Error(err)
		}
		accepted <- c
	}()
	ca, err := a.Dial(ctx, b.LocalAddr(), b.PeerID(), opts...)
	if err != nil {
		t.Fatal(err)
	}
	cb := <-accepted
	if cb == nil {
		t.FailNow()
	}
	t.Cleanup(func() { _ = ca.Close(); _ = cb.Close() })
	return ca, cb
}

// drainEvents discards the events queued so far.
func drainEvents(c *Conn) {
	for {
		select {
		case <-c.Events():
		default:
			return
		}
	}
}

// waitEvent returns the next event for state s, failing on Closed.
func waitEvent(t *testing.T, c *Conn, s State) Event {
	t.Helper()
	for ev := range c.Events() {
		if ev.State == s {
			return ev
		}
		if ev.State == StateClosed {
			t.Fatalf("%v closed while waiting for %v: %v", c.role, s, ev.Err)
		}
	}
	t.Fatalf("%v: events ended while waiting for %v", c.role, s)
	return Event{}
}
