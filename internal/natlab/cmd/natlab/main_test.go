package main

import (
	"bytes"
	"fmt"
	"os"
	"strings"
	"testing"

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
		if got := run(tc.args, &out, &errOut); got != tc.code {
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
	if code := run([]string{"up", "--a", "symmetric", "--b", "port-restricted-cone", "--hosts", "2", "--hairpin", "--loss", "1", "--name", name}, &out, &errOut); code != 0 {
		t.Fatalf("up: exit %d\n%s%s", code, out.String(), errOut.String())
	}
	for _, want := range []string{prefix + "a-nat", prefix + "b2", "NAT symmetric, hairpin", "203.0.113.2, 203.0.113.3"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("up output lacks %q:\n%s", want, out.String())
		}
	}
	out.Reset()
	if code := run([]string{"down", "--name", name}, &out, &errOut); code != 0 || strings.Count(out.String(), "removed ") != 8 {
		t.Fatalf("down: exit %d\n%s%s", code, out.String(), errOut.String())
	}
	names, _ := natlab.List()
	for _, n := range names {
		if strings.HasPrefix(n, prefix) {
			t.Errorf("%s left after down", n)
		}
	}
}
