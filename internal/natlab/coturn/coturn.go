// Package coturn runs coturn's programs inside NAT lab hosts: `turnserver`
// as an RFC 5780 STUN and TURN server on the lab server's two addresses,
// and `turnutils_natdiscovery`, whose report it parses. The lab's
// self-check and natprobe's acceptance tests use coturn as the independent
// reference implementation.
package coturn

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"

	"github.com/ferrynet/ferry/internal/natlab"
	"github.com/ferrynet/ferry/internal/stunclient"
)

// Default ports.
const (
	Port    = 3478 // STUN/TURN over UDP and TCP, on both addresses
	AltPort = 3479 // RFC 5780 alternate port
	TLSPort = 5349 // TURN over TLS
)

// ServerConfig configures a turnserver run in a lab host.
type ServerConfig struct {
	// Host runs the server; it must have two addresses (the lab server).
	Host *natlab.Host
	// Dir holds the pid file, the (empty) user database and logs; use a
	// test's TempDir.
	Dir string
	// Realm for long-term credentials; "ferry.lab" when empty.
	Realm string
	// User and Password of one long-term credential; "ferry"/"ferry" when
	// empty.
	User, Password string
	// CertFile and KeyFile, both PEM, enable TURN over TLS on TLSPort.
	// Empty means no TLS listener.
	CertFile, KeyFile string
	// NoRFC5780 turns RFC 5780 off (the server then answers like a plain
	// RFC 8489 STUN server, without OTHER-ADDRESS).
	NoRFC5780 bool
}

// Server is a running turnserver.
type Server struct {
	proc *natlab.Process
	// Addrs are the two listening addresses (primary first).
	Addrs [2]netip.Addr
}

// RequireBinaries returns an error naming the package to install if
// coturn's programs are missing.
func RequireBinaries() error {
	for _, b := range []string{"turnserver", "turnutils_natdiscovery"} {
		if _, err := exec.LookPath(b); err != nil {
			return fmt.Errorf("coturn: %s not found in PATH: install it with `apt-get install coturn`", b)
		}
	}
	return nil
}

// Start runs turnserver in the foreground inside cfg.Host, listening only
// on the host's two lab addresses, and returns once both addresses answer
// a STUN Binding request. The process is killed by Close, or by the lab's
// Close at the latest.
func Start(ctx context.Context, cfg ServerConfig) (srv *Server, err error) {
	if err = RequireBinaries(); err != nil {
		return nil, err
	}
	addrs := cfg.Host.Addrs()
	if len(addrs) < 2 {
		return nil, fmt.Errorf("coturn: host %s has %d addresses, RFC 5780 needs 2", cfg.Host.Name(), len(addrs))
	}
	if cfg.Dir == "" {
		return nil, errors.New("coturn: ServerConfig.Dir is required")
	}
	realm, user, pass := cfg.Realm, cfg.User, cfg.Password
	if realm == "" {
		realm = "ferry.lab"
	}
	if user == "" {
		user, pass = "ferry", "ferry"
	}
	args := []string{
		"-n", // no configuration file: everything is on this line
		"--listening-ip", addrs[0].String(),
		"--listening-ip", addrs[1].String(),
		"--relay-ip", addrs[0].String(),
		"--listening-port", strconv.Itoa(Port),
		"--alt-listening-port", strconv.Itoa(AltPort),
		"--min-port", "49152", "--max-port", "65535",
		"--realm", realm,
		"--lt-cred-mech", "--user", user + ":" + pass,
		"--no-dtls", "--no-cli",
		"--log-file", "stdout", "--simple-log",
		"--pidfile", filepath.Join(cfg.Dir, "turnserver.pid"),
		"--userdb", filepath.Join(cfg.Dir, "turndb"),
	}
	if cfg.CertFile != "" {
		args = append(args, "--cert", cfg.CertFile, "--pkey", cfg.KeyFile,
			"--tls-listening-port", strconv.Itoa(TLSPort))
	} else {
		args = append(args, "--no-tls")
	}
	if cfg.NoRFC5780 {
		args = append(args, "--no-rfc5780")
	}
	proc, err := cfg.Host.Start(context.WithoutCancel(ctx), "turnserver", args...)
	if err != nil {
		return nil, err
	}
	s := &Server{proc: proc, Addrs: [2]netip.Addr{addrs[0], addrs[1]}}
	defer func() {
		if err != nil {
			_ = s.Close()
		}
	}()
	wait, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	probes := []netip.AddrPort{netip.AddrPortFrom(addrs[0], Port), netip.AddrPortFrom(addrs[1], Port)}
	if !cfg.NoRFC5780 {
		// Without RFC 5780 coturn does not open the alternate port.
		probes = append(probes, netip.AddrPortFrom(addrs[1], AltPort))
	}
	for _, ap := range probes {
		if err := waitSTUN(wait, cfg.Host, ap, proc); err != nil {
			return nil, fmt.Errorf("coturn: turnserver not answering on %s: %w\n%s", ap, err, proc.Output())
		}
	}
	return s, nil
}

// Output is what turnserver logged so far.
func (s *Server) Output() string { return s.proc.Output() }

// Close kills turnserver and waits for it. Idempotent.
func (s *Server) Close() error { return s.proc.Stop() }

// waitSTUN sends Binding requests from inside h to ap until one is
// answered (see stunclient.Poll), or fails when turnserver exits.
func waitSTUN(ctx context.Context, h *natlab.Host, ap netip.AddrPort, proc *natlab.Process) error {
	pc, err := h.ListenPacket(ctx, "udp4", net.JoinHostPort(h.Addr().String(), "0"))
	if err != nil {
		return err
	}
	defer pc.Close()
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	go func() {
		select {
		case <-proc.Done():
			cancel(fmt.Errorf("turnserver exited: %w", proc.Wait()))
		case <-ctx.Done():
		}
	}()
	err = stunclient.Poll(ctx, pc, ap, 100*time.Millisecond)
	if err != nil && ctx.Err() != nil {
		return context.Cause(ctx)
	}
	return err
}
