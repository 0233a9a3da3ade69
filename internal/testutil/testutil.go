// Package testutil holds helpers shared by Ferry's tests: leak checks,
// deadlines that dump stacks, and environment requirements that skip loudly
// in `make test-unit` but fail in `make test`.
//
// Strict mode: when FERRY_TEST_STRICT=1 (set by `make test`), a test that
// cannot run because the machine lacks something (root, a binary such as
// turnserver or redis-server) fails instead of skipping, so CI never reports
// green for a test that did not run.
package testutil

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"runtime/pprof"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// Strict reports whether environment-based skips must fail (FERRY_TEST_STRICT=1).
func Strict() bool { return os.Getenv("FERRY_TEST_STRICT") == "1" }

// SkipOrFail skips t with a loud reason, or fails it in strict mode.
func SkipOrFail(t testing.TB, format string, args ...any) {
	t.Helper()
	if Strict() {
		t.Fatalf("FERRY_TEST_STRICT=1 and this test cannot run: "+format, args...)
	}
	t.Logf("SKIPPED (run `make test` as root to include it): "+format, args...)
	t.SkipNow()
}

// RequireRoot skips (or fails in strict mode) unless the test runs as root.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		SkipOrFail(t, "needs root (network namespaces, nftables)")
	}
}

// RequireBinary returns the path of the named program, or skips (fails in
// strict mode) naming the Debian package that provides it.
func RequireBinary(t testing.TB, name, debianPackage string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		SkipOrFail(t, "%s not found in PATH; install it with `apt-get install %s` (make test does this)", name, debianPackage)
	}
	return p
}

// CheckLeaks registers a cleanup, run after every other cleanup of t, that
// fails the test if goroutines started during it are still running.
// Call it first in a test so that it runs last.
func CheckLeaks(t testing.TB) {
	t.Helper()
	opt := goleak.IgnoreCurrent()
	t.Cleanup(func() {
		// goleak retries for a few seconds, so goroutines that are
		// already unwinding after Close are not reported.
		if err := goleak.Find(opt); err != nil {
			t.Errorf("leaked goroutines: %v", err)
		}
	})
}

// Deadline fails t and dumps every goroutine's stack if the test is still
// running after d. It returns a func that cancels the watchdog; it is also
// cancelled automatically when the test ends.
func Deadline(t testing.TB, d time.Duration) (stop func()) {
	t.Helper()
	done := make(chan struct{})
	timer := time.AfterFunc(d, func() {
		select {
		case <-done:
			return
		default:
		}
		var buf bytes.Buffer
		_ = pprof.Lookup("goroutine").WriteTo(&buf, 2)
		msg := fmt.Sprintf("test %s exceeded its %v deadline; goroutines:\n%s", t.Name(), d, trimStacks(buf.String()))
		t.Error(msg)
		// Errorf does not stop the test; a hung test is better killed
		// with its stacks on record than left to the global -timeout.
		// Without -v the test's log is printed only when it ends, which
		// the panic prevents: the stacks go to stderr as well.
		fmt.Fprintln(os.Stderr, msg)
		panicOnDeadline(t.Name(), d)
	})
	var once bool
	stop = func() {
		if once {
			return
		}
		once = true
		close(done)
		timer.Stop()
	}
	t.Cleanup(stop)
	return stop
}

func trimStacks(s string) string {
	const limit = 200 << 10
	if len(s) > limit {
		return s[:limit] + "\n... (truncated)"
	}
	return strings.TrimSpace(s)
}

// WaitFor polls cond until it returns true and fails t (Fatalf, naming what)
// if that has not happened within timeout. It is the one way Ferry's tests
// wait for a state they cannot be told about: never a fixed sleep that
// stands in for an assertion. The poll interval starts at 1 ms and grows to
// 50 ms, so a fast condition is seen at once and a slow one costs little CPU.
func WaitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	if !Poll(timeout, cond) {
		t.Fatalf("timed out after %v waiting for %s", timeout, what)
	}
}

// Poll is WaitFor's loop without the failure: it reports whether cond
// became true within timeout. Use it where running out of time is a
// result to record (a path that may still upgrade), where the failure
// needs a message built from the last state seen, or off the test's
// goroutine, where t.Fatal must not be called.
func Poll(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for interval := time.Millisecond; !cond(); interval = min(2*interval, 50*time.Millisecond) {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(interval)
	}
	return true
}
