package relaybench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Server is a relay process under test.
type Server struct {
	Name string
	Addr string // UDP host:port
	Args []string
	cmd  *exec.Cmd
	done chan error
	log  *tail
}

// PID returns the process id.
func (s *Server) PID() int { return s.cmd.Process.Pid }

// Settings are the equivalent settings both relays get.
type Settings struct {
	Port             int // UDP listening port on 127.0.0.1
	MinPort, MaxPort int // relay port range
	Secret, Realm    string
	Threads          int // UDP sockets (ferry) / relay threads (coturn); zero means one per core
}

// CoturnArgs is coturn's command line for s: foreground, no configuration
// file, loopback only, UDP only, REST secret, loopback peers allowed.
func CoturnArgs(s Settings, dir string) []string {
	args := []string{
		"-n",
		"--listening-ip=127.0.0.1", "--listening-port=" + strconv.Itoa(s.Port),
		"--relay-ip=127.0.0.1", "--external-ip=127.0.0.1",
		"--min-port=" + strconv.Itoa(s.MinPort), "--max-port=" + strconv.Itoa(s.MaxPort),
		"--use-auth-secret", "--static-auth-secret=" + s.Secret, "--realm=" + s.Realm,
		"--allow-loopback-peers",
		"--no-tcp", "--no-tls", "--no-dtls", "--no-tcp-relay", "--no-cli", "--no-rfc5780",
		"--no-software-attribute",
		"--pidfile=" + filepath.Join(dir, "turnserver.pid"),
		"--userdb=" + filepath.Join(dir, "turndb"),
		"--log-file=stdout", "--simple-log",
	}
	if s.Threads > 0 {
		args = append(args, "--relay-threads="+strconv.Itoa(s.Threads))
	}
	return args
}

// FerryArgs is ferry-relay's command line for s.
func FerryArgs(s Settings) []string {
	return []string{
		"--listen-udp=127.0.0.1:" + strconv.Itoa(s.Port), "--listen-tcp=",
		"--udp-sockets=" + strconv.Itoa(s.Threads),
		"--relay-ip=127.0.0.1",
		"--relay-ports=" + strconv.Itoa(s.MinPort) + "-" + strconv.Itoa(s.MaxPort),
		"--auth-secret=" + s.Secret, "--realm=" + s.Realm,
		"--allow-peer=127.0.0.0/8",
		"--max-allocations-per-user=0",
		"--metrics-addr=", "--log-level=warn",
	}
}

// Start runs bin with args and waits until its UDP port answers STUN.
func Start(ctx context.Context, name, bin string, args []string, addr string, env []string) (*Server, error) {
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(os.Environ(), env...)
	log := &tail{}
	cmd.Stdout, cmd.Stderr = log, log
	killWithParent(cmd)
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	s := &Server{Name: name, Addr: addr, Args: append([]string{bin}, args...), cmd: cmd, done: make(chan error, 1), log: log}
	go func() { s.done <- cmd.Wait() }()
	deadline := time.Now().Add(15 * time.Second)
	for {
		if bindingAnswers(ctx, addr) {
			return s, nil
		}
		select {
		case err := <-s.done:
			return nil, fmt.Errorf("%s exited: %w\n%s", name, err, log)
		default:
		}
		if time.Now().After(deadline) {
			_ = s.Stop()
			return nil, fmt.Errorf("%s did not answer on %s\n%s", name, addr, log)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Stop ends the process (SIGKILL: nothing to drain in a benchmark).
func (s *Server) Stop() error {
	_ = s.cmd.Process.Kill()
	err := <-s.done
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return nil
	}
	return err
}

// Log returns the tail of the process's output.
func (s *Server) Log() string { return s.log.String() }

func bindingAnswers(ctx context.Context, addr string) bool {
	var d net.Dialer
	c, err := d.DialContext(ctx, "udp", addr)
	if err != nil {
		return false
	}
	defer c.Close()
	// A STUN Binding request with a fixed transaction ID.
	req := []byte{0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xA4, 0x42, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}
	if _, err = c.Write(req); err != nil {
		return false
	}
	_ = c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	buf := make([]byte, 512)
	n, err := c.Read(buf)
	return err == nil && n >= 20 && buf[0] == 0x01 && buf[1] == 0x01
}

// FreeUDPPort returns a UDP port on 127.0.0.1 that was free a moment ago.
func FreeUDPPort(ctx context.Context) (int, error) {
	var lc net.ListenConfig
	pc, err := lc.ListenPacket(ctx, "udp4", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer pc.Close()
	return pc.LocalAddr().(*net.UDPAddr).Port, nil
}

// tail keeps the last 16 KiB written to it.
type tail struct {
	mu  sync.Mutex
	buf []byte
}

func (t *tail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if len(t.buf) > 16<<10 {
		t.buf = t.buf[len(t.buf)-16<<10:]
	}
	return len(p), nil
}

func (t *tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return strings.TrimSpace(string(t.buf))
}

var _ io.Writer = (*tail)(nil)
