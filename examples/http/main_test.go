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

// TestServeAndGet runs the example on loopback: a rendezvous server in
// process, one node serving, another fetching a page from it.
func TestServeAndGet(t *testing.T) {
	testutil.CheckLeaks(t)
	testutil.Deadline(t, time.Minute)
	url := rvtest.URL(t)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	serveCtx, stopServing := context.WithCancel(ctx)
	ready := make(chan sdk.PeerID, 1)
	served := make(chan error, 1)
	go func() {
		served <- run(serveCtx, []string{"-rendezvous", url, "-loopback", "serve"}, &bytes.Buffer{}, ready)
	}()
	var server sdk.PeerID
	select {
	case server = <-ready:
	case err := <-served:
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := run(ctx, []string{"-rendezvous", url, "-loopback", "get", server.String(), "/hello"}, &out, nil); err != nil {
		t.Fatal(err)
	}
	if got := out.String(); !strings.HasPrefix(got, "hello, ") || !strings.HasSuffix(got, "you asked for /hello\n") {
		t.Fatalf("got %q", got)
	}
	stopServing()
	if err := <-served; err != nil {
		t.Fatal(err)
	}
}
