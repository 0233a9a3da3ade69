package relaybench

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/ferrynet/ferry/internal/benchproc"
	"github.com/ferrynet/ferry/internal/stunclient"
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
		// No caps, as coturn runs: the load is many users on one IP.
		"--max-allocations-per-ip=-1", "--max-allocations=-1", "--allocation-bandwidth=-1", "--server-bandwidth=-1",
		"--relay-ip=127.0.0.1",
		"--relay-ports=" + strconv.Itoa(s.MinPort) + "-" + strconv.Itoa(s.MaxPort),
		"--auth-secret=" + s.Secret, "--realm=" + s.Realm,
		"--allow-peer=127.0.0.0/8",
		"--max-allocations-per-user=-1", // no cap, as coturn runs: the load is 32 users on one IP
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
	if err := waitReady(ctx, p, addr); err != nil {
		_ = s.Stop()
		if errors.Is(err, errExited) {
			return nil, fmt.Errorf("%s exited: %w\n%s", name, p.Err(), p.Output())
		}
		return nil, fmt.Errorf("%s did not answer on %s: %w\n%s", name, addr, err, p.Output())
	}
	return s, nil
}

var errExited = errors.New("exited")

// waitReady waits up to 15 s until the server at addr answers STUN, or
// fails early if its process p exits.
func waitReady(ctx context.Context, p *benchproc.Process, addr string) error {
	to, err := netip.ParseAddrPort(addr)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeoutCause(ctx, 15*time.Second, errors.New("no answer in 15s"))
	defer cancel()
	var exited atomic.Bool
	go func() {
		select {
		case <-p.Done():
			exited.Store(true)
			cancel()
		case <-ctx.Done():
		}
	}()
	var lc net.ListenConfig
	pc, err := lc.ListenPacket(ctx, "udp4", "127.0.0.1:0")
	if err != nil {
		return err
	}
	defer pc.Close()
	err = stunclient.Poll(ctx, pc, to, 100*time.Millisecond)
	if exited.Load() {
		return errExited
	}
	if err != nil && ctx.Err() != nil {
		return context.Cause(ctx)
	}
	return err
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
