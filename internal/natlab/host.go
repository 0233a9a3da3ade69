package natlab

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Host is one network namespace of the lab: the server, a NAT router, or a
// host on a site's LAN (or on the public segment for NAT None).
//
// Everything a test needs from a host goes through it: sockets opened
// inside its namespace (ListenPacket, Listen, DialContext, Net, Do) and
// processes run inside it (Command, Run, Start). Its methods are safe for
// concurrent use.
type Host struct {
	lab   *Lab
	site  *Site // nil for the server
	name  string
	ns    string
	addrs []netip.Addr
	gw    netip.Addr // LAN hosts: the router's LAN address
}

// Name is the host's short name in the lab: "srv", "a1", "a-nat".
func (h *Host) Name() string { return h.name }

// Namespace is the network namespace's name (for `ip netns exec`).
func (h *Host) Namespace() string { return h.ns }

// Addr is the host's primary address.
func (h *Host) Addr() netip.Addr { return h.addrs[0] }

// Addrs lists every address of the host (the server has two; a router has
// its WAN address first, then its LAN address).
func (h *Host) Addrs() []netip.Addr { return append([]netip.Addr(nil), h.addrs...) }

// Site is the site the host belongs to, nil for the server.
func (h *Host) Site() *Site { return h.site }

func (h *Host) String() string { return fmt.Sprintf("%s(%s %s)", h.name, h.ns, h.addrs[0]) }

// Do runs fn on an OS thread inside the host's namespace and returns its
// error. Sockets fn opens stay in the namespace whichever goroutine uses
// them later; that is the whole trick behind ListenPacket and friends.
// Goroutines that fn starts do not run in the namespace.
func (h *Host) Do(fn func() error) error { return doInNS(h.ns, fn) }

// ListenPacket is net.ListenConfig.ListenPacket inside the namespace.
func (h *Host) ListenPacket(ctx context.Context, network, address string) (net.PacketConn, error) {
	var pc net.PacketConn
	err := h.Do(func() error {
		var err error
		var lc net.ListenConfig
		pc, err = lc.ListenPacket(ctx, network, address)
		return err
	})
	return pc, err
}

// ListenUDP opens a UDP socket inside the namespace.
func (h *Host) ListenUDP(network string, laddr *net.UDPAddr) (*net.UDPConn, error) {
	var c *net.UDPConn
	err := h.Do(func() error {
		var err error
		c, err = net.ListenUDP(network, laddr)
		return err
	})
	return c, err
}

// Listen is net.ListenConfig.Listen inside the namespace.
func (h *Host) Listen(ctx context.Context, network, address string) (net.Listener, error) {
	var l net.Listener
	err := h.Do(func() error {
		var err error
		var lc net.ListenConfig
		l, err = lc.Listen(ctx, network, address)
		return err
	})
	return l, err
}

// DialContext is net.Dialer.DialContext from inside the namespace.
func (h *Host) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	var c net.Conn
	err := h.Do(func() error {
		var err error
		var d net.Dialer
		c, err = d.DialContext(ctx, network, address)
		return err
	})
	return c, err
}

// Command returns a command that runs inside the namespace through
// `ip netns exec`. It is not tracked: the caller waits for it. (Lab.Close
// still kills whatever runs in a lab namespace.)
func (h *Host) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", h.ns, name}, args...)...)
	// Kill the whole group, so children of name die with it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 2 * time.Second
	return cmd
}

// Run runs a command inside the namespace and returns its combined output.
// The error, if any, includes the output.
func (h *Host) Run(ctx context.Context, name string, args ...string) (string, error) {
	cmd := h.Command(ctx, name, args...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("natlab: %s: %s %s: %w\n%s", h.name, name, strings.Join(args, " "), err, tail(out, 4096))
	}
	return string(out), nil
}

func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

// Process is a long-lived command started inside a lab namespace. The lab
// stops it at Close if the test has not.
type Process struct {
	Name string
	cmd  *exec.Cmd
	out  *tailBuffer
	done chan struct{}
	err  error
	lab  *Lab
}

// Start starts a long-lived command inside the namespace. Its combined
// output is kept (the last 256 KiB) for Output. The process is killed when
// ctx ends, on Stop, or at Lab.Close, whichever comes first.
func (h *Host) Start(ctx context.Context, name string, args ...string) (*Process, error) {
	p := &Process{Name: h.name + ":" + name, out: &tailBuffer{max: 256 << 10}, done: make(chan struct{}), lab: h.lab}
	p.cmd = h.Command(ctx, name, args...)
	p.cmd.Stdout = p.out
	p.cmd.Stderr = p.out
	if err := h.lab.track(p); err != nil {
		return nil, err
	}
	if err := p.cmd.Start(); err != nil {
		h.lab.untrack(p)
		return nil, fmt.Errorf("natlab: %s: start %s: %w", h.name, name, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// Pid is the process id (of the command itself: `ip netns exec` execs it).
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Done is closed when the process has exited.
func (p *Process) Done() <-chan struct{} { return p.done }

// Output returns what the process printed so far (the tail).
func (p *Process) Output() string { return p.out.String() }

// Wait waits for the process to exit and returns its error.
func (p *Process) Wait() error {
	<-p.done
	return p.err
}

// Stop kills the process group and waits for it. It returns nil when the
// process ended because it was stopped. Idempotent.
func (p *Process) Stop() error {
	select {
	case <-p.done:
	default:
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
	}
	p.lab.untrack(p)
	var ee *exec.ExitError
	if errors.As(p.err, &ee) && !ee.Exited() {
		return nil // killed by us (or by a signal)
	}
	return p.err
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if len(t.b) > t.max {
		t.b = append(t.b[:0], t.b[len(t.b)-t.max:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(bytes.Clone(t.b))
}
