package relaybench

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"

	"github.com/ferrynet/ferry/internal/benchproc"
)

// Server is a relay process under test.
type Server struct {
	Name string
	Addr string // UDP host:port
	Args []string
	proc *benchproc.Process
}

// PID returns the process id.
func (s *Server) PID() int { return s.proc.PID() }

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

// Start runs bin with args (and env added to the environment) and waits
// until its UDP port answers STUN.
func Start(ctx context.Context, name, bin string, args []string, addr string, env []string) (*Server, error) {
	p, _, err := benchproc.Start(ctx, benchproc.Command{Name: name, Path: bin, Args: args, Env: env})
	if err != nil {
		return nil, err
	}
	s := &Server{Name: name, Addr: addr, Args: append([]string{bin}, args...), proc: p}
	deadline := time.Now().Add(15 * time.Second)
	for {
		if bindingAnswers(ctx, addr) {
			return s, nil
		}
		select {
		case <-p.Done():
			return nil, fmt.Errorf("%s exited: %w\n%s", name, p.Err(), p.Output())
		default:
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			_ = s.Stop()
			return nil, fmt.Errorf("%s did not answer on %s\n%s", name, addr, p.Output())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Stop ends the process (SIGKILL: nothing to drain in a benchmark).
func (s *Server) Stop() error {
	s.proc.Kill()
	var ee *exec.ExitError
	if err := s.proc.Err(); err != nil && !errors.As(err, &ee) {
		return err
	}
	return nil
}

// Log returns the tail of the process's output.
func (s *Server) Log() string { return s.proc.Output() }

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
