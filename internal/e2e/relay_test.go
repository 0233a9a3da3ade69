package e2e

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/ferrynet/ferry/internal/natlab"
	"github.com/ferrynet/ferry/internal/natlab/labworld"
	"github.com/ferrynet/ferry/internal/natlab/natlabtest"
	"github.com/ferrynet/ferry/internal/nattype"
	"github.com/ferrynet/ferry/internal/testutil"
	"github.com/ferrynet/ferry/sdk"
)

// symLab is two symmetric NATs: peers behind them need the relay.
func symLab(t *testing.T) (*labworld.World, *natlab.Host, *natlab.Host) {
	t.Helper()
	lab := natlabtest.New(t, natlab.Config{Sites: []natlab.SiteConfig{
		{Name: "x", NAT: nattype.Symmetric},
		{Name: "y", NAT: nattype.Symmetric},
	}})
	w := newWorld(t, lab)
	return w, lab.Site("x").Host(0), lab.Site("y").Host(0)
}

func relayedPair(t *testing.T, w *labworld.World, ha, hb *natlab.Host, opts ...sdk.NodeOption) (*sdk.Conn, *sdk.Conn) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	na, nb, stop := twoNodes(t, ctx, w, ha, hb, opts...)
	t.Cleanup(stop)
	ca, cb := dialAccepted(ctx, t, na, nb, "dial")
	if p := ca.Path(); !p.Relayed {
		t.Fatalf("symmetric x symmetric got %s, want relay", p.Kind())
	}
	return ca, cb
}

// Restarting the relay during a relayed transfer: the connection goes to
// Reconnecting, and once the relay is back it resumes on a new path with
// every message delivered once, in order.
func TestRelayRestartDuringTransfer(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.CheckLeaks(t)
	testutil.Deadline(t, 3*time.Minute)
	w, ha, hb := symLab(t)
	ca, cb := relayedPair(t, w, ha, hb, sdk.WithHeartbeat(300*time.Millisecond, 3))
	drain(ca)

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const n = 3000
	sent := make(chan error, 1)
	go func() {
		for i := range n {
			if err := ca.Send(ctx, fmt.Appendf(nil, "message %d", i)); err != nil {
				sent <- err
				return
			}
			if i%10 == 0 {
				time.Sleep(time.Millisecond) // spread the transfer over the restart
			}
		}
		sent <- ca.Flush(ctx)
	}()

	restarted := make(chan error, 1)
	go func() {
		// Stop the relay a third of the way in, keep it down for 3 s.
		if !testutil.Poll(time.Minute, func() bool { return cb.Stats().MessagesReceived >= n/3 }) {
			restarted <- fmt.Errorf("%d of %d messages arrived in a minute", cb.Stats().MessagesReceived, n)
			return
		}
		if err := w.StopRelay(); err != nil {
			restarted <- err
			return
		}
		t.Log("relay stopped")
		time.Sleep(3 * time.Second)
		restarted <- w.StartRelay(ctx)
		t.Log("relay started again")
	}()

	for i := range n {
		m, err := cb.Recv(ctx)
		if err != nil {
			t.Fatalf("recv %d: %v", i, err)
		}
		if want := fmt.Sprintf("message %d", i); string(m) != want {
			t.Fatalf("got %q, want %q", m, want)
		}
	}
	if err := <-sent; err != nil {
		t.Fatal(err)
	}
	if err := <-restarted; err != nil {
		t.Fatal(err)
	}
	var states []sdk.State
	for {
		select {
		case ev := <-ca.Events():
			if ev.Path == nil {
				states = append(states, ev.State)
			}
			continue
		default:
		}
		break
	}
	t.Logf("dialer went through %v; now %s on %s", states, ca.State(), ca.Path().Kind())
	if !contains(states, sdk.StateReconnecting) || states[len(states)-1] != sdk.StateConnected {
		t.Fatalf("states %v: want Reconnecting, then Connected", states)
	}
	if s := ca.Stats(); s.Sessions < 2 {
		t.Fatalf("%d sessions: the connection was never replaced", s.Sessions)
	}
}

// With the relay down past the reconnect deadline the app set, the
// connection fails with a clear error, and Send and Recv say so.
func TestRelayDownPastDeadline(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.CheckLeaks(t)
	testutil.Deadline(t, 3*time.Minute)
	w, ha, hb := symLab(t)
	ca, _ := relayedPair(t, w, ha, hb, sdk.WithHeartbeat(300*time.Millisecond, 3), sdk.WithReconnectTimeout(5*time.Second))
	if err := w.StopRelay(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ca.Done():
	case <-time.After(60 * time.Second):
		t.Fatalf("still %s a minute after the relay went away", ca.State())
	}
	err := ca.Err()
	t.Logf("connection ended with: %v", err)
	if !errors.Is(err, sdk.ErrReconnectTimeout) {
		t.Fatalf("ended with %v, want ErrReconnectTimeout", err)
	}
	if err := ca.Send(context.Background(), []byte("x")); !errors.Is(err, sdk.ErrReconnectTimeout) {
		t.Fatalf("Send after: %v", err)
	}
	// Bring it back so cleanup finds what it started.
	if err := w.StartRelay(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func drain(c *sdk.Conn) {
	for {
		select {
		case <-c.Events():
		default:
			return
		}
	}
}

func contains(s []sdk.State, x sdk.State) bool {
	for _, v := range s {
		if v == x {
			return true
		}
	}
	return false
}
