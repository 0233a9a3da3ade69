package benchproc

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Command describes a child process to start.
type Command struct {
	Name string   // for errors and reports
	Path string   // the program
	Args []string // its arguments, without the program name
	Env  []string // variables added to this process's environment
	// Ready, when set, makes Start wait for an output line (stdout or
	// stderr) containing it, and return that line.
	Ready string
}

// String is the command line, for reports.
func (c Command) String() string { return strings.Join(append([]string{c.Path}, c.Args...), " ") }

// outputKeep is how much of a process's output is kept for errors.
const outputKeep = 64 << 10

// stopGrace is how long Stop waits after SIGTERM before SIGKILL.
const stopGrace = 10 * time.Second

// Process is a child process under supervision: the kernel kills it if
// this process dies (on Linux), its standard input stays open until Stop
// or CloseStdin, and the last 64 KiB of its output are kept.
type Process struct {
	Name  string
	cmd   *exec.Cmd
	stdin io.WriteCloser
	done  chan struct{}
	err   error // of Wait; read after done

	mu  sync.Mutex
	out []byte // the last outputKeep bytes of output
}

// Start runs c. The process lives until Stop or Kill, not until ctx, which
// bounds only the wait for the Ready line. When c.Ready is set it returns
// that line; if the process exits first or ctx ends, it fails with the
// process's output and nothing is left running.
func Start(ctx context.Context, c Command) (*Process, string, error) {
	cmd := exec.CommandContext(context.WithoutCancel(ctx), c.Path, c.Args...)
	if len(c.Env) > 0 {
		cmd.Env = append(os.Environ(), c.Env...)
	}
	killWithParent(cmd)
	// Wait gives up on output still held open by a grandchild after this.
	cmd.WaitDelay = 5 * time.Second
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, "", err
	}
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	p := &Process{Name: c.Name, cmd: cmd, stdin: stdin, done: make(chan struct{})}
	if err := cmd.Start(); err != nil {
		_ = pr.Close()
		return nil, "", fmt.Errorf("benchproc: start %s: %w", c.Name, err)
	}
	ready := make(chan string, 1)
	go p.read(pr, c.Ready, ready)
	go func() {
		p.err = cmd.Wait()
		_ = pw.Close()
		close(p.done)
	}()
	if c.Ready == "" {
		return p, "", nil
	}
	select {
	case l := <-ready:
		return p, l, nil
	case <-p.done:
		return nil, "", fmt.Errorf("benchproc: %s exited before it was ready: %w\n%s", c.Name, p.err, p.Output())
	case <-ctx.Done():
		p.Kill()
		return nil, "", fmt.Errorf("benchproc: %s not ready: %w\n%s", c.Name, ctx.Err(), p.Output())
	}
}

// read keeps the output and sends the first line containing want.
func (p *Process) read(r io.Reader, want string, ready chan<- string) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	found := want == ""
	for sc.Scan() {
		line := sc.Text()
		p.mu.Lock()
		p.out = append(p.out, line...)
		p.out = append(p.out, '\n')
		if len(p.out) > outputKeep {
			p.out = append(p.out[:0], p.out[len(p.out)-outputKeep:]...)
		}
		p.mu.Unlock()
		if !found && strings.Contains(line, want) {
			found = true
			ready <- line
		}
	}
	// A line over the scanner's limit: keep draining so the child never
	// blocks on a full pipe.
	_, _ = io.Copy(io.Discard, r)
}

// PID returns the process id.
func (p *Process) PID() int { return p.cmd.Process.Pid }

// Output returns the last of the process's output.
func (p *Process) Output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return strings.TrimSpace(string(p.out))
}

// CloseStdin closes the process's standard input.
func (p *Process) CloseStdin() { _ = p.stdin.Close() }

// Stop closes stdin, sends SIGTERM and waits, with SIGKILL after 10 s.
func (p *Process) Stop() {
	p.CloseStdin()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	t := time.NewTimer(stopGrace)
	defer t.Stop()
	select {
	case <-p.done:
	case <-t.C:
		p.Kill()
	}
}

// Kill kills the process (SIGKILL) and waits for it.
func (p *Process) Kill() {
	_ = p.cmd.Process.Kill()
	<-p.done
}

// Done is closed when the process has exited.
func (p *Process) Done() <-chan struct{} { return p.done }

// Err returns, once Done is closed, why the process ended: nil for a zero
// exit status, an *exec.ExitError for another status or a signal (as after
// Stop or Kill), or an error of waiting for it.
func (p *Process) Err() error {
	select {
	case <-p.done:
		return p.err
	default:
		return errors.New("benchproc: " + p.Name + " is still running")
	}
}
