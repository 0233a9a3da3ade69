package main

import (
	"context"
	"errors"
	"io"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/ferrynet/ferry/internal/rvtest"
	"github.com/ferrynet/ferry/internal/testutil"
	"github.com/ferrynet/ferry/sdk"
)

func newNode(t *testing.T, url string) *sdk.Node {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	n, err := sdk.New(ctx, sdk.WithRendezvous(url), sdk.WithLoopbackCandidates(),
		sdk.WithCandidateFilter(func(ip net.IP) bool { return ip.IsLoopback() }))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// leader waits for one of ms to lead and returns it.
func leader(t *testing.T, ms []*member) *member {
	t.Helper()
	var l *member
	testutil.WaitFor(t, time.Minute, "a leader", func() bool {
		for _, m := range ms {
			if m.raft.State() == raft.Leader {
				l = m
				return true
			}
		}
		return false
	})
	return l
}

// TestCluster runs three members on loopback through an in-process
// rendezvous server: one bootstraps, adds the others, replicates commands;
// then the leader dies, the other two elect a new one, which commits more,
// and no committed command is lost.
func TestCluster(t *testing.T) {
	testutil.CheckLeaks(t)
	testutil.Deadline(t, 3*time.Minute)
	url := rvtest.URL(t)

	var ms []*member
	for i := range 3 {
		n := newNode(t, url)
		m, err := start(n, i == 0, io.Discard, io.Discard)
		if err != nil {
			_ = n.Close()
			t.Fatal(err)
		}
		ms = append(ms, m)
	}
	alive := slices.Clone(ms)
	t.Cleanup(func() {
		for _, m := range alive {
			m.shutdown()
			_ = m.node.Close()
		}
	})

	leader(t, ms[:1])
	// Leadership can move on a loaded machine (a missed heartbeat starts an
	// election): commands go to whoever leads, and a command whose outcome
	// is unknown (leadership lost during it) may or may not be in the log.
	var committed []string
	apply := func(cmd string) {
		t.Helper()
		testutil.WaitFor(t, time.Minute, "a leader to commit "+cmd, func() bool {
			for _, m := range alive {
				if m.raft.State() != raft.Leader {
					continue
				}
				err := m.command(t.Context(), cmd)
				if err == nil {
					if !strings.HasPrefix(cmd, "/") {
						committed = append(committed, cmd)
					}
					return true
				}
				if !errors.Is(err, raft.ErrNotLeader) && !errors.Is(err, raft.ErrLeadershipLost) {
					t.Fatalf("apply %q: %v", cmd, err)
				}
			}
			return false
		})
	}
	// waitEntries waits until every member has the same log, holding every
	// committed command in order.
	waitEntries := func(ms []*member) {
		t.Helper()
		testutil.WaitFor(t, time.Minute, "the committed commands on every member", func() bool {
			want := ms[0].fsm.Entries()
			for _, m := range ms[1:] {
				if !slices.Equal(m.fsm.Entries(), want) {
					return false
				}
			}
			return isSubsequence(committed, want)
		})
	}
	// Adding a voter that is there already is a no-op: retrying is safe.
	for _, m := range ms[1:] {
		apply("/add " + m.node.PeerID().String())
	}
	for _, cmd := range []string{"set x 1", "set y 2", "set z 3"} {
		apply(cmd)
	}
	waitEntries(ms)
	// A follower refuses commands and names the leader.
	testutil.WaitFor(t, time.Minute, "a follower to refuse a command", func() bool {
		for _, m := range alive {
			if m.raft.State() == raft.Follower {
				err := m.command(t.Context(), "set w 0")
				if err == nil {
					t.Fatal("a follower applied a command")
				}
				return errors.Is(err, raft.ErrNotLeader)
			}
		}
		return false
	})

	// Kill the leader: its raft and its node go.
	old := leader(t, alive)
	old.shutdown()
	_ = old.node.Close()
	alive = slices.DeleteFunc(alive, func(m *member) bool { return m == old })
	leader(t, alive)
	apply("set v 4")
	waitEntries(alive)
}

// isSubsequence reports whether every element of sub appears in s, in order.
func isSubsequence(sub, s []string) bool {
	for _, e := range s {
		if len(sub) > 0 && sub[0] == e {
			sub = sub[1:]
		}
	}
	return len(sub) == 0
}

func TestBadArgs(t *testing.T) {
	ctx := context.Background()
	for _, args := range [][]string{
		nil,
		{"-rendezvous", "ws://127.0.0.1:1/v1/signal"}, // no -key
		{"-key", "k"}, // no -rendezvous
		{"-rendezvous", "ws://127.0.0.1:1/v1/signal", "-key", "k", "extra"},
		{"-no-such-flag"},
	} {
		if err := run(ctx, args, nil, io.Discard, io.Discard); err == nil {
			t.Errorf("run(%q) succeeded", args)
		}
	}
}

func TestBadCommands(t *testing.T) {
	m := &member{}
	if err := m.command(t.Context(), "/add not-a-peer-id"); err == nil {
		t.Fatal("/add with a bad PeerID succeeded")
	}
	if err := m.command(t.Context(), "   "); err != nil {
		t.Fatalf("an empty line: %v", err)
	}
}
