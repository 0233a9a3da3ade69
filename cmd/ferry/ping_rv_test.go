package main

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ferrynet/ferry/identity"
	"github.com/ferrynet/ferry/internal/rvtest"
	"github.com/ferrynet/ferry/server/rendezvous"
)

// TestPingAcrossRendezvous: ferry listen at one rendezvous server, ferry
// ping at another that knows the first only through --dht-bootstrap.
func TestPingAcrossRendezvous(t *testing.T) {
	var lns [2]net.Listener
	for i := range lns {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns[i] = ln
	}
	urlOf := func(ln net.Listener) string { return "ws://" + ln.Addr().String() + "/v1/signal" }
	var urls [2]string
	for i, ln := range lns {
		key, err := identity.Generate()
		if err != nil {
			t.Fatal(err)
		}
		_, urls[i] = rvtest.Start(t, rendezvous.Config{Listener: ln, DHTIdentity: key, DHTBootstrap: []string{urlOf(lns[1-i])}})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	lctx, lcancel := context.WithCancel(ctx)
	pr, pw := io.Pipe()
	done := make(chan int, 1)
	var lerr bytes.Buffer
	dir := t.TempDir()
	go func() {
		// Until the servers have joined each other the record may not be
		// published: ferry listen says so and goes on; the test retries.
		done <- run(lctx, []string{
			"listen", "--rendezvous", urls[0], "--identity", filepath.Join(dir, "l.key"), "--loopback-candidates",
		}, pw, &lerr)
		pw.Close()
	}()
	line, err := bufio.NewReader(pr).ReadString('\n')
	if err != nil {
		t.Fatalf("listen printed no PeerID: %v", err)
	}
	go func() { _, _ = io.Copy(io.Discard, pr) }()
	peer := strings.TrimSpace(line)
	var out, errOut bytes.Buffer
	for {
		out.Reset()
		errOut.Reset()
		code := run(ctx, []string{
			"ping", "--rendezvous", urls[1], "--identity", filepath.Join(dir, "p.key"),
			"--loopback-candidates", "--count", "2", "--timeout", "20s", peer,
		}, &out, &errOut)
		if code == 0 {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("ping across rendezvous servers: exit %d, %q", code, errOut.String())
		}
		time.Sleep(200 * time.Millisecond)
	}
	if !strings.Contains(out.String(), "direct path") {
		t.Fatalf("ping printed %q", out.String())
	}
	lcancel()
	if code := <-done; code != 0 {
		t.Fatalf("listen exit %d: %s", code, lerr.String())
	}
}
