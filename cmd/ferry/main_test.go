package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ferrynet/ferry/internal/rvtest"
	"github.com/ferrynet/ferry/internal/testutil"
	"github.com/ferrynet/ferry/sdk"
)

func TestID(t *testing.T) {
	path := filepath.Join(t.TempDir(), "k")
	var out, errb bytes.Buffer
	if code := run(context.Background(), []string{"id", "--identity", path}, &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	first := strings.TrimSpace(out.String())
	if _, err := sdk.ParsePeerID(first); err != nil {
		t.Fatalf("printed %q: %v", first, err)
	}
	out.Reset()
	if code := run(context.Background(), []string{"id", "--identity", path}, &out, &errb); code != 0 || strings.TrimSpace(out.String()) != first {
		t.Fatalf("second run: %d %q", code, out.String())
	}
	if err := os.WriteFile(path, []byte("junk"), 0o600); err != nil {
		t.Fatal(err)
	}
	errb.Reset()
	if code := run(context.Background(), []string{"id", "--identity", path}, &out, &errb); code != 1 || !strings.Contains(errb.String(), "not a PEM file") {
		t.Fatalf("corrupt key: exit %d, %q", code, errb.String())
	}
}

func TestUsage(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run(context.Background(), nil, &out, &errb); code != 2 {
		t.Fatalf("no args: exit %d", code)
	}
	if code := run(context.Background(), []string{"bogus"}, &out, &errb); code != 2 || !strings.Contains(errb.String(), "unknown command") {
		t.Fatalf("bogus: exit %d", code)
	}
	if code := run(context.Background(), []string{"help"}, &out, &errb); code != 0 || !strings.Contains(out.String(), "ferry demo") {
		t.Fatalf("help: exit %d", code)
	}
	if code := run(context.Background(), []string{"demo", "--nope"}, &out, &errb); code != 2 {
		t.Fatalf("bad flag: exit %d", code)
	}
}

func TestDemoJSON(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run(context.Background(), []string{"demo", "--json"}, &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	var rep map[string]any
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatalf("%v: %s", err, out.String())
	}
	for _, k := range []string{"path", "rtt_ms", "connect_ms", "stream_mbps"} {
		if _, ok := rep[k]; !ok {
			t.Errorf("JSON lacks %q: %s", k, out.String())
		}
	}
}

func TestListenAndPing(t *testing.T) {
	testutil.CheckLeaks(t)
	testutil.Deadline(t, time.Minute)
	url := rvtest.URL(t)
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	listenDone := make(chan int, 1)
	go func() {
		var errb bytes.Buffer
		// --rendezvous repeats: the first server is down (nothing
		// listens on port 1), so the listener logs in at the fallback.
		args := []string{
			"listen", "--rendezvous", "ws://127.0.0.1:1/v1/signal", "--rendezvous", url,
			"--identity", filepath.Join(dir, "b.key"), "--loopback-candidates",
		}
		listenDone <- run(ctx, args, pw, &errb)
		_ = pw.Close()
	}()
	line, err := bufio.NewReader(pr).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	go func() { _, _ = io.Copy(io.Discard, pr) }()
	peer := strings.TrimSpace(line)
	if _, err := sdk.ParsePeerID(peer); err != nil {
		t.Fatalf("listen printed %q", line)
	}
	var out, errb bytes.Buffer
	code := run(context.Background(), []string{"ping", "--rendezvous", url, "--identity", filepath.Join(dir, "a.key"), "--loopback-candidates", "--count", "3", "--json", peer}, &out, &errb)
	if code != 0 {
		t.Fatalf("ping exit %d: %s", code, errb.String())
	}
	var rep map[string]any
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatalf("%v: %s", err, out.String())
	}
	for _, k := range []string{"peer", "path", "local_candidate", "remote_candidate", "connect_ms", "rtt_ms"} {
		if _, ok := rep[k]; !ok {
			t.Errorf("JSON lacks %q: %s", k, out.String())
		}
	}
	if rep["peer"] != peer || rep["path"] != "direct" {
		t.Errorf("report %v", rep)
	}
	// An offline peer: exit 1, and it says so.
	ghost, _ := sdk.GenerateIdentity()
	errb.Reset()
	code = run(context.Background(), []string{"ping", "--rendezvous", url, "--identity", filepath.Join(dir, "a.key"), ghost.PeerID().String()}, &out, &errb)
	if code != 1 || !strings.Contains(errb.String(), "peer not found") {
		t.Fatalf("ping offline: exit %d, %q", code, errb.String())
	}
	cancel()
	if code := <-listenDone; code != 0 {
		t.Fatalf("listen exit %d", code)
	}
}
