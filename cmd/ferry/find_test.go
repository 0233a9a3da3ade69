package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ferrynet/ferry/identity"
	"github.com/ferrynet/ferry/internal/rvtest"
	"github.com/ferrynet/ferry/sdk"
	"github.com/ferrynet/ferry/server/rendezvous"
)

func TestFind(t *testing.T) {
	key, err := identity.Generate()
	if err != nil {
		t.Fatal(err)
	}
	_, url := rvtest.Start(t, rendezvous.Config{DHTIdentity: key})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	member, err := sdk.New(ctx, sdk.WithRendezvous(url), sdk.WithLoopbackCandidates())
	if err != nil {
		t.Fatal(err)
	}
	defer member.Close()
	if _, err := member.StartDiscovery(ctx, sdk.DiscoveryOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := member.Join(ctx, "cli-topic"); err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	code := run(ctx, []string{
		"find", "--rendezvous", url, "--identity", filepath.Join(t.TempDir(), "id.key"),
		"--topic", "cli-topic", "--json",
	}, &out, &errOut)
	if code != 0 {
		t.Fatalf("find exit %d: %s", code, errOut.String())
	}
	var fp foundPeer
	if err := json.Unmarshal(out.Bytes(), &fp); err != nil {
		t.Fatalf("%v: %q", err, out.String())
	}
	if fp.Peer != member.PeerID().String() || len(fp.Rendezvous) != 1 || fp.Rendezvous[0] != url || fp.Direct {
		t.Fatalf("found %+v", fp)
	}
	// ferry listen --join announces; ferry find sees it.
	lctx, lcancel := context.WithCancel(ctx)
	pr, pw := io.Pipe()
	done := make(chan int, 1)
	go func() {
		done <- run(lctx, []string{
			"listen", "--rendezvous", url, "--identity", filepath.Join(t.TempDir(), "l.key"),
			"--loopback-candidates", "--join", "cli-topic",
		}, pw, io.Discard)
		pw.Close()
	}()
	line, err := bufio.NewReader(pr).ReadString('\n')
	if err != nil {
		t.Fatalf("listen printed no PeerID: %v", err)
	}
	go func() { _, _ = io.Copy(io.Discard, pr) }()
	out.Reset()
	if code := run(ctx, []string{
		"find", "--rendezvous", url, "--identity", filepath.Join(t.TempDir(), "f.key"),
		"--topic", "cli-topic",
	}, &out, &errOut); code != 0 || !strings.Contains(out.String(), strings.TrimSpace(line)) {
		t.Fatalf("find after listen --join: exit %d, %q", code, out.String())
	}
	lcancel()
	if code := <-done; code != 0 {
		t.Fatalf("listen exit %d", code)
	}
	// Usage errors.
	for _, args := range [][]string{{"find"}, {"find", "--topic", "x", "extra"}} {
		errOut.Reset()
		if code := run(ctx, args, &out, &errOut); code != 2 || !strings.Contains(errOut.String(), "--topic") {
			t.Errorf("%q: exit %d, %q", args, code, errOut.String())
		}
	}
	// A rendezvous without a DHT node: a clear failure.
	plain := rvtest.URL(t)
	errOut.Reset()
	if code := run(ctx, []string{
		"find", "--rendezvous", plain, "--identity", filepath.Join(t.TempDir(), "id2.key"),
		"--topic", "x",
	}, &out, &errOut); code != 1 || !strings.Contains(errOut.String(), "DHT") {
		t.Errorf("no DHT node: exit %d, %q", code, errOut.String())
	}
}
