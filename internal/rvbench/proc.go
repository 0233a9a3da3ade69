package rvbench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/<pid>/stat;
// 100 on every Linux architecture Go supports.
const clockTicks = 100

// ProcCPU returns the CPU time (user + system) process pid has used.
func ProcCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	// The command name (field 2) is in parentheses and may hold spaces:
	// count fields after the last ')'.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("rvbench: /proc/%d/stat: no command name", pid)
	}
	f := strings.Fields(s[i+1:])
	// f[0] is field 3 (state); utime and stime are fields 14 and 15.
	if len(f) < 13 {
		return 0, fmt.Errorf("rvbench: /proc/%d/stat: %d fields", pid, len(f)+2)
	}
	u, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, fmt.Errorf("rvbench: /proc/%d/stat: %w", pid, err)
	}
	return time.Duration(u+st) * time.Second / clockTicks, nil
}

// ProcRSS returns the resident set size of process pid, in bytes.
func ProcRSS(pid int) (int64, error) {
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("rvbench: VmRSS %q: %w", v, err)
			}
			return kb << 10, nil
		}
	}
	return 0, fmt.Errorf("rvbench: /proc/%d/status has no VmRSS", pid)
}

// RaiseFDLimit sets the open-file limit (soft and hard) to at least n.
// Raising the hard limit needs privilege.
func RaiseFDLimit(n uint64) error {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return err
	}
	if lim.Cur >= n && lim.Max >= n {
		return nil
	}
	lim.Cur, lim.Max = max(lim.Cur, n), max(lim.Max, n)
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return fmt.Errorf("rvbench: raise the open-file limit to %d: %w (run as root, or raise it with ulimit -n)", n, err)
	}
	return nil
}

// Process is a server (or load generator) running as a child process.
type Process struct {
	Name  string
	cmd   *exec.Cmd
	stdin io.WriteCloser
	done  chan struct{}
	err   error

	mu  sync.Mutex
	out strings.Builder // the last lines of output
}

// PID returns the process id.
func (p *Process) PID() int { return p.cmd.Process.Pid }

// Start runs a command, killed if this process dies, and waits until its
// output has a line containing ready (none: no wait), which it returns.
// The command's stdin stays open until Stop (or CloseStdin).
func Start(ctx context.Context, name string, ready string, bin string, args ...string) (*Process, string, error) {
	return StartEnv(ctx, name, ready, nil, bin, args...)
}

// StartEnv is Start with variables added to the environment.
func StartEnv(ctx context.Context, name string, ready string, env []string, bin string, args ...string) (*Process, string, error) {
	// The process lives until Stop or Kill, not until ctx (which bounds
	// the wait for it to be ready).
	cmd := exec.CommandContext(context.WithoutCancel(ctx), bin, args...)
	if len(env) > 0 {
		cmd.Env = append(os.Environ(), env...)
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, "", err
	}
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	p := &Process{Name: name, cmd: cmd, stdin: stdin, done: make(chan struct{})}
	if err := cmd.Start(); err != nil {
		return nil, "", fmt.Errorf("rvbench: start %s: %w", name, err)
	}
	lines := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		found := ready == ""
		for sc.Scan() {
			line := sc.Text()
			p.mu.Lock()
			if p.out.Len() > 64<<10 {
				p.out.Reset()
			}
			p.out.WriteString(line + "\n")
			p.mu.Unlock()
			if !found && strings.Contains(line, ready) {
				found = true
				lines <- line
			}
		}
		_, _ = io.Copy(io.Discard, pr)
	}()
	go func() {
		p.err = cmd.Wait()
		pw.Close()
		close(p.done)
	}()
	if ready == "" {
		return p, "", nil
	}
	select {
	case l := <-lines:
		return p, l, nil
	case <-p.done:
		return nil, "", fmt.Errorf("rvbench: %s exited before it was ready: %w\n%s", name, p.err, p.Output())
	case <-ctx.Done():
		p.Kill()
		return nil, "", fmt.Errorf("rvbench: %s not ready: %w\n%s", name, ctx.Err(), p.Output())
	}
}

// Output returns the last of the process's output.
func (p *Process) Output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

// CloseStdin closes the command's standard input.
func (p *Process) CloseStdin() { _ = p.stdin.Close() }

// Stop closes stdin, sends SIGTERM and waits (SIGKILL after 10s).
func (p *Process) Stop() {
	p.CloseStdin()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		p.Kill()
	}
}

// Kill kills the process and waits for it.
func (p *Process) Kill() {
	_ = p.cmd.Process.Kill()
	<-p.done
}

// Done is closed when the process has exited.
func (p *Process) Done() <-chan struct{} { return p.done }
