//go:build linux

package benchproc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ferrynet/ferry/internal/testutil"
)

// childEnv re-executes this test binary as the child process of the
// Process tests; its value picks what the child does.
const childEnv = "FERRY_BENCHPROC_CHILD"

func TestMain(m *testing.M) {
	if mode := os.Getenv(childEnv); mode != "" {
		os.Exit(child(mode))
	}
	os.Exit(m.Run())
}

func child(mode string) int {
	switch mode {
	case "ready": // say two lines, then run until stdin closes
		fmt.Println("starting")
		fmt.Fprintln(os.Stderr, "READY on stderr, extra="+os.Getenv("FERRY_BENCHPROC_EXTRA"))
		_, _ = io.Copy(io.Discard, os.Stdin)
		return 0
	case "exit": // fail before being ready
		fmt.Println("boom: no config")
		return 3
	case "mute": // never ready, never ends by itself
		select {}
	case "flood": // more output than is kept, then ready
		line := strings.Repeat("x", 99)
		for i := range 2000 {
			fmt.Println(i, line)
		}
		fmt.Println("END")
		_, _ = io.Copy(io.Discard, os.Stdin)
		return 0
	}
	return 2
}

func self(mode string, env ...string) Command {
	return Command{Name: mode, Path: os.Args[0], Args: []string{"-test.run=^$"}, Env: append([]string{childEnv + "=" + mode}, env...)}
}

func TestParseStat(t *testing.T) {
	for _, c := range []struct {
		line string
		want time.Duration
		ok   bool
	}{
		{"1234 (turnserver) S 1 2 3 4 5 6 7 8 9 10 250 125 0 0 20 0 4 0 100 0 0\n", 375 * clockTick, true},
		{"1234 (turn server) R 1 2 3 4 5 6 7 8 9 10 1 2 0 0", 3 * clockTick, true},
		{"7 (a) (b)) S 1 2 3 4 5 6 7 8 9 10 0 0 0 0", 0, true}, // ')' in the name
		{"", 0, false},
		{"1 (x", 0, false},
		{"1 (x) S 1 2", 0, false},
		{"1 (x) S 1 2 3 4 5 6 7 8 9 10 a b", 0, false},
		{"1 (x) S 1 2 3 4 5 6 7 8 9 10 -1 0", 0, false},
	} {
		got, err := parseStat(c.line)
		if c.ok && (err != nil || got != c.want) {
			t.Errorf("parseStat(%q) = %v, %v; want %v", c.line, got, err, c.want)
		}
		if !c.ok && err == nil {
			t.Errorf("parseStat(%q) = %v, want an error", c.line, got)
		}
	}
}

func TestCPUAndRSSOfSelf(t *testing.T) {
	// Burn CPU until the kernel has counted a tick of it.
	var d time.Duration
	for d == 0 {
		var err error
		if d, err = CPU(os.Getpid()); err != nil {
			t.Fatal(err)
		}
	}
	if d, err := CPU(0); d != 0 || err != nil {
		t.Errorf("CPU(0) = %v, %v; want 0, nil", d, err)
	}
	if _, err := CPU(-5); err == nil {
		t.Error("CPU of no process succeeded")
	}
	rss, err := RSS(os.Getpid())
	if err != nil || rss < 1<<20 {
		t.Errorf("RSS(self) = %d, %v; want at least 1 MiB", rss, err)
	}
}

func TestCPUModel(t *testing.T) {
	info := "processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) CPU @ 2.20GHz\nflags\t: fpu\n"
	if got := cpuModel(info); got != "Intel(R) Xeon(R) CPU @ 2.20GHz" {
		t.Errorf("cpuModel = %q", got)
	}
	if got := cpuModel("processor : 0\n"); got != "" {
		t.Errorf("cpuModel without a model name = %q", got)
	}
	if CPUModel() == "" {
		t.Error("CPUModel is empty")
	}
}

func TestFreePort(t *testing.T) {
	for _, network := range []string{"udp", "tcp"} {
		port, err := FreePort(t.Context(), network)
		if err != nil || port <= 0 || port > 65535 {
			t.Fatalf("FreePort(%s) = %d, %v", network, port, err)
		}
		// The port is free: it can be bound again.
		var lc net.ListenConfig
		addr := "127.0.0.1:" + strconv.Itoa(port)
		var c io.Closer
		if network == "udp" {
			c, err = lc.ListenPacket(t.Context(), "udp4", addr)
		} else {
			c, err = lc.Listen(t.Context(), "tcp4", addr)
		}
		if err != nil {
			t.Fatalf("bind the free %s port: %v", network, err)
		}
		_ = c.Close()
	}
	if _, err := FreePort(t.Context(), "sctp"); err == nil {
		t.Error("FreePort(sctp) succeeded")
	}
}

func TestRaiseFDLimit(t *testing.T) {
	soft, hard, err := FDLimit()
	if err != nil {
		t.Fatal(err)
	}
	// At or below the current limits it changes nothing and needs no privilege.
	if err := RaiseFDLimit(soft); err != nil {
		t.Fatal(err)
	}
	if s, h, _ := FDLimit(); s != soft || h != hard {
		t.Errorf("limits moved from %d/%d to %d/%d", soft, hard, s, h)
	}
	if hard > soft {
		if err := RaiseFDLimit(hard); err != nil {
			t.Fatal(err)
		}
		if s, _, _ := FDLimit(); s != hard {
			t.Errorf("soft limit %d after raising it to %d", s, hard)
		}
		t.Cleanup(func() {
			_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &syscall.Rlimit{Cur: soft, Max: hard})
		})
	}
}

func TestStartReadyAndStop(t *testing.T) {
	testutil.CheckLeaks(t)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	c := self("ready", "FERRY_BENCHPROC_EXTRA=42")
	c.Ready = "READY"
	p, line, err := Start(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	if line != "READY on stderr, extra=42" {
		t.Errorf("ready line %q", line)
	}
	if p.PID() <= 0 {
		t.Errorf("PID %d", p.PID())
	}
	if err := p.Err(); err == nil {
		t.Error("Err of a running process is nil")
	}
	p.Stop()
	<-p.Done()
	// The child exits on its own when stdin closes, or dies of SIGTERM:
	// either way it is gone and its output is kept.
	if err := p.Err(); err != nil && !isExit(err) {
		t.Errorf("Err after Stop: %v", err)
	}
	if out := p.Output(); !strings.Contains(out, "starting") || !strings.Contains(out, "READY") {
		t.Errorf("output %q", out)
	}
}

func TestStartWithoutReady(t *testing.T) {
	testutil.CheckLeaks(t)
	p, line, err := Start(t.Context(), self("mute"))
	if err != nil || line != "" {
		t.Fatalf("Start = %q, %v", line, err)
	}
	p.Kill()
	var ee *exec.ExitError
	if !errors.As(p.Err(), &ee) {
		t.Errorf("Err after Kill = %v, want an exit error", p.Err())
	}
}

func TestStartExitsBeforeReady(t *testing.T) {
	testutil.CheckLeaks(t)
	c := self("exit")
	c.Ready = "READY"
	p, _, err := Start(t.Context(), c)
	if err == nil {
		p.Kill()
		t.Fatal("Start succeeded")
	}
	if !strings.Contains(err.Error(), "exited before it was ready") || !strings.Contains(err.Error(), "boom: no config") {
		t.Errorf("error %q lacks the reason or the output", err)
	}
}

func TestStartNotReadyInTime(t *testing.T) {
	testutil.CheckLeaks(t)
	ctx, cancel := context.WithCancel(t.Context())
	cancel() // the wait ends at once; the process is started and killed
	c := self("mute")
	c.Ready = "READY"
	p, _, err := Start(ctx, c)
	if err == nil {
		p.Kill()
		t.Fatal("Start succeeded")
	}
	if !errors.Is(err, context.Canceled) {
		t.Errorf("error %v, want context.Canceled", err)
	}
}

func TestStartMissingBinary(t *testing.T) {
	_, _, err := Start(t.Context(), Command{Name: "none", Path: "/nonexistent/benchproc-test"})
	if err == nil {
		t.Fatal("Start of a missing binary succeeded")
	}
}

func TestOutputKeepsTheTail(t *testing.T) {
	testutil.CheckLeaks(t)
	c := self("flood")
	c.Ready = "END"
	p, _, err := Start(t.Context(), c)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Stop()
	out := p.Output()
	if len(out) > outputKeep || !strings.HasSuffix(out, "END") || strings.Contains(out, "\n0 x") {
		t.Errorf("output: %d bytes (keep %d), ends %q", len(out), outputKeep, out[max(0, len(out)-20):])
	}
}

func TestCommandString(t *testing.T) {
	if got := (Command{Path: "bin/x", Args: []string{"-a", "b"}}).String(); got != "bin/x -a b" {
		t.Errorf("String = %q", got)
	}
}

func isExit(err error) bool {
	var ee *exec.ExitError
	return errors.As(err, &ee)
}
