package main

import (
	"context"
	"io"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/ferrynet/ferry/examples/internal/exampletest"
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
	url := exampletest.Rendezvous(t)

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

	first := leader(t, ms[:1])
	for _, m := range ms[1:] {
		if err := first.command("/add " + m.node.PeerID().String()); err != nil {
			t.Fatal(err)
		}
	}
	var committed []string
	for _, cmd := range []string{"set x 1", "set y 2", "set z 3"} {
		if err := first.command(cmd); err != nil {
			t.Fatal(err)
		}
		committed = append(committed, cmd)
	}
	waitEntries := func(ms []*member) {
		t.Helper()
		for _, m := range ms {
			testutil.WaitFor(t, time.Minute, "the committed commands on "+m.node.PeerID().Short(), func() bool {
				return slices.Equal(m.fsm.Entries(), committed)
			})
		}
	}
	waitEntries(ms)
	// A follower refuses commands and names the leader.
	if err := ms[1].command("set w 0"); err == nil {
		t.Fatal("a follower applied a command")
	}

	// Kill the leader: its raft and its node go.
	first.shutdown()
	_ = first.node.Close()
	alive = slices.DeleteFunc(alive, func(m *member) bool { return m == first })
	second := leader(t, alive)
	if second == first {
		t.Fatal("the dead leader still leads")
	}
	if err := second.command("set v 4"); err != nil {
		t.Fatal(err)
	}
	committed = append(committed, "set v 4")
	waitEntries(alive)
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
	if err := m.command("/add not-a-peer-id"); err == nil {
		t.Fatal("/add with a bad PeerID succeeded")
	}
	if err := m.command("   "); err != nil {
		t.Fatalf("an empty line: %v", err)
	}
}
