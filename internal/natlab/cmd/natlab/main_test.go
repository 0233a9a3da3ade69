package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/ferrynet/ferry/internal/natlab"
	"github.com/ferrynet/ferry/internal/testutil"
)

func TestUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		code int
	}{
		{nil, 2},
		{[]string{"--help"}, 0},
		{[]string{"frob"}, 2},
		{[]string{"up"}, 2},
		{[]string{"up", "--a", "bogus"}, 2},
		{[]string{"up", "--a", "symmetric", "extra"}, 2},
		{[]string{"up", "--a", "none", "--loss", "200"}, 2},
		{[]string{"up", "--a", "none", "--name", "a b"}, 2},
		{[]string{"up", "--nope"}, 2},
		{[]string{"down", "--nope"}, 2},
	} {
		var out, errOut bytes.Buffer
		if got := run(context.Background(), tc.args, &out, &errOut); got != tc.code {
			t.Errorf("natlab %v: exit %d, want %d\n%s%s", tc.args, got, tc.code, out.String(), errOut.String())
		}
	}
}

func TestUpDown(t *testing.T) {
	testutil.RequireRoot(t)
	if err := natlab.CheckPrerequisites(); err != nil {
		testutil.SkipOrFail(t, "%v", err)
	}
	name := fmt.Sprintf("t%d", os.Getpid())
	prefix := natlab.CLIPrefix + name + "-"
	t.Cleanup(func() { _, _ = natlab.Down(prefix) })
	var out, errOut bytes.Buffer
	if code := run(context.Background(), []string{"up", "--a", "symmetric", "--b", "port-restricted-cone", "--hosts", "2", "--hairpin", "--loss", "1", "--name", name}, &out, &errOut); code != 0 {
		t.Fatalf("up: exit %d\n%s%s", code, out.String(), errOut.String())
	}
	for _, want := range []string{prefix + "a-nat", prefix + "b2", "NAT symmetric, hairpin", "203.0.113.2, 203.0.113.3"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("up output lacks %q:\n%s", want, out.String())
		}
	}
	out.Reset()
	if code := run(context.Background(), []string{"down", "--name", name}, &out, &errOut); code != 0 || strings.Count(out.String(), "removed ") != 8 {
		t.Fatalf("down: exit %d\n%s%s", code, out.String(), errOut.String())
	}
	names, _ := natlab.List()
	for _, n := range names {
		if strings.HasPrefix(n, prefix) {
			t.Errorf("%s left after down", n)
		}
	}
}

// TestUpForeground: with a delay, "up" keeps the lab (and its delay stage)
// while it runs, and removes it when its context ends (Ctrl-C).
func TestUpForeground(t *testing.T) {
	testutil.RequireRoot(t)
	if err := natlab.CheckPrerequisites(); err != nil {
		testutil.SkipOrFail(t, "%v", err)
	}
	name := fmt.Sprintf("f%d", os.Getpid())
	prefix := natlab.CLIPrefix + name + "-"
	t.Cleanup(func() { _, _ = natlab.Down(prefix) })
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out, errOut testutil.SyncBuffer
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"up", "--a", "full-cone", "--delay", "5ms", "--name", name}, &out, &errOut)
	}()
	early := -1 // up's exit code, if it returned before being stopped
	if !testutil.Poll(30*time.Second, func() bool {
		select {
		case early = <-done:
			return true
		default:
		}
		return strings.Contains(out.String(), "Ctrl-C removes the lab")
	}) {
		t.Fatalf("lab did not come up:\n%s%s", out.String(), errOut.String())
	}
	if early >= 0 {
		t.Fatalf("up returned %d before being stopped\n%s%s", early, out.String(), errOut.String())
	}
	names, _ := natlab.List()
	if n := countPrefix(names, prefix); n != 5 { // sw, srv, a-nat, a1, a-dly
		t.Errorf("%d namespaces while up, want 5: %v", n, names)
	}
	cancel()
	if code := <-done; code != 0 || !strings.Contains(out.String(), "lab removed") {
		t.Errorf("up: exit %d\n%s%s", code, out.String(), errOut.String())
	}
	names, _ = natlab.List()
	if n := countPrefix(names, prefix); n != 0 {
		t.Errorf("%d namespaces left after Ctrl-C", n)
	}
}

func countPrefix(names []string, prefix string) int {
	n := 0
	for _, x := range names {
		if strings.HasPrefix(x, prefix) {
			n++
		}
	}
	return n
}
