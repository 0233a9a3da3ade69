package testutil

import (
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"
)

func TestPoll(t *testing.T) {
	calls := 0
	if !Poll(time.Minute, func() bool { calls++; return calls == 5 }) || calls != 5 {
		t.Errorf("Poll returned before the condition held, or polled on: %d calls", calls)
	}
	if Poll(5*time.Millisecond, func() bool { return false }) {
		t.Error("Poll of a condition that never holds reported true")
	}
}

// fatalTB records Fatalf and stops the goroutine as testing.T does.
type fatalTB struct {
	testing.TB
	msg string
}

func (f *fatalTB) Helper() {}
func (f *fatalTB) Fatalf(format string, args ...any) {
	f.msg = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

func TestWaitForFailsNamingWhat(t *testing.T) {
	f := &fatalTB{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		WaitFor(f, 5*time.Millisecond, "the moon", func() bool { return false })
	}()
	<-done
	if !strings.Contains(f.msg, "waiting for the moon") {
		t.Errorf("failure message %q", f.msg)
	}
	f.msg = ""
	WaitFor(f, time.Minute, "something true", func() bool { return true })
	if f.msg != "" {
		t.Errorf("WaitFor of a true condition failed: %q", f.msg)
	}
}
