package cliconftest

import (
	"context"
	"io"
	"testing"
	"time"

	"github.com/ferrynet/ferry/internal/opshttp"
	"github.com/ferrynet/ferry/internal/testutil"
)

// SyncBuffer is a bytes.Buffer that a logger may write while a test reads
// (testutil.SyncBuffer, named here for the servers' tests).
type SyncBuffer = testutil.SyncBuffer

// RunFunc is a server main's testable body: run(ctx, args, env, stdout,
// stderr) returns the exit code once ctx ends (SIGTERM) and it has shut down.
type RunFunc func(ctx context.Context, args []string, env func(string) (string, bool), stdout, stderr io.Writer) int

// Program is a server's main running in-process.
type Program[S any] struct {
	Server S
	Ops    *opshttp.Server // nil with --metrics-addr=
	Logs   *SyncBuffer     // stdout and stderr

	cancel context.CancelFunc
	exited chan struct{} // closed when run has returned code
	code   int
}

// Start runs run with args and env in the background and returns once the
// program calls started (the main's test hook, which Start sets and resets
// at cleanup). At cleanup the program is stopped, if the test has not
// stopped it, and must exit 0.
func Start[S any](t *testing.T, run RunFunc, started *func(S, *opshttp.Server), env map[string]string, args ...string) *Program[S] {
	t.Helper()
	type up struct {
		s   S
		ops *opshttp.Server
	}
	ch := make(chan up, 1)
	*started = func(s S, o *opshttp.Server) { ch <- up{s, o} }
	t.Cleanup(func() { *started = nil })
	ctx, cancel := context.WithCancel(context.Background())
	p := &Program[S]{Logs: &SyncBuffer{}, cancel: cancel, exited: make(chan struct{})}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	go func() {
		p.code = run(ctx, args, lookup, p.Logs, p.Logs)
		close(p.exited)
	}()
	t.Cleanup(func() {
		if code := p.Stop(t); code != 0 {
			t.Errorf("the program exited with %d:\n%s", code, p.Logs)
		}
	})
	select {
	case u := <-ch:
		p.Server, p.Ops = u.s, u.ops
		return p
	case <-p.exited:
		t.Fatalf("the program exited with %d:\n%s", p.code, p.Logs)
	case <-time.After(30 * time.Second):
		t.Fatalf("the program did not start:\n%s", p.Logs)
	}
	return nil
}

// Signal does what the first SIGTERM does: it ends run's context.
func (p *Program[S]) Signal() { p.cancel() }

// Exited reports whether the program has exited, without waiting.
func (p *Program[S]) Exited() bool {
	select {
	case <-p.exited:
		return true
	default:
		return false
	}
}

// Wait returns the exit code, failing the test if the program has not
// exited within d.
func (p *Program[S]) Wait(t *testing.T, d time.Duration) int {
	t.Helper()
	select {
	case <-p.exited:
		return p.code
	case <-time.After(d):
		t.Errorf("the program did not exit within %v:\n%s", d, p.Logs)
		return -1
	}
}

// Stop signals the program and returns its exit code (see Wait).
func (p *Program[S]) Stop(t *testing.T) int {
	t.Helper()
	p.Signal()
	return p.Wait(t, 30*time.Second)
}
