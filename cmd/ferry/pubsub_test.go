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
	"github.com/ferrynet/ferry/internal/testutil"
	"github.com/ferrynet/ferry/server/rendezvous"
)

// TestPubSub: ferry sub --json prints what ferry pub publishes, once each
// and in order, through a rendezvous server with a DHT node.
func TestPubSub(t *testing.T) {
	defer testutil.Deadline(t, 3*time.Minute)()
	key, err := identity.Generate()
	if err != nil {
		t.Fatal(err)
	}
	_, url := rvtest.Start(t, rendezvous.Config{DHTIdentity: key})
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Second)
	defer cancel()
	dir := t.TempDir()
	node := func(name string) []string {
		return []string{"--rendezvous", url, "--identity", filepath.Join(dir, name+".key"), "--loopback-candidates", "--topic", "news"}
	}

	sctx, scancel := context.WithCancel(ctx)
	defer scancel()
	pr, pw := io.Pipe()
	var serr testutil.SyncBuffer
	done := make(chan int, 1)
	go func() {
		done <- run(sctx, append([]string{"sub"}, append(node("sub"), "--json", "--count", "4")...), pw, &serr)
		pw.Close()
	}()
	testutil.WaitFor(t, 60*time.Second, "ferry sub subscribed", func() bool {
		return strings.Contains(serr.String(), "subscribed to")
	})

	// One message as an argument, then three from standard input.
	var out, errOut bytes.Buffer
	if code := run(ctx, append([]string{"pub"}, append(node("pub1"), "--linger", "500ms", "hello, world")...), &out, &errOut); code != 0 {
		t.Fatalf("pub exit %d: %s", code, errOut.String())
	}
	if !strings.Contains(out.String(), "published 1 message") {
		t.Fatalf("pub printed %q", out.String())
	}
	errOut.Reset()
	out.Reset()
	in := strings.NewReader("one\ntwo\nthree\n")
	if code := cmdPub(ctx, append(node("pub2"), "--linger", "500ms", "-"), in, &out, &errOut); code != 0 {
		t.Fatalf("pub - exit %d: %s", code, errOut.String())
	}

	sc := bufio.NewScanner(pr)
	var got []subMessage
	for len(got) < 4 && sc.Scan() {
		var m subMessage
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("%v: %q", err, sc.Text())
		}
		got = append(got, m)
	}
	go func() { _, _ = io.Copy(io.Discard, pr) }()
	if code := <-done; code != 0 {
		t.Fatalf("sub exit %d: %s", code, serr.String())
	}
	want := []string{"hello, world", "one", "two", "three"}
	if len(got) != len(want) {
		t.Fatalf("got %d messages, want %d: %+v", len(got), len(want), got)
	}
	for i, m := range got {
		if m.Data != want[i] || m.Topic != "news" || m.Hops < 1 {
			t.Errorf("message %d: %+v, want data %q", i, m, want[i])
		}
		if i > 1 && (m.Origin != got[1].Origin || m.Seq != got[i-1].Seq+1) {
			t.Errorf("message %d: origin %s seq %d after seq %d", i, m.Origin, m.Seq, got[i-1].Seq)
		}
	}
	if got[0].Origin == got[1].Origin {
		t.Error("two pub runs with different keys had one origin")
	}
}

func TestPubSubUsage(t *testing.T) {
	ctx := t.Context()
	for _, args := range [][]string{
		{"pub"},
		{"pub", "--topic", "x"},
		{"pub", "--topic", "x", "a", "b"},
		{"pub", "--topic", "x", strings.Repeat("x", 4097)},
		{"pub", "--topic", "x", "--min-peers", "-1", "m"},
		{"sub"},
		{"sub", "--topic", "x", "extra"},
		{"sub", "--topic", "x", "--count", "-1"},
		{"sub", "--topic", "x", "--gap-wait", "-1s"},
	} {
		var out, errOut bytes.Buffer
		if code := run(ctx, args, &out, &errOut); code != 2 || errOut.Len() == 0 {
			t.Errorf("%.60q: exit %d, %q", args, code, errOut.String())
		}
	}
	for _, cmd := range []string{"pub", "sub"} {
		var out, errOut bytes.Buffer
		if code := run(ctx, []string{cmd, "--help"}, &out, &errOut); code != 0 || !strings.Contains(errOut.String(), "usage: ferry "+cmd) {
			t.Errorf("%s --help: exit %d, %q", cmd, code, errOut.String())
		}
	}
	// A rendezvous without a DHT node: a clear failure.
	plain := rvtest.URL(t)
	var out, errOut bytes.Buffer
	if code := run(ctx, []string{
		"sub", "--rendezvous", plain, "--identity", filepath.Join(t.TempDir(), "id.key"), "--topic", "x",
	}, &out, &errOut); code != 1 || !strings.Contains(errOut.String(), "DHT") {
		t.Errorf("no DHT node: exit %d, %q", code, errOut.String())
	}
}
