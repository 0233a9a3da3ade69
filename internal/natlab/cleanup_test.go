package natlab_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ferrynet/ferry/internal/natlab"
	"github.com/ferrynet/ferry/internal/natlab/natlabtest"
	"github.com/ferrynet/ferry/internal/testutil"
)

// helperEnv selects the deliberately failing lab test in a child process.
const helperEnv = "FERRY_NATLAB_HELPER"

// TestHelperDeliberateFailure is not a test of its own: TestCleanupAfterFailure
// runs it in a child process, where it builds a lab, starts a process in
// it, prints the lab's prefix and that process's pid, and then fails in
// the way the environment asks.
func TestHelperDeliberateFailure(t *testing.T) {
	mode := os.Getenv(helperEnv)
	if mode == "" {
		t.Skip("helper for TestCleanupAfterFailure; runs only in its child process")
	}
	lab := natlabtest.New(t, natlab.Config{Sites: []natlab.SiteConfig{
		{Name: "a", NAT: natlab.Symmetric, WAN: natlab.Link{Delay: time.Millisecond}},
	}})
	p, err := lab.Site("a").Host(0).Start(context.Background(), "sleep", "300")
	if err != nil {
		t.Fatal(err)
	}
	fmt.Printf("NATLAB_PREFIX=%s\nNATLAB_PID=%d\n", lab.Prefix(), p.Pid())
	switch mode {
	case "fail":
		t.Fatal("deliberate failure")
	case "panic":
		panic("deliberate panic")
	case "kill":
		// No cleanup can run: the reaper must do it.
		_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
	case "timeout":
		// The child runs with -test.timeout=2s: the testing package panics
		// in its own goroutine and no cleanup runs.
		time.Sleep(time.Minute)
	}
	t.Fatalf("unknown helper mode %q", mode)
}

// TestCleanupAfterFailure runs a lab test that fails on purpose, in a child
// test process, in every way a test can end badly, and checks that its
// namespaces and the processes it started are gone afterwards.
func TestCleanupAfterFailure(t *testing.T) {
	t.Parallel()
	testutil.RequireRoot(t)
	testutil.Deadline(t, 2*time.Minute)
	if err := natlab.CheckPrerequisites(); err != nil {
		testutil.SkipOrFail(t, "%v", err)
	}
	for _, mode := range []string{"fail", "panic", "kill", "timeout"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			args := []string{"-test.run=^TestHelperDeliberateFailure$", "-test.v"}
			if mode == "timeout" {
				args = append(args, "-test.timeout=3s")
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			cmd := exec.CommandContext(ctx, os.Args[0], args...)
			cmd.Env = append(os.Environ(), helperEnv+"="+mode)
			var out bytes.Buffer
			cmd.Stdout = &out
			cmd.Stderr = &out
			err := cmd.Run()
			var ee *exec.ExitError
			if !errors.As(err, &ee) {
				t.Fatalf("child should have failed, got %v\n%s", err, out.String())
			}
			prefix, pid := "", 0
			sc := bufio.NewScanner(bytes.NewReader(out.Bytes()))
			for sc.Scan() {
				line := sc.Text()
				if v, ok := strings.CutPrefix(line, "NATLAB_PREFIX="); ok {
					prefix = v
				}
				if v, ok := strings.CutPrefix(line, "NATLAB_PID="); ok {
					pid, _ = strconv.Atoi(v)
				}
			}
			if prefix == "" || pid == 0 {
				t.Fatalf("child did not report its lab:\n%s", out.String())
			}
			// Cleanups run before the child exits; the reaper (kill,
			// timeout) runs just after, so allow it a moment.
			var left []string
			var alive bool
			if !testutil.Poll(15*time.Second, func() bool {
				left, alive = leftovers(t, prefix), processAlive(pid)
				return len(left) == 0 && !alive
			}) {
				t.Fatalf("after a %s: namespaces left %v, process %d alive %v\n%s", mode, left, pid, alive, out.String())
			}
		})
	}
}

func leftovers(t *testing.T, prefix string) []string {
	t.Helper()
	all, err := natlab.List()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, n := range all {
		if strings.HasPrefix(n, prefix) {
			out = append(out, n)
		}
	}
	return out
}

// processAlive treats zombies as dead: a killed process reparented to a
// PID 1 that does not reap is gone for every practical purpose.
func processAlive(pid int) bool {
	if err := syscall.Kill(pid, 0); err != nil {
		return false
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// The state follows the command name in parentheses.
	s := string(b)
	if i := strings.LastIndexByte(s, ')'); i >= 0 && i+2 < len(s) {
		return s[i+2] != 'Z'
	}
	return true
}
