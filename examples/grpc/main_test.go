package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/ferrynet/ferry/internal/rvtest"
	"github.com/ferrynet/ferry/internal/testutil"
	"github.com/ferrynet/ferry/sdk"
)

// syncWriter is safe for the server's goroutines and the test.
type syncWriter struct {
	ch chan string
}

func (w syncWriter) Write(p []byte) (int, error) {
	select {
	case w.ch <- string(p):
	default:
	}
	return len(p), nil
}

// TestServeAndCheck runs the example on loopback: a rendezvous server in
// process, one node serving gRPC, another calling it.
func TestServeAndCheck(t *testing.T) {
	testutil.CheckLeaks(t)
	testutil.Deadline(t, time.Minute)
	url := rvtest.URL(t)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	serveCtx, stopServing := context.WithCancel(ctx)
	ready := make(chan sdk.PeerID, 1)
	served := make(chan error, 1)
	log := syncWriter{ch: make(chan string, 8)}
	go func() {
		served <- run(serveCtx, []string{"-rendezvous", url, "-loopback", "serve"}, log, ready)
	}()
	var server sdk.PeerID
	select {
	case server = <-ready:
	case err := <-served:
		t.Fatal(err)
	}
	<-log.ch // "serving on"
	// Two clients, each a new node with a new identity.
	for range 2 {
		var out bytes.Buffer
		if err := run(ctx, []string{"-rendezvous", url, "-loopback", "check", server.String()}, &out, nil); err != nil {
			t.Fatal(err)
		}
		if got := out.String(); got != "ferry.example SERVING\n" {
			t.Fatalf("got %q", got)
		}
		if got := <-log.ch; !strings.HasPrefix(got, "/grpc.health.v1.Health/Check from ") {
			t.Fatalf("server logged %q", got)
		}
	}
	if err := run(ctx, []string{"-rendezvous", url, "-loopback", "check", "not-a-peer-id"}, &bytes.Buffer{}, nil); err == nil {
		t.Fatal("check with a bad PeerID succeeded")
	}
	stopServing()
	if err := <-served; err != nil {
		t.Fatal(err)
	}
}
