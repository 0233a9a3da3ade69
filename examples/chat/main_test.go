package main

import (
	"context"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/ferrynet/ferry/internal/rvtest"
	"github.com/ferrynet/ferry/internal/testutil"
	"github.com/ferrynet/ferry/sdk"
)

// TestChat runs two chats on loopback through an in-process rendezvous
// server: each line one side types appears on the other.
func TestChat(t *testing.T) {
	testutil.CheckLeaks(t)
	testutil.Deadline(t, time.Minute)
	url := rvtest.URL(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	// Alice waits, Bob dials; each types a line once the other's arrived.
	aliceIn, aliceType := io.Pipe()
	bobIn, bobType := io.Pipe()
	var aliceOut, bobOut testutil.SyncBuffer
	ready := make(chan sdk.PeerID, 1)
	aliceDone := make(chan error, 1)
	go func() { aliceDone <- run(ctx, []string{"-rendezvous", url, "-loopback"}, aliceIn, &aliceOut, ready) }()
	alice := <-ready
	bobDone := make(chan error, 1)
	go func() {
		bobDone <- run(ctx, []string{"-rendezvous", url, "-loopback", alice.String()}, bobIn, &bobOut, nil)
	}()
	if _, err := io.WriteString(bobType, "hi alice\n"); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 20*time.Second, "Bob's line at Alice", func() bool { return strings.Contains(aliceOut.String(), "> hi alice\n") })
	if _, err := io.WriteString(aliceType, "hi bob\n"); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 20*time.Second, "Alice's line at Bob", func() bool { return strings.Contains(bobOut.String(), "> hi bob\n") })
	// Alice leaves first; Bob's chat then ends at the end of his input.
	_ = aliceType.Close()
	if err := <-aliceDone; err != nil {
		t.Fatalf("alice: %v\n%s", err, aliceOut.String())
	}
	_ = bobType.Close()
	if err := <-bobDone; err != nil {
		t.Fatalf("bob: %v\n%s", err, bobOut.String())
	}
	if !strings.Contains(bobOut.String(), "> hi bob\n") {
		t.Fatalf("Bob saw:\n%s", bobOut.String())
	}
}
